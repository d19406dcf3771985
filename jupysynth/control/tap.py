"""Scope taps, kernel side: a shared-memory ring the engine fills with one module's output.

A :class:`Tap` asks the engine (``/tap/open <id> <module> <port> <frames>``,
on the owner's channel) to create a small POSIX shared-memory segment and copy
that module output's column into it after every block; the engine answers
``/tap/opened <id> <shm_name>``, and the tap maps the segment read-only (after
checking it is a file of this user's, not a link) and reads the newest frames
from it without a message round trip.  The segment is a write counter followed
by a ring of float32 frames (:data:`HEADER_BYTES`, :func:`ring_views`): the
engine writes the frames first and advances the counter last, so a reader
that sees the counter at ``n`` finds frames up to ``n`` in place.  Closing
the tap (``/tap/close <id>``) has the engine unlink the segment it made; it
unlinks every open one when it stops.

Examples
--------
>>> import jupysynth as js
>>> from jupysynth.player import Engine, play
>>> with Engine(headless=True) as engine:  # doctest: +SKIP
...     osc = js.Sine(freq=1000, amp=0.5)
...     play(osc, engine)
...     with Tap(engine, osc.id) as tap:
...         x = tap()          # the newest 8192 frames the engine rendered
"""

from __future__ import annotations

import itertools
import mmap
import os
import stat
import time
from typing import Any

import numpy as np

from ..errors import EngineError

__all__ = [
    "CAPACITY",
    "HEADER_BYTES",
    "OutputTap",
    "Tap",
    "map_segment",
    "ring_bytes",
    "ring_views",
]

#: Bytes before the frames: one int64, the number of frames written so far.
HEADER_BYTES = 64  # a cache line, so the counter and the first frames do not share one
#: Frames a ring holds: twice a scope source's 8192, so a reader copying the
#: newest 8192 has 8192 frames (170 ms at 48 kHz) of slack before they are overwritten.
CAPACITY = 16384

_tap_ids = itertools.count(1)


