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
>>> from jupysynth.engine import Engine, play
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

__all__ = ["CAPACITY", "HEADER_BYTES", "Tap", "ring_views"]

#: Bytes before the frames: one int64, the number of frames written so far.
HEADER_BYTES = 64  # a cache line, so the counter and the first frames do not share one
#: Frames a ring holds: twice a scope source's 8192, so a reader copying the
#: newest 8192 has 8192 frames (170 ms at 48 kHz) of slack before they are overwritten.
CAPACITY = 16384

_tap_ids = itertools.count(1)


def ring_views(buf: Any, capacity: int) -> tuple[np.ndarray, np.ndarray]:
    """The write counter (int64, shape ``(1,)``) and the frames (float32) of a ring buffer."""
    counter = np.ndarray((1,), dtype=np.int64, buffer=buf, offset=0)
    frames = np.ndarray((capacity,), dtype=np.float32, buffer=buf, offset=HEADER_BYTES)
    return counter, frames


def ring_bytes(capacity: int) -> int:
    """Size in bytes of a ring of ``capacity`` frames."""
    return HEADER_BYTES + 4 * capacity


def _map_segment(name: str, capacity: int) -> mmap.mmap:
    """Map the engine's segment ``name`` read-only, once sure it is this user's own file."""
    if "/" in name or not name.startswith("jupysynth-"):
        raise EngineError(f"the engine named {name!r} as a tap's ring: not a segment of its own")
    path = os.path.join("/dev/shm", name)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
            raise EngineError(f"{path} is not a shared-memory segment of yours")
        if st.st_size < ring_bytes(capacity):
            raise EngineError(f"{path} is smaller than a ring of {capacity} frames")
        return mmap.mmap(fd, ring_bytes(capacity), access=mmap.ACCESS_READ)
    finally:
        os.close(fd)


class Tap:
    """The engine's output of one module, read live from shared memory.

    Calling the tap returns the newest ``frames`` samples, oldest first, as a
    scope source does (:mod:`jupysynth.notebook.scope`).  Before the engine
    has written that many, the front is zeros.

    Parameters
    ----------
    engine : jupysynth.engine.Engine
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
            self._map = _map_segment(self.name, self.capacity)
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
