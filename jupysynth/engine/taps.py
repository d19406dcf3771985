"""Scope taps, engine side: copy a module's output column into a ring after each block.

On ``/tap/open`` (the owner's channel only) :class:`Taps` *creates* a POSIX
shared-memory segment, under a fresh random name, with ``O_CREAT | O_EXCL |
O_NOFOLLOW`` and mode 0600, and replies ``/tap/opened`` with that name; the
kernel (:class:`jupysynth.control.tap.Tap`) maps it read-only.  The engine
never opens a segment it did not create, so a planted symbolic link or
another user's segment cannot be written through, and it unlinks only what it
created.  After every render it copies the rows just rendered of that
module's bus column into the ring, then advances the ring's counter.  The
copies go into views of the mapping made once at open: nothing is allocated per block beyond numpy's
slice views, and with no tap open :meth:`Taps.write` is never called (the
block loop tests ``if taps``).

The segment is mapped with ``mmap`` rather than ``SharedMemory(name)``:
attaching a ``SharedMemory`` registers it with a resource-tracker process,
which would start one more process in the engine.  ``/tap/close`` and the
engine's stop unlink the segment (a kernel's mapping stays valid until it lets
go), so a kernel that died leaves none in ``/dev/shm``.
"""

from __future__ import annotations

import logging
import mmap
import os
import secrets
from typing import Any

import numpy as np

from ..control.tap import ring_bytes, ring_views
from ..errors import EngineError

__all__ = ["MAX_TAPS", "Taps", "create_segment", "remove_segment"]

log = logging.getLogger("jupysynth.engine")

#: Taps open at once: each costs a copy per block, so a runaway loop of scopes
#: is refused instead of eating the block's budget.
MAX_TAPS = 32
#: The largest ring a tap may ask for (16 MiB of frames).
MAX_FRAMES = 1 << 22

_SHM_DIR = "/dev/shm"


def create_segment(kind: str, size: int, what: str) -> tuple[str, mmap.mmap]:
    """Create a fresh shared-memory segment of ``size`` zero bytes; its name and mapping.

    ``O_CREAT | O_EXCL | O_NOFOLLOW``, mode 0600, under a random name that
    carries ``kind`` and this pid (``jupysynth-<uid>-<kind>-<pid>-<random>``):
    the next engine removes the segments of one that was killed
    (:func:`jupysynth.control.local.sweep`).  ``what`` names the request in errors.
    """
    name = f"jupysynth-{os.getuid()}-{kind}-{os.getpid()}-{secrets.token_hex(8)}"
    path = os.path.join(_SHM_DIR, name)
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise EngineError(f"{what}: cannot create {path}: {exc.strerror}") from None
    try:
        os.ftruncate(fd, size)  # zero-filled: a counter starts at 0
        return name, mmap.mmap(fd, size)
    except OSError as exc:
        os.unlink(path)
        raise EngineError(f"{what}: cannot size {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def remove_segment(name: str) -> None:
    """Unlink segment ``name``, which this engine created (gone already is fine)."""
    try:
        os.unlink(os.path.join(_SHM_DIR, name))
    except FileNotFoundError:
        pass


class _Ring:
    """One open tap: the mapping, its views and the module output it follows."""

    def __init__(self, module_id: int, port: int, capacity: int) -> None:
        self.name, self.map = create_segment("tap", ring_bytes(capacity), "/tap/open")
        self.key = (module_id, port)  # built once: the per-block lookup allocates nothing
        self.capacity = capacity
        self.counter, self.frames = ring_views(self.map, capacity)
        self.pos = 0

    def write(self, column: np.ndarray, n: int) -> None:
        cap, pos = self.capacity, self.pos
        first = min(n, cap - pos)
        self.frames[pos : pos + first] = column[:first]
        if first < n:
            self.frames[: n - first] = column[first:n]
        self.pos = (pos + n) % cap
        # last, after the frames: a reader that sees the new count finds them in place
        self.counter += n

    def close(self) -> None:
        """Unmap and unlink the segment, which this engine created."""
        self.counter = self.frames = np.zeros(0)  # release the buffer exports first
        self.map.close()
        remove_segment(self.name)


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

    def open(self, tap_id: int, module_id: int, port: int, frames: int) -> str:
        """Create a ring of ``frames`` frames for output ``port`` of ``module_id``; its name.

        Raises
        ------
        EngineError
            For a tap id in use, too many taps, a bad port or ring size, or a
            segment that cannot be created.
        """
        if tap_id in self._open:
            raise EngineError(f"/tap/open: tap {tap_id} is already open; close it first")
        if len(self._open) >= MAX_TAPS:
            raise EngineError(f"/tap/open: {MAX_TAPS} taps are open; close a scope first")
        if port < 0:
            raise EngineError(f"/tap/open: port {port} must be 0 or more")
        if not self.blocksize <= frames <= MAX_FRAMES:
            raise EngineError(
                f"/tap/open: a ring of {frames} frames is out of range; ask for "
                f"{self.blocksize} (a block) to {MAX_FRAMES} frames"
            )
        ring = _Ring(module_id, port, frames)
        self._open[tap_id] = ring
        return ring.name

    def close(self, tap_id: int) -> None:
        """Stop writing tap ``tap_id``, unmap and unlink its ring."""
        ring = self._open.pop(tap_id, None)
        if ring is None:
            raise EngineError(f"/tap/close: no tap {tap_id} is open")
        ring.close()

    def close_all(self) -> None:
        """Unmap and unlink every open tap (the engine is stopping)."""
        for ring in self._open.values():
            ring.close()
        self._open.clear()

    def write(self, renderer: Any, n: int) -> None:
        """Copy rows ``0..n`` of each tapped output of ``renderer.bus`` into its ring.

        A module the renderer does not show (freed, or not rendered yet, see
        :meth:`LiveRenderer.column_of <.renderers.LiveRenderer.column_of>`)
        writes nothing, so its ring's counter stands still.
        """
        bus = renderer.bus
        for ring in self._open.values():
            col = renderer.column_of(ring.key)
            if col is not None:
                ring.write(bus[:n, col], n)