def ring_views(buf: Any, capacity: int, channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The write counter (int64, shape ``(1,)``) and the frames (float32) of a ring buffer.

    The frames are shaped ``(capacity,)`` for one channel, ``(capacity, channels)``
    (interleaved) for more.
    """
    counter = np.ndarray((1,), dtype=np.int64, buffer=buf, offset=0)
    shape = (capacity,) if channels == 1 else (capacity, channels)
    frames = np.ndarray(shape, dtype=np.float32, buffer=buf, offset=HEADER_BYTES)
    return counter, frames


def ring_bytes(capacity: int, channels: int = 1) -> int:
    """Size in bytes of a ring of ``capacity`` frames of ``channels`` float32 samples."""
    return HEADER_BYTES + 4 * capacity * channels


def map_segment(name: str, capacity: int, channels: int = 1) -> mmap.mmap:
    """Map the engine's segment ``name`` read-only, once sure it is this user's own file."""
    if "/" in name or not name.startswith("jupysynth-"):
        raise EngineError(f"the engine named {name!r} as a tap's ring: not a segment of its own")
    path = os.path.join("/dev/shm", name)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
            raise EngineError(f"{path} is not a shared-memory segment of yours")
        size = ring_bytes(capacity, channels)
        if st.st_size < size:
            raise EngineError(f"{path} is smaller than a ring of {capacity} frames")
        return mmap.mmap(fd, size, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)


class Tap:
    """The engine's output of one module, read live from shared memory.

    Calling the tap returns the newest ``frames`` samples, oldest first, as a
    scope source does (:mod:`jupysynth.notebook.scope`).  Before the engine
    has written that many, the front is zeros.

    Parameters
    ----------
    engine : jupysynth.player.Engine
        A running engine in which module ``module_id`` exists.
    module_id : int
        The module to look at.
    port : int, default 0
        Which of its outputs (channel).
    frames : int, default 8192
        Samples each call returns (at most ``capacity // 2``).
    capacity : int, default :data:`CAPACITY`
        Frames the ring holds.

    Raises
    ------
    EngineError
        If the engine refuses the tap (unknown module, too many taps, an
        engine rendering on workers).

    Attributes
    ----------
    samplerate : int
        The engine's sample rate.
    """

    def __init__(
        self,
        engine: Any,
        module_id: int,
        port: int = 0,
        frames: int = 8192,
        capacity: int = CAPACITY,
    ) -> None:
        if not 0 < frames <= capacity // 2:
            raise ValueError(f"frames={frames} must be from 1 to capacity // 2 = {capacity // 2}")
        self.engine = engine
        self.module_id = int(module_id)
        self.port = int(port)
        self.frames = int(frames)
        self.capacity = int(capacity)
        self.samplerate = int(engine.status()["samplerate"])
        self.tap_id = next(_tap_ids)  # a fresh id, not the module's: two scopes are two taps
        self._map: mmap.mmap | None = None
        self.name: str | None = None
        engine.send("/tap/open", self.tap_id, self.module_id, self.port, self.capacity)
        engine.sync()  # raises the engine's refusal, if any
        reply = engine.client.take_reply("/tap/opened", self.tap_id)
        if reply is None:
            raise EngineError("the engine opened the tap but its /tap/opened reply was lost")
        self.name = str(reply[1])
        try:
            self._map = map_segment(self.name, self.capacity)
        except (OSError, EngineError):
            self._close_remote()
            raise
        self._counter, self._ring = ring_views(self._map, capacity)
        self._out = np.zeros(self.frames, dtype=np.float32)

    @property
    def written(self) -> int:
        """Frames the engine has written since the tap opened."""
        return int(self._counter[0]) if self._map is not None else 0

    def __call__(self) -> np.ndarray:
        """The newest ``frames`` samples (float32, a new array each call)."""
        if self._map is None:
            raise EngineError("this scope tap is closed")
        ring, cap, n = self._ring, self.capacity, self.frames
        out = self._out
        for _ in range(4):
            end = int(self._counter[0])
            have = min(end, n)
            out[: n - have] = 0.0
            start = (end - have) % cap
            first = min(have, cap - start)
            out[n - have : n - have + first] = ring[start : start + first]
            out[n - have + first :] = ring[: have - first]
            # frames the engine wrote meanwhile may have overwritten the oldest we copied
            if int(self._counter[0]) - end <= cap - n:
                return out.copy()
            time.sleep(0.001)
        raise EngineError("the scope tap was overwritten while reading it four times; retry")

    def close(self) -> None:
        """Ask the engine to stop writing and remove the segment, then let go (idempotent)."""
        if self._map is None:
            return
        self._close_remote()
        # the numpy views hold exports of the buffer: drop them before closing it
        self._counter = self._ring = np.zeros(0)
        self._map.close()
        self._map = None

    def _close_remote(self) -> None:
        if self.engine.running:
            try:
                self.engine.send("/tap/close", self.tap_id)
                self.engine.sync()
                return
            except EngineError:
                pass
        # the engine is gone (it unlinks its taps as it stops, unless it was killed)
        try:
            os.unlink(os.path.join("/dev/shm", self.name or ""))
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            pass

    def __enter__(self) -> Tap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_map", None) is not None:
            try:
                self.close()
            except Exception:  # noqa: BLE001 - at interpreter exit anything may be gone
                pass


class OutputTap:
    """The engine's browser output, read from its ring as it is written (kernel side).

    The engine (``Engine(output="browser")``) names its ring in ``engine.info``;
    :meth:`read` returns the frames written since the last call, with the
    engine frame number of the first, as int16 PCM ready to send to a page.
    A reader that fell more than the ring behind skips to the newest frames
    (the page hears a gap, never stale sound).

    Parameters
    ----------
    engine : jupysynth.player.Engine
        A running engine with ``output="browser"``.
    """

    def __init__(self, engine: Any) -> None:
        name = engine.info.get("out_ring")
        if not name:
            raise EngineError("this engine plays on a device or nowhere, not in a browser")
        self.name = str(name)
        self.capacity = int(engine.info["out_capacity"])
        self._map: mmap.mmap | None = map_segment(self.name, self.capacity, 2)
        self._counter, self._frames = ring_views(self._map, self.capacity, 2)
        self.pos = int(self._counter[0])  # the newest: a page starts with what plays now
        self.skipped = 0

    def read(self, most: int | None = None) -> tuple[int, np.ndarray] | None:
        """``(first_frame, pcm)`` of the frames written since the last read, or None.

        ``pcm`` is int16, shape ``(n, 2)``, at most ``most`` frames (the newest).
        """
        if self._map is None:
            return None
        end = int(self._counter[0])
        cap = self.capacity
        if end < self.pos:  # a new ring counting from 0 cannot happen; be safe
            self.pos = end
        keep = cap - 4096 if most is None else min(most, cap - 4096)
        if end - self.pos > keep:
            self.skipped += end - keep - self.pos
            self.pos = end - keep
        n = end - self.pos
        if n <= 0:
            return None
        start = self.pos % cap
        first = min(n, cap - start)
        x = np.empty((n, 2), dtype=np.float32)
        x[:first] = self._frames[start : start + first]
        x[first:] = self._frames[: n - first]
        if int(self._counter[0]) - self.pos > cap:  # overwritten while copying
            self.pos = int(self._counter[0])
            return None
        first_frame, self.pos = self.pos, end
        np.clip(x, -1.0, 1.0, out=x)
        return first_frame, (x * 32767.0).astype("<i2")

    def close(self) -> None:
        """Let go of the ring (the engine removes it when it stops)."""
        if self._map is None:
            return
        self._counter = self._frames = np.zeros(0)
        self._map.close()
        self._map = None
