"""Scope taps, engine side: copy a module's output column into a kernel's ring after each block.

The kernel creates the shared-memory ring (:class:`jupysynth.control.tap.Tap`)
and sends ``/tap/open``; :class:`Taps` maps the segment here and, after every
render, copies the rows just rendered of that module's bus column into the
ring, then advances the ring's counter.  The copies go into views of the
mapping made once at open: nothing is allocated per block beyond numpy's
slice views, and with no tap open :meth:`Taps.write` is never called (the
block loop tests ``if taps``).

The segment is mapped with ``mmap`` rather than ``SharedMemory(name)``:
attaching a ``SharedMemory`` registers it with a resource-tracker process,
which would start one more process in the engine and unlink the kernel's
segment when the engine exits.  When the engine stops it unlinks the
segments of the taps still open, so a kernel that died leaves none in
``/dev/shm``.
"""

from __future__ import annotations

import logging
import mmap
import os
from typing import Any

import numpy as np

from ..control.tap import HEADER_BYTES, ring_views
from ..errors import EngineError

__all__ = ["MAX_TAPS", "Taps"]

log = logging.getLogger("jupysynth.engine")

#: Taps open at once: each costs a copy per block, so a runaway loop of scopes
#: is refused instead of eating the block's budget.
MAX_TAPS = 32

_SHM_DIR = "/dev/shm"


class _Ring:
    """One open tap: the mapping, its views and the module output it follows."""

    def __init__(self, module_id: int, port: int, name: str) -> None:
        if "/" in name or not name or name.startswith("."):
            raise EngineError(f"/tap/open: {name!r} is not a shared-memory segment name")
        path = os.path.join(_SHM_DIR, name)
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError as exc:
            raise EngineError(f"/tap/open: cannot open {path}: {exc.strerror}") from None
        try:
            size = os.fstat(fd).st_size
            capacity = (size - HEADER_BYTES) // 4
            if capacity < 1:
                raise EngineError(f"/tap/open: {path} is too small for a ring ({size} bytes)")
            self.map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.name = name
        self.key = (module_id, port)  # built once: the per-block lookup allocates nothing
        self.capacity = capacity
        self.counter, self.frames = ring_views(self.map, capacity)
        self.pos = int(self.counter[0]) % capacity

    def write(self, column: np.ndarray, n: int) -> None:
        cap, pos = self.capacity, self.pos
        first = min(n, cap - pos)
        self.frames[pos : pos + first] = column[:first]
        if first < n:
            self.frames[: n - first] = column[first:n]
        self.pos = (pos + n) % cap
        # last, after the frames: a reader that sees the new count finds them in place
        self.counter += n

    def close(self, unlink: bool) -> None:
        self.counter = self.frames = np.zeros(0)  # release the buffer exports first
        self.map.close()
        if unlink:
            try:
                os.unlink(os.path.join(_SHM_DIR, self.name))
            except FileNotFoundError:
                pass


class Taps:
    """The open scope taps of one engine, written after every rendered stretch of frames.

    Parameters
    ----------
    blocksize : int
        The most frames one write copies: a ring must hold at least that many.

    Examples
    --------
    >>> taps = Taps(128)
    >>> bool(taps)
    False
    """

    def __init__(self, blocksize: int) -> None:
        self.blocksize = int(blocksize)
        self._open: dict[int, _Ring] = {}

    def __bool__(self) -> bool:
        return bool(self._open)

    def open(self, tap_id: int, module_id: int, port: int, name: str) -> None:
        """Start copying output ``port`` of ``module_id`` into segment ``name``.

        Raises
        ------
        EngineError
            For a bad or missing segment, a tap id in use, or too many taps.
        """
        if tap_id in self._open:
            raise EngineError(f"/tap/open: tap {tap_id} is already open; close it first")
        if len(self._open) >= MAX_TAPS:
            raise EngineError(f"/tap/open: {MAX_TAPS} taps are open; close a scope first")
        if port < 0:
            raise EngineError(f"/tap/open: port {port} must be 0 or more")
        ring = _Ring(module_id, port, name)
        if ring.capacity < self.blocksize:
            ring.close(unlink=False)
            raise EngineError(
                f"/tap/open: a ring of {ring.capacity} frames cannot hold a block of "
                f"{self.blocksize}; make the segment larger"
            )
        self._open[tap_id] = ring

    def close(self, tap_id: int) -> None:
        """Stop writing tap ``tap_id`` and unmap it (the kernel unlinks its segment)."""
        ring = self._open.pop(tap_id, None)
        if ring is None:
            raise EngineError(f"/tap/close: no tap {tap_id} is open")
        ring.close(unlink=False)

    def close_all(self) -> None:
        """Unmap and unlink every open tap (the engine is stopping)."""
        for ring in self._open.values():
            ring.close(unlink=True)
        self._open.clear()

    def write(self, renderer: Any, n: int) -> None:
        """Copy rows ``0..n`` of each tapped column of ``renderer.bus`` into its ring.

        A module not in the renderer's schedule (freed, or not rendered yet)
        writes nothing, so its ring's counter stands still.
        """
        slot_of = renderer.schedule.slot_of
        bus = renderer.bus
        for ring in self._open.values():
            col = slot_of.get(ring.key)
            if col is not None:
                ring.write(bus[:n, col], n)
