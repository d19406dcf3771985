"""The browser clocks the engine: its output goes to a page, whose audio clock leads.

With ``Engine(output="browser")`` no sound card is opened.  Each rendered
block is copied into a shared-memory ring (:class:`OutRing`, made like a scope
tap's: created by the engine, 0600, ``O_EXCL | O_NOFOLLOW``) that the kernel
reads and sends to the page over a Jupyter comm
(:mod:`jupysynth.notebook.browser`); an ``AudioWorklet`` plays it there.

**The page's audio clock is the master.**  The page reports, about twenty
times a second, which engine frame it is playing now (``/out/heard <frame>
<target>``, through the kernel, on the owner's channel).  A :class:`FrameClock`
turns those reports into ``t0`` (the wall time frame 0 is heard), keeping the
least delayed report of each window, so time tags and ``Engine.time_of``
stay true to what the listener hears; the block loop renders until it is
``target`` frames ahead of the frame heard now: what the page asks for, its
jitter buffer plus the trip from ring to page (which the page learns from its
buffer) plus the way from its worklet to the ear.  Until a page reports, the
lead is 40 ms and :data:`TRANSIT_SECONDS`.  The engine runs
at the page's rate: the page makes its ``AudioContext`` at the engine's sample
rate, and the browser resamples to the hardware with its own resampler.

With no page listening (none has reported for :data:`LISTEN_SECONDS`: no tab
open, the tab closed) the loop runs on the wall clock from the last anchor,
exactly as :class:`~.drivers.ClockDriver`, and idles when nothing plays.  A
kernel busy in a long cell delays the reports, not the sound: the loop goes
on extrapolating ``t0`` meanwhile.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from ..control.packets import unix_from_ntp
from ..control.tap import ring_bytes, ring_views
from .core import EngineCore
from .drivers import _IDLE_POLL, ClockDriver, FrameClock
from .taps import create_segment, remove_segment

__all__ = ["BrowserDriver", "OutRing", "OUT_CAPACITY"]

#: Frames the output ring holds: 0.68 s at 48 kHz, far beyond any jitter buffer.
OUT_CAPACITY = 1 << 15
#: A page that has not reported for this long is gone: the wall clock leads again.
LISTEN_SECONDS = 2.0
#: Allowance for the trip from the ring to the page until a page says what it
#: takes: the kernel reads the ring every 10 ms, then a websocket message.
TRANSIT_SECONDS = 0.02
#: The most a page may ask the engine to render ahead of what it hears.
MAX_TARGET_SECONDS = 1.0


class OutRing:
    """The engine's stereo output, written after each block for the kernel to stream.

    The counter holds the engine frame number one past the newest frame
    written (so the reader knows each frame's number); frame ``F`` lies at row
    ``F % capacity``.  Frames are written first, the counter last.
    """

    def __init__(self, capacity: int = OUT_CAPACITY) -> None:
        self.capacity = int(capacity)
        self.name, self.map = create_segment("out", ring_bytes(capacity, 2), "browser output")
        self.counter, self.frames = ring_views(self.map, capacity, 2)

    def write(self, block: np.ndarray, frame: int) -> None:
        """Copy ``block`` (frames starting at engine frame ``frame``) into the ring."""
        n, cap = block.shape[0], self.capacity
        pos = frame % cap
        first = min(n, cap - pos)
        self.frames[pos : pos + first] = block[:first]
        if first < n:
            self.frames[: n - first] = block[first:]
        self.counter[0] = frame + n

    def close(self) -> None:
        """Unmap and unlink the ring (a kernel's mapping stays valid until it lets go)."""
        self.counter = self.frames = np.zeros(0)
        self.map.close()
        remove_segment(self.name)


class BrowserDriver(ClockDriver):
    """Render for a page: paced by the frames the page reports hearing.

    Parameters
    ----------
    core : EngineCore
        What renders the blocks.
    lead_blocks : int
        Blocks rendered ahead while no page listens (as the headless clock).
    """

    headless = False
    device_name = "browser"

    def __init__(self, core: EngineCore, lead_blocks: int) -> None:
        super().__init__(core, lead_blocks)
        self.ring = OutRing()
        self.target = int(0.04 * self.sr)  # the page's jitter buffer, until it says
        self.lead = self.target + int(TRANSIT_SECONDS * self.sr)
        self.latency = self.lead / self.sr
        self._report: tuple[float, int, int] | None = None
        self.reports = 0
        self.listening = False

    def heard(self, frame: int, target: int) -> None:
        """A page hears engine frame ``frame`` now and buffers ``target`` frames (OSC thread).

        One tuple stored: the block loop reads it whole.
        """
        self._report = (time.monotonic(), int(frame), int(target))
        self.reports += 1
        self.core.urgent.set()  # a first report may move t0 at once

    def run(self, stop: threading.Event) -> None:
        core, sr = self.core, self.sr
        buf = np.zeros((self.bs, 2), dtype=np.float32)
        # reports arrive every ~50 ms, each late by a message's trip: a window keeps
        # the least late of a few; jitter under 10 ms is slewed, a real jump (an
        # underrun, a new page) re-anchors
        self.clock = FrameClock(sr, core.t0_ntp, window=0.2, min_samples=3, step=0.01)
        seen = None
        was_idle = False
        max_target = int(MAX_TARGET_SECONDS * sr)
        while not stop.is_set():
            now = time.monotonic()
            report = self._report
            if report is not None and report is not seen:
                seen = report
                self._observe(report[0], report[1])
                self.target = min(max(report[2], self.bs), max_target)
                self.lead = self.target  # the page's buffer, its trip and its ear
                self.latency = self.lead / sr
            self.listening = report is not None and now - report[0] < LISTEN_SECONDS
            if not self.listening and self._should_idle():
                self._idle_step()
                was_idle = True
                continue
            if was_idle:
                was_idle = False
                self._catch_up()
            # the frame heard now, on the clock the page's reports steer
            heard = (time.time() - unix_from_ntp(core.t0_ntp)) * sr
            due = int(heard) + self.lead
            if core.frame < due:
                frame = core.frame
                # heard once the page's buffer before it plays out; it must reach the
                # page before that, through the kernel and a websocket: half of it
                needed = now + max(0.0, core.frame - heard) / sr / 2
                self._render(buf, lambda t=needed: t - time.monotonic())
                self.ring.write(buf, frame)
                if core.frame + sr < due:
                    # more than a second behind (a stopped VM): jump, count once
                    self.xruns += 1
                    core.skip(due - core.frame)
                continue
            self._nap(min(_IDLE_POLL, (core.frame - due) / sr + self._block_seconds / 4))

    def _catch_up(self) -> None:
        # idle: the frame clock follows the wall clock from t0, as it would have played
        core = self.core
        heard = (time.time() - unix_from_ntp(core.t0_ntp)) * self.sr
        target = int(heard) + self.lead
        nxt = core.next_scheduled()
        if nxt is not None:
            target = min(target, nxt)
        if target > core.frame:
            core.skip(target - core.frame)

    def start(self) -> float:
        """Start the clock; returns the Unix time of frame 0 (until a page reports)."""
        super().start()
        return time.time()

    def close(self) -> None:
        """Remove the output ring."""
        self.ring.close()
