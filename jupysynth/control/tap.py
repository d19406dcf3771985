"""Scope taps, kernel side: a shared-memory ring the engine fills with one module's output.

A :class:`Tap` creates a small POSIX shared-memory segment, asks the engine
(``/tap/open <id> <port> <shm_name>``) to copy that module output's column
into it after every block, and reads the newest frames from it without a
message round trip.  The segment is a write counter followed by a ring of
float32 frames (:data:`HEADER_BYTES`, :func:`ring_views`): the engine writes
the frames first and advances the counter last, so a reader that sees the
counter at ``n`` finds frames up to ``n`` in place.  Closing the tap
(``/tap/close <id>``) unlinks the segment; the engine also forgets a tap
whose segment it finds gone, and unlinks every open tap when it stops.

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
import os
import time
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

from ..errors import EngineError

__all__ = ["CAPACITY", "HEADER_BYTES", "Tap", "ring_views"]

#: Bytes before the frames: one int64, the number of frames written so far.
HEADER_BYTES = 64  # a cache line, so the counter and the first frames do not share one
#: Frames a ring holds: twice a scope source's 8192, so a reader copying the
#: newest 8192 has 8192 frames (170 ms at 48 kHz) of slack before they are overwritten.
CAPACITY = 16384

_names = itertools.count()
_tap_ids = itertools.count(1)


def ring_views(buf: Any, capacity: int) -> tuple[np.ndarray, np.ndarray]:
    """The write counter (int64, shape ``(1,)``) and the frames (float32) of a ring buffer."""
    counter = np.ndarray((1,), dtype=np.int64, buffer=buf, offset=0)
    frames = np.ndarray((capacity,), dtype=np.float32, buffer=buf, offset=HEADER_BYTES)
    return counter, frames


def ring_bytes(capacity: int) -> int:
    """Size in bytes of a ring of ``capacity`` frames."""
    return HEADER_BYTES + 4 * capacity


def _unlink(shm: SharedMemory) -> None:
    """Unlink ``shm`` whoever got there first (the engine unlinks its taps when it stops)."""
    try:
        shm.unlink()
    except FileNotFoundError:
        # SharedMemory.unlink unregisters only after a successful unlink: do it
        # here, or the resource tracker warns about a "leak" at interpreter exit
        resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]


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
        engine rendering on workers); the segment is unlinked before raising.

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
        # the pid keeps two kernels on one machine apart; the counter, two taps in one
        name = f"jupysynth-tap-{os.getpid()}-{next(_names)}"
        self._shm: SharedMemory | None = SharedMemory(name, create=True, size=ring_bytes(capacity))
        self.name = name
        self._counter, self._ring = ring_views(self._shm.buf, capacity)
        self._counter[0] = 0
        self._out = np.zeros(self.frames, dtype=np.float32)
        # a fresh id, not the module's: two scopes of one module are two taps
        self.tap_id = next(_tap_ids)
        try:
            engine.send("/tap/open", self.tap_id, self.module_id, self.port, name)
            engine.sync()
        except EngineError:
            self._release()
            raise

    @property
    def written(self) -> int:
        """Frames the engine has written since the tap opened."""
        return int(self._counter[0]) if self._shm is not None else 0

    def __call__(self) -> np.ndarray:
        """The newest ``frames`` samples (float32, a new array each call)."""
        if self._shm is None:
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
        """Ask the engine to stop writing, then unlink the segment (idempotent)."""
        if self._shm is None:
            return
        if self.engine.running:
            try:
                self.engine.send("/tap/close", self.tap_id)
                # wait for it: the engine must have let go before the segment goes
                self.engine.sync()
            except EngineError:
                pass  # the engine stopped meanwhile, and unlinked what it had open
        self._release()

    def _release(self) -> None:
        shm, self._shm = self._shm, None
        if shm is None:
            return
        # the numpy views hold exports of the buffer: drop them before closing it
        self._counter = self._ring = np.zeros(0)
        shm.close()
        _unlink(shm)

    def __enter__(self) -> Tap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_shm", None) is not None:
            self._release()
