"""What clocks the engine: a sound device through rtmixer, or time itself (headless).

:class:`RingDriver` renders blocks ahead into an rtmixer ring buffer that
rtmixer's C callback plays: no Python, GIL or garbage collector runs in the
audio callback, and the block loop keeps ``lead`` frames queued, never waiting
on anything.  If the ring runs dry (the loop was late), rtmixer drops the
playback action; the driver counts an xrun, refills and plays on.

:class:`ClockDriver` runs without a device: it renders each block ``lead``
frames before wall-clock time reaches it, so time tags, recording and OSC
behave as with a device, only nothing is heard.  A block rendered after its
time counts as an xrun, as the ring running dry does with a device.

The third, :class:`~.browser.BrowserDriver`, plays in a web page: the page's
audio clock leads (see :mod:`.browser`).

Both go idle when nothing is in the output and nothing is due: the frame
clock then follows wall-clock time without rendering (an idle engine costs
almost no CPU), and playback resumes ``lead`` frames later, where a busy
engine would have put it.

Both keep the engine's time-tag mapping (``core.t0_ntp``, the wall time of
frame 0) true to what is heard, with a :class:`FrameClock`: a sound card's
crystal runs tens of ppm off the system clock, and an xrun or a stall of the
device loses time for good; see ``docs/clock.md``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..control.packets import unix_from_ntp
from ..errors import EngineError
from .core import EngineCore

__all__ = ["ClockDriver", "FrameClock", "RingDriver", "open_driver"]

# how often an idle engine looks at the clock, in seconds
_IDLE_POLL = 0.05
#: Seconds the device's cycle phase is moved earlier at each cycle seen (see
#: RingDriver._left): 375 ppm at 128 frames, far more than two clocks drift apart.
_CYCLE_CREEP = 1e-6
# the shortest sleep of a busy loop, and its margin before a device period ends
_MIN_SLEEP = 0.0005
#: Seconds a playing device may go without reading the ring before it is given up.
LOST_SECONDS = 0.5


class FrameClock:
    """Where frame 0 falls on the wall clock, estimated from what the device has played.

    The engine maps a time tag to a frame with ``t0`` (see
    :meth:`EngineCore.frame_of`).  This follows ``t0`` as the device really
    plays: fed with observations ``(now, frame)`` (monotonic time, and the
    engine frame heard ``lag`` seconds later), it keeps the smallest
    ``now - frame / samplerate`` of each window (the sample taken right after
    a device callback: waking late or reading a stale count only makes it
    larger), and once per window steers ``t0`` towards it with a second-order
    phase-locked loop that also learns the drift:

    - small errors (drift, jitter) are slewed, at most ``max_slew`` seconds per
      second: no event tagged later ever maps to an earlier frame than one
      tagged ``max_slew`` times the gap before it;
    - an error beyond ``step`` in two windows running (an xrun, a stall, the
      wall clock set) re-anchors at once; so does the first window after
      :meth:`restart` (the device started over: there is no old relation to
      keep);
    - ``t0`` moves only when the estimate is ``deadband`` away from it, so a
      device that keeps time leaves it alone, and two messages with the same
      tag map to the same frame.

    Parameters
    ----------
    samplerate : int
        Frames per second.
    t0_ntp : int
        The starting anchor: NTP time of frame 0.
    lag : float
        Seconds from an observation's frame being counted to its being heard.
    window : float
        Seconds per estimate (it also waits for ``min_samples`` observations).
    tau : float
        Time constant of the loop, in seconds.
    step : float
        Errors beyond this many seconds re-anchor instead of slewing.
    max_slew : float
        Fastest slew of ``t0``, in seconds per second.
    deadband : float, optional
        Smallest change of ``t0`` applied, in seconds (default: two frames).
    max_drift : float
        Largest drift believed, in seconds per second.
    min_samples : int
        Observations a window waits for (up to ten windows long).
    wind : float
        Largest error, in seconds, the drift estimate integrates: a phase step
        slewed out must not wind the drift up.
    wall, mono : callable
        The clocks (``time.time``, ``time.monotonic``): tests pass their own.

    Examples
    --------
    >>> clock = FrameClock(48000, 0, wall=lambda: 0.0, mono=lambda: 0.0)
    >>> clock.observe(0.0, 0) is None   # the window is still open
    True
    """

    def __init__(
        self,
        samplerate: int,
        t0_ntp: int,
        *,
        lag: float = 0.0,
        window: float = 0.1,
        tau: float = 3.0,
        step: float = 0.001,
        max_slew: float = 0.002,
        deadband: float | None = None,
        max_drift: float = 0.002,
        min_samples: int = 8,
        wind: float = 4e-4,
        wall: Any = time.time,
        mono: Any = time.monotonic,
    ) -> None:
        self.samplerate = int(samplerate)
        self._inv_sr = 1.0 / self.samplerate
        self.lag = float(lag)
        self.window = float(window)
        self.tau = float(tau)
        self.step = float(step)
        self.max_slew = float(max_slew)
        self.deadband = 2.0 / self.samplerate if deadband is None else float(deadband)
        self.max_drift = float(max_drift)
        self.min_samples = int(min_samples)
        self.wind = float(wind)
        self._wall = wall
        self._mono = mono
        self._base_ntp = int(t0_ntp)
        # the starting anchor in Unix seconds; the loop runs in seconds relative to it
        self._base = unix_from_ntp(self._base_ntp) if t0_ntp else 0.0
        self._off = wall() - mono()  # wall minus monotonic time
        self._x = 0.0  # the loop's estimate of t0
        self._d = 0.0  # its rate of change (seconds per second): minus the drift
        self._applied = 0.0  # t0 as the engine uses it
        self._pending: float | None = None  # a step seen once, waiting for a second window
        self._lock = True  # the next estimate re-anchors
        self._pmin = float("inf")
        self._count = 0
        self._start: float | None = None
        self._last: float | None = None
        #: Re-anchors for errors beyond ``step`` (stalls, xruns, wall clock set).
        self.steps = 0
        #: The last estimate minus ``t0`` as used, in seconds.
        self.error = 0.0

    @property
    def t0_ntp(self) -> int:
        """``t0`` as the engine should use it (64-bit NTP)."""
        return self._base_ntp + int(round(self._applied * 4294967296.0))

    @property
    def drift_ppm(self) -> float:
        """How much faster the device runs than the system clock, in parts per million."""
        return -self._d * 1e6

    @property
    def offset_ms(self) -> float:
        """How far ``t0`` has moved from the starting anchor, in milliseconds."""
        return self._applied * 1e3

    def restart(self) -> None:
        """The device started playing anew (after an xrun or idling): re-anchor next window."""
        self._lock = True
        self._pending = None
        self._start = None

    def observe(self, now: float, frame: int) -> int | None:
        """Note that ``frame`` is heard ``lag`` seconds after ``now``; returns a new ``t0``.

        Called on every wake of the block loop: a comparison and a subtraction,
        except once per window, when it returns the new ``t0_ntp`` if it moved
        (else None).
        """
        if self._start is None:
            self._start = now
            self._pmin = float("inf")
            self._count = 0
        p = now - frame * self._inv_sr
        if p < self._pmin:
            self._pmin = p
        self._count += 1
        elapsed = now - self._start
        if elapsed < self.window or (
            self._count < self.min_samples and elapsed < 10.0 * self.window
        ):
            return None
        self._start = now
        pmin = self._pmin
        self._pmin = float("inf")
        self._count = 0
        return self.update(now, pmin)

    def update(self, now: float, phase: float) -> int | None:
        """One estimate from the window's smallest ``now - frame / samplerate``.

        Returns the new ``t0_ntp`` if ``t0`` moved, else None.
        """
        y = phase + self.lag + self._wall_offset() - self._base
        dt = 0.0 if self._last is None else min(now - self._last, 1.0)
        self._last = now
        if self._lock:
            self._lock = False
            self._pending = None
            self._x = y
            return self._apply(y, abs(y - self._applied) >= self.deadband)
        e = y - self._x
        self.error = y - self._applied
        if abs(e) > self.step:
            if self._pending is not None and abs(y - self._pending) <= self.step:
                # both windows saw the new relation; noise only ever adds: take the lower
                y = min(y, self._pending)
                self._pending = None
                self._x = y
                self.steps += 1
                return self._apply(y, True)
            self._pending = y  # one window could be a fluke: wait for a second
            return None
        self._pending = None
        # a type-2 loop, critically damped (zeta = 1): drift tracked with no lasting error
        w = min(self.wind, max(-self.wind, e))
        self._d = min(self.max_drift, max(-self.max_drift, self._d + w * dt / self.tau**2))
        rate = min(self.max_slew, max(-self.max_slew, self._d + 2.0 * e / self.tau))
        self._x += rate * dt
        return self._apply(self._x, abs(self._x - self._applied) >= self.deadband)

    def _apply(self, x: float, move: bool) -> int | None:
        if not move:
            return None
        self._applied = x
        self.error = 0.0
        return self.t0_ntp

    def _wall_offset(self) -> float:
        # wall minus monotonic time: constant but for the wall clock being set (NTP
        # slews both alike); a read interrupted for long keeps the last value
        m1 = self._mono()
        w = self._wall()
        m2 = self._mono()
        if m2 - m1 < 0.0005:
            self._off = w - 0.5 * (m1 + m2)
        return self._off


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
        self.clock: FrameClock | None = None  # made by run(), once the core has its t0

    @property
    def drift_ppm(self) -> float:
        """Measured speed of the device's clock against the system's, in ppm (+: fast)."""
        return self.clock.drift_ppm if self.clock is not None else 0.0

    @property
    def offset_ms(self) -> float:
        """How far ``t0`` has moved since the start (drift, xruns, stalls), in ms."""
        return self.clock.offset_ms if self.clock is not None else 0.0

    def _observe(self, now: float, frame: float) -> None:
        t0 = self.clock.observe(now, frame)  # type: ignore[union-attr]
        if t0 is not None:
            # One attribute store, atomic under the GIL: the OSC thread's frame_of()
            # reads t0_ntp once and sees either value.  Events already queued keep
            # their frames; only later messages use the new t0.
            self.core.t0_ntp = t0

    def take_peak(self) -> float:
        """The largest single-block DSP load since the last call."""
        peak, self._peak = self._peak, 0.0
        return peak

    def _render(self, dst: np.ndarray, due: Callable[[], float] | None = None) -> None:
        """Render the next block into ``dst``; ``due``: seconds left until a listener needs it."""
        t = time.perf_counter()
        self.core.render_block(dst, due)
        load = (time.perf_counter() - t) / self._block_seconds
        self.dsp_load += (load - self.dsp_load) * self._alpha
        if load > self._peak:
            self._peak = load

    def _nap(self, seconds: float) -> None:
        """Sleep until the next block is due, unless something should not wait for it:
        a graph change, a ``/sync``, a prepared patch (see :meth:`EngineCore.service`)."""
        core = self.core
        if core.urgent.wait(seconds):
            core.service()

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

    def _clocked(self, stop: threading.Event, m0: float) -> None:
        """Render each block ``lead`` frames before ``m0 + frame / sr`` on the monotonic clock.

        The headless loop, and a device driver's once its device is lost.
        """
        core = self.core
        buf = np.zeros((self.bs, 2), dtype=np.float32)
        sr = self.sr
        self._m0 = m0
        # frame F is due at m0 + F / sr on the monotonic clock, always: only the wall
        # clock (time tags) can move against it, when it is set
        self.clock = FrameClock(sr, core.t0_ntp)
        was_idle = False
        dry = False  # the clock has passed what was rendered: a device would run dry
        while not stop.is_set():
            now = time.monotonic()
            self._observe(now, (now - m0) * sr)
            if self._should_idle():
                self._idle_step()
                was_idle = True
                continue
            if was_idle:
                was_idle = False
                self._clock_catch_up()
            played = int((now - m0) * sr)
            if core.frame < played:
                if not dry:  # late: counted once per stretch, as a ring running dry is
                    self.xruns += 1
                    dry = True
            else:
                dry = False
            due = played + self.lead
            if core.frame < due:
                self._render(buf)
                if core.frame + self.sr < due:
                    # more than a second behind (a stopped VM, a debugger): jump
                    core.skip(due - core.frame)
                continue
            self._nap(min(_IDLE_POLL, (core.frame - due) / self.sr + self._block_seconds / 4))

    def _clock_catch_up(self) -> None:
        # the idle clock of a headless engine is the same wall clock as when busy
        core = self.core
        target = int((time.monotonic() - self._m0) * self.sr) + self.lead
        nxt = core.next_scheduled()
        if nxt is not None:
            target = min(target, nxt)
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
        self._clocked(stop, self._m0)

    def _catch_up(self) -> None:
        self._clock_catch_up()

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
        # when the device last read the ring (see _left): its read index, and the time
        self._cycle_read, self._cycle_at, self._looked_at = -1, -1.0, 0.0
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
        #: Why the device was given up ('' while it plays): see :meth:`run`.
        self.lost = ""

    def start(self) -> float:
        """Start the stream with ``lead`` frames queued; returns the Unix time of frame 0."""
        self.mixer.start()
        t = time.time()
        self._fill(reading=False)
        self.action = self.mixer.play_ringbuffer(self.ring)
        # frame 0 leaves the device one output latency after it was queued
        return t + float(self.mixer.latency)

    def _fill(self, reading: bool = True) -> None:
        """Render until ``lead`` frames are queued; ``reading``: the device reads the ring
        (a block then has a time it is needed by)."""
        ring, ptr, lib, bs = self.ring, self._ptr, self._lib, self.bs
        if reading:
            due = self._left
        else:  # not read yet (a start, a restart after running dry): the lead is the wait
            until = time.monotonic() + self.lead / self.sr

            def due() -> float:
                return until - time.monotonic()

        while lib.PaUtil_GetRingBufferReadAvailable(ptr) < self.lead:
            if lib.PaUtil_GetRingBufferWriteAvailable(ptr) < bs:
                return
            if self._aligned:
                index = (ptr.writeIndex & ptr.smallMask) // bs
                self._render(self.slots[index], due)
                lib.PaUtil_AdvanceRingBufferWriteIndex(ptr, bs)
            else:
                self._render(self._scratch, due)
                ring.write(self._scratch)

    def _left(self) -> float:
        """Seconds until the device reads the block being rendered (asked again while a
        renderer waits for it).

        The device reads a period each cycle: the frames queued before the block
        last ``level / sr`` from its next cycle.  Cycles come a period apart; their
        phase is the earliest one consistent with what was seen: a cycle came
        between the last look at the ring's read index that found it unmoved and
        the one that found it moved.  Looks come each ms while a renderer waits,
        so the phase is known within a ms once a wait has seen a cycle; it errs
        early, never late (late: the ring would run dry while the engine waits).
        """
        if self.action not in self.mixer.actions:
            return 0.0  # the ring ran dry and is not read: nothing is gained by waiting
        now = time.monotonic()
        period = self.period / self.sr
        read = self._ptr.readIndex
        if read != self._cycle_read:
            self._cycle_read = read
            # the cycle predicted last before now; a cycle came after the last look
            c = self._cycle_at
            predicted = c + period * math.floor((now - c) / period)
            if c < 0 or predicted <= self._looked_at:
                self._cycle_at = self._looked_at
            else:  # consistent: creep earlier, so that a device clock running fast
                self._cycle_at -= _CYCLE_CREEP  # is caught (it lands before a look)
        self._looked_at = now
        c = self._cycle_at
        nxt = c + period * (math.floor((now - c) / period) + 1)
        return nxt - now + self._lib.PaUtil_GetRingBufferReadAvailable(self._ptr) / self.sr

    def _pad_silence(self) -> None:
        """Queue silence up to ``lead`` frames: resumed playback starts where it would have."""
        ptr, lib = self._ptr, self._lib
        missing = self.lead - lib.PaUtil_GetRingBufferReadAvailable(ptr)
        while missing > 0:
            n = min(missing, self.bs)
            self.ring.write(self._silence[:n])
            missing -= n

    def _lag(self) -> float:
        """Seconds from the callback reading a device period to that period's last frame
        being heard: the output latency, plus the period (the read count includes it)."""
        # rtmixer's stream statistics, read in place: the callback's frame count so far
        frames = int(self.mixer._state.stats.max_blocksize) or self.period
        return float(self.mixer.latency) + frames / self.sr

    @property
    def headless(self) -> bool:  # type: ignore[override]
        """True once the device is lost: clocked by time, nothing heard."""
        return bool(self.lost)

    def run(self, stop: threading.Event) -> None:
        """Keep the ring ``lead`` frames ahead of the device until ``stop``.

        A device that stops reading the ring for :data:`LOST_SECONDS` while
        something plays (its audio server stopped, a USB card pulled out) is
        given up: the loop goes on clocked by time, as headless, so time tags,
        recordings and scopes keep working; a restart of the engine opens the
        device again.
        """
        mixer, core = self.mixer, self.core
        lib, ptr = self._lib, self._ptr
        self.clock = FrameClock(self.sr, core.t0_ntp, lag=self._lag())
        was_idle = False
        read, moved = ptr.readIndex, time.monotonic()
        while not stop.is_set():
            if self._should_idle():
                # let the ring play out; rtmixer then drops the action, which is no xrun
                self._idle_step()
                was_idle = True
                self._poll_stats(time.monotonic())
                continue
            if was_idle:
                was_idle = False
                self._catch_up()
                self._idle_since = None
                self._pad_silence()
                if self.action not in mixer.actions:
                    self.action = mixer.play_ringbuffer(self.ring)
                self.clock.restart()  # the silence padded in starts a new relation
            elif self.action not in mixer.actions:
                self.xruns += 1  # the ring ran dry: rtmixer stopped reading it
                self._fill(reading=False)
                self.action = mixer.play_ringbuffer(self.ring)
                self.clock.restart()  # the device played silence for a while: time lost
            self._fill()
            # The frame the callback reads next, then the time: a callback in between
            # makes the sample late, never early, and the clock keeps the earliest.
            level = lib.PaUtil_GetRingBufferReadAvailable(ptr)
            now = time.monotonic()
            if ptr.readIndex != read or was_idle:
                read, moved = ptr.readIndex, now
            elif now - moved > LOST_SECONDS:
                self._give_up(stop, now)
                return
            self._observe(now, core.frame - level)
            self._poll_stats(now)
            # Sleep while the queue outlasts one device period, with a margin for waking
            # and rendering: each wake costs a system call, which is not free everywhere.
            self._nap(max(_MIN_SLEEP, (level - self.period) / self.sr - _MIN_SLEEP))

    def _give_up(self, stop: threading.Event, now: float) -> None:
        """The device stopped reading: say so once, and play on clocked by time."""
        import logging

        stamp = time.strftime("%H:%M:%S")
        self.lost = (
            f"the device stopped playing at {stamp} (its audio server stopped, or it was "
            "unplugged); nothing is heard, time tags and recordings go on; once it is back, "
            "%synth restart (or Engine.stop() and start()) plays through it again"
        )
        self.device_name = f"{self.device_name}: lost at {stamp}"
        logging.getLogger("jupysynth.engine").warning("%s", self.lost)
        # the frames queued in the ring were never heard: the clock resumes at the next one
        self._clocked(stop, now - (self.core.frame - self.lead) / self.sr)

    def _catch_up(self) -> None:
        if self.lost:
            self._clock_catch_up()
        else:
            super()._catch_up()

    def _poll_stats(self, now: float) -> None:
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
        """Stop and close the stream (a lost device's is left alone: it may never answer)."""
        if self.lost:
            return
        try:
            self.mixer.stop()
        finally:
            self.mixer.close()


def open_driver(
    core: EngineCore,
    device: Any,
    device_blocksize: int,
    lead_blocks: int,
    headless: bool,
    output: str = "device",
) -> _Driver:
    """The device driver, the browser's, or the headless clock (asked, or no device exists).

    ``output``: ``device`` (headless when there is none), ``browser``, or ``auto``
    (the device if there is one, else the browser).

    An explicitly named device that cannot be opened is an error, never a silent fallback.
    """
    if headless:
        return ClockDriver(core, lead_blocks)

    def no_device() -> _Driver:
        # "auto" (a notebook's default): the page plays what no sound card can
        if output in ("browser", "auto"):
            from .browser import BrowserDriver

            return BrowserDriver(core, lead_blocks)
        return ClockDriver(core, lead_blocks)

    if output == "browser":
        return no_device()
    try:
        import sounddevice as sd
    except OSError:  # no PortAudio library at all
        if device is not None:
            raise EngineError(
                f"device={device!r} needs PortAudio, which is not installed "
                "(apt-get install libportaudio2)"
            ) from None
        return no_device()
    if device is None:
        try:
            sd.query_devices(kind="output")
        except (sd.PortAudioError, ValueError):
            return no_device()
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
