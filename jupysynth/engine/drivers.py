"""What clocks the engine: a sound device through rtmixer, or time itself (headless).

:class:`RingDriver` renders blocks ahead into an rtmixer ring buffer that
rtmixer's C callback plays: no Python, GIL or garbage collector runs in the
audio callback, and the block loop keeps ``lead`` frames queued, never waiting
on anything.  If the ring runs dry (the loop was late), rtmixer drops the
playback action; the driver counts an xrun, refills and plays on.

:class:`ClockDriver` runs without a device: it renders each block ``lead``
frames before wall-clock time reaches it, so time tags, recording and OSC
behave as with a device, only nothing is heard.

Both go idle when nothing is in the output and nothing is due: the frame
clock then follows wall-clock time without rendering (an idle engine costs
almost no CPU), and playback resumes ``lead`` frames later, where a busy
engine would have put it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from ..errors import EngineError
from .core import EngineCore

__all__ = ["ClockDriver", "RingDriver", "open_driver"]

# how often an idle engine looks at the clock, in seconds
_IDLE_POLL = 0.05
# the shortest sleep of a busy loop, and its margin before a device period ends
_MIN_SLEEP = 0.0005


class _Driver:
    """Block timing, DSP load and the idle clock shared by both drivers."""

    headless = True
    device_name = ""

    def __init__(self, core: EngineCore, lead_blocks: int) -> None:
        self.core = core
        self.sr = core.samplerate
        self.bs = core.blocksize
        self.lead = max(1, int(lead_blocks)) * self.bs
        self.latency = self.lead / self.sr
        self.dsp_load = 0.0
        self._peak = 0.0
        self.xruns = 0
        self.device_underflows = 0
        self._block_seconds = self.bs / self.sr
        # an exponential average over about one second of blocks
        self._alpha = min(1.0, self._block_seconds)
        self._idle_since: tuple[int, float] | None = None  # (frame, monotonic) anchor

    def take_peak(self) -> float:
        """The largest single-block DSP load since the last call."""
        peak, self._peak = self._peak, 0.0
        return peak

    def _render(self, dst: np.ndarray) -> None:
        t = time.perf_counter()
        self.core.render_block(dst)
        load = (time.perf_counter() - t) / self._block_seconds
        self.dsp_load += (load - self.dsp_load) * self._alpha
        if load > self._peak:
            self._peak = load

    def _should_idle(self) -> bool:
        core = self.core
        if core.playing or core.pending():
            return False
        nxt = core.next_scheduled()
        # wake early enough to start the ring before a scheduled message is due
        return nxt is None or nxt - core.frame > self.lead + 4 * self.bs + self.sr * _IDLE_POLL

    def _idle_step(self) -> None:
        """Advance the frame clock with wall-clock time, then sleep until woken or a while."""
        self._catch_up()
        core = self.core
        core.wake.clear()
        if not core.pending():
            core.wake.wait(_IDLE_POLL)

    def _catch_up(self) -> None:
        """While idle: advance the frame clock to wall-clock time, rendering nothing."""
        core = self.core
        now = time.monotonic()
        if self._idle_since is None:
            self._idle_since = (core.frame, now)
        frame0, t0 = self._idle_since
        target = frame0 + int((now - t0) * self.sr)
        nxt = core.next_scheduled()
        if nxt is not None:
            target = min(target, nxt - self.lead)
        if target > core.frame:
            core.skip(target - core.frame)


class ClockDriver(_Driver):
    """No device: each block is rendered ``lead`` frames before wall-clock time reaches it."""

    headless = True

    def start(self) -> float:
        """Start the clock; returns the Unix time of frame 0."""
        self._m0 = time.monotonic()
        return time.time()

    def run(self, stop: threading.Event) -> None:
        core = self.core
        buf = np.zeros((self.bs, 2), dtype=np.float32)
        was_idle = False
        while not stop.is_set():
            if self._should_idle():
                self._idle_step()
                was_idle = True
                continue
            if was_idle:
                was_idle = False
                self._catch_up()
            due = int((time.monotonic() - self._m0) * self.sr) + self.lead
            if core.frame < due:
                self._render(buf)
                if core.frame + self.sr < due:
                    # more than a second behind (a stopped VM, a debugger): jump, count once
                    self.xruns += 1
                    core.skip(due - core.frame)
                continue
            time.sleep(min(_IDLE_POLL, (core.frame - due) / self.sr + self._block_seconds / 4))

    def _catch_up(self) -> None:
        # the idle clock of a headless engine is the same wall clock as when busy
        core = self.core
        target = int((time.monotonic() - self._m0) * self.sr) + self.lead
        nxt = core.next_scheduled()
        if nxt is not None:
            target = min(target, nxt)
        if target > core.frame:
            core.skip(target - core.frame)

    def close(self) -> None:
        """Nothing to release."""


class RingDriver(_Driver):
    """Render into an rtmixer ring buffer that a PortAudio device plays.

    Parameters
    ----------
    core : EngineCore
        What renders the blocks.
    device : int or str or None
        A PortAudio output device (None: the default one).
    device_blocksize : int
        Frames per device callback; 0 lets the host choose (lowest latency on JACK).
    lead_blocks : int
        Blocks kept queued ahead of the device: the engine's share of the latency.

    Raises
    ------
    EngineError
        If the device cannot be opened, with PortAudio's own message.
    """

    headless = False

    def __init__(
        self, core: EngineCore, device: Any, device_blocksize: int, lead_blocks: int
    ) -> None:
        super().__init__(core, lead_blocks)
        import rtmixer
        import sounddevice as sd

        try:
            self.mixer = rtmixer.Mixer(
                device=device,
                channels=2,
                blocksize=device_blocksize,
                samplerate=self.sr,
                latency="low",
            )
        except (sd.PortAudioError, ValueError) as exc:
            raise EngineError(
                f"cannot open output device {device!r} at {self.sr} Hz in stereo: {exc}; "
                "pick another with device=... (python -m sounddevice lists them), "
                "or headless=True"
            ) from None
        info = sd.query_devices(self.mixer.device)
        api = sd.query_hostapis(info["hostapi"])["name"]
        self.device_name = f"{info['name']} ({api})"
        self.hostapi = api
        self.period = self.mixer.blocksize or self.bs
        self.latency = self.lead / self.sr + float(self.mixer.latency)
        size = 1 << max(12, (4 * (self.lead + self.bs) - 1).bit_length())
        # the ring's memory is ours, so a block renders straight into it, no copy
        self.storage = np.zeros((size, 2), dtype=np.float32)
        self.ring = rtmixer.RingBuffer(self.storage.itemsize * 2, buffer=self.storage)
        self._ptr = self.ring._ptr
        self._lib = self.ring._lib
        self._aligned = size % self.bs == 0
        self.slots = [self.storage[k * self.bs : (k + 1) * self.bs] for k in range(size // self.bs)]
        self._scratch = np.zeros((self.bs, 2), dtype=np.float32)
        self._silence = np.zeros((self.bs, 2), dtype=np.float32)
        self.action: Any = None
        self._stats_action: Any = None
        self._stats_due = 0.0

    def start(self) -> float:
        """Start the stream with ``lead`` frames queued; returns the Unix time of frame 0."""
        self.mixer.start()
        t = time.time()
        self._fill()
        self.action = self.mixer.play_ringbuffer(self.ring)
        # frame 0 leaves the device one output latency after it was queued
        return t + float(self.mixer.latency)

    def _fill(self) -> None:
        ring, ptr, lib, bs = self.ring, self._ptr, self._lib, self.bs
        while lib.PaUtil_GetRingBufferReadAvailable(ptr) < self.lead:
            if lib.PaUtil_GetRingBufferWriteAvailable(ptr) < bs:
                return
            if self._aligned:
                index = (ptr.writeIndex & ptr.smallMask) // bs
                self._render(self.slots[index])
                lib.PaUtil_AdvanceRingBufferWriteIndex(ptr, bs)
            else:
                self._render(self._scratch)
                ring.write(self._scratch)

    def _pad_silence(self) -> None:
        """Queue silence up to ``lead`` frames: resumed playback starts where it would have."""
        ptr, lib = self._ptr, self._lib
        missing = self.lead - lib.PaUtil_GetRingBufferReadAvailable(ptr)
        while missing > 0:
            n = min(missing, self.bs)
            self.ring.write(self._silence[:n])
            missing -= n

    def run(self, stop: threading.Event) -> None:
        mixer = self.mixer
        was_idle = False
        while not stop.is_set():
            if self._should_idle():
                # let the ring play out; rtmixer then drops the action, which is no xrun
                self._idle_step()
                was_idle = True
                self._poll_stats()
                continue
            if was_idle:
                was_idle = False
                self._catch_up()
                self._idle_since = None
                self._pad_silence()
                if self.action not in mixer.actions:
                    self.action = mixer.play_ringbuffer(self.ring)
            elif self.action not in mixer.actions:
                self.xruns += 1  # the ring ran dry: rtmixer stopped reading it
                self._fill()
                self.action = mixer.play_ringbuffer(self.ring)
            self._fill()
            self._poll_stats()
            # Sleep while the queue outlasts one device period, with a margin for waking
            # and rendering: each wake costs a system call, which is not free everywhere.
            level = self._lib.PaUtil_GetRingBufferReadAvailable(self._ptr)
            time.sleep(max(_MIN_SLEEP, (level - self.period) / self.sr - _MIN_SLEEP))

    def _poll_stats(self) -> None:
        now = time.monotonic()
        if now < self._stats_due:
            return
        self._stats_due = now + 1.0
        mixer = self.mixer
        if self._stats_action is None:
            self._stats_action = mixer.fetch_and_reset_stats()
        elif self._stats_action not in mixer.actions:
            self.device_underflows += int(self._stats_action.stats.output_underflows)
            self._stats_action = None

    def jack_client_name(self) -> str | None:
        """This process's JACK client name when playing through JACK (for loopback tests)."""
        if "JACK" not in self.hostapi:
            return None
        import ctypes

        import sounddevice as sd

        lib = ctypes.CDLL(sd._libname)
        name = ctypes.c_char_p()
        if lib.PaJack_GetClientName(ctypes.byref(name)) != 0 or name.value is None:
            return None
        return name.value.decode()

    def close(self) -> None:
        """Stop and close the stream."""
        try:
            self.mixer.stop()
        finally:
            self.mixer.close()


def open_driver(
    core: EngineCore, device: Any, device_blocksize: int, lead_blocks: int, headless: bool
) -> _Driver:
    """The device driver, or the headless clock when asked or when no output device exists.

    An explicitly named device that cannot be opened is an error, never a silent fallback.
    """
    if headless:
        return ClockDriver(core, lead_blocks)
    try:
        import sounddevice as sd
    except OSError:  # no PortAudio library at all
        if device is not None:
            raise EngineError(
                f"device={device!r} needs PortAudio, which is not installed "
                "(apt-get install libportaudio2)"
            ) from None
        return ClockDriver(core, lead_blocks)
    if device is None:
        try:
            sd.query_devices(kind="output")
        except (sd.PortAudioError, ValueError):
            return ClockDriver(core, lead_blocks)
    else:
        try:
            sd.query_devices(device, kind="output")
        except (sd.PortAudioError, ValueError) as exc:
            outputs = [
                f"{i}: {d['name']}"
                for i, d in enumerate(sd.query_devices())
                if d["max_output_channels"] > 0
            ]
            raise EngineError(
                f"no output device {device!r} ({exc}); outputs: {'; '.join(outputs) or 'none'}"
            ) from None
    return RingDriver(core, device, device_blocksize, lead_blocks)
