"""What the engine asks of a renderer: the one interface :class:`~.core.EngineCore` drives.

Three renderers implement it, and the engine core never asks which one it has:

- :class:`~jupysynth.renderer.Renderer` renders in the engine process (``workers=0``);
- :class:`~.workers.PoolRenderer` divides the patch between worker processes
  (``workers=N``);
- :class:`~.auto.AutoRenderer` holds one of each and moves the patch between
  them as the measured load says (``workers="auto"``).

How a change reaches the block where it is heard
-------------------------------------------------
A number (a knob) goes straight in: ``/module/set`` → :meth:`EngineCore.submit
<.core.EngineCore.submit>` → at the next block boundary :meth:`LiveRenderer.set`
(a worker gets it with its next block request).

A change of the graph (a module made or freed, an output added, a cell re-run
with a crossfade, a module class redefined) goes through the patch table
(:mod:`.patch`): the block thread applies the message to the table and asks
for a prepare; the engine's preparing thread calls :meth:`LiveRenderer.prepare`
with a snapshot of the table, which builds an immutable plan off the block
thread (a pool's workers compile their shares while they keep playing); at the
next block boundary after it is ready the block thread installs it with one
call to :meth:`LiveRenderer.apply`.  A plan made stale meanwhile (a worker
died, a crossfade ended) is declined, and the engine prepares again.  A
time-tagged graph change, which must be heard at its exact frame, is
installed with :meth:`LiveRenderer.update` at that block.

A renderer may ask for a new division of the same patch (measured costs, a
scope tapping an output a pool does not export yet, a sandbox back from a
restart) by raising :attr:`LiveRenderer.rebalance_wanted`; the engine then
prepares it off the block thread as any edit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..graph import NodeSpec

__all__ = ["LiveRenderer", "Event"]

#: ``(offset in the block, module id, parameter name, value)``: a number set mid-block.
Event = tuple[int, int, str, Any]


@runtime_checkable
class LiveRenderer(Protocol):
    """The renderer an :class:`~.core.EngineCore` plays (see the module docstring)."""

    #: The modules rendered, ``{id: NodeSpec}`` (the table's specs: numbers are shared).
    nodes: dict[int, NodeSpec]
    #: ``(module id, port, channels)`` summed into the output, in order.
    outputs: list[tuple[int, int, int]]
    #: ``{module id: text}`` of the modules muted for an exception, a NaN, a crash or a hang.
    faults: dict[int, str]
    #: The ids of the muted modules.
    disabled: set[int]
    #: The sandbox process rendering code written in cells, or None (not used, or on workers).
    sandbox: Any
    #: Set by the renderer when the same patch should be prepared again (see above).
    rebalance_wanted: bool
    #: The block's signals, ``(blocksize, columns)``; :meth:`column_of` says where an output is.
    bus: np.ndarray

    @property
    def in_process(self) -> bool:
        """True while the modules render in the engine process (no worker)."""
        ...

    @property
    def workers(self) -> int:
        """Worker processes rendering now (0 in process)."""
        ...

    @property
    def restarts(self) -> int:
        """Workers replaced since the start (died or hung)."""
        ...

    @property
    def late_parts(self) -> int:
        """Blocks in which a late worker's part played as silence."""
        ...

    def process(
        self,
        frames: int,
        events: Sequence[Event] = (),
        due: Callable[[], float] | None = None,
    ) -> np.ndarray:
        """Render ``frames`` (at most a block); returns ``(frames, 2)`` float32.

        ``due``: seconds left until the listener needs this block (None: nobody
        listens live; the block is complete however long it takes).
        """
        ...

    def set(self, node_id: int, name: str, value: Any, ramp: bool = False) -> None:
        """Set a number (or connect a signal) from the next block; ``ramp`` glides to it."""
        ...

    def update(
        self, nodes: dict[int, NodeSpec], outputs: list[tuple[int, int, int]], fade: int = 0
    ) -> None:
        """Install a patch now, on this thread; ``fade`` frames of crossfade."""
        ...

    def prepare(
        self, nodes: dict[int, NodeSpec], outputs: list[tuple[int, int, int]], fade: int = 0
    ) -> Any:
        """Build a plan for this patch off the block thread; :meth:`apply` installs it."""
        ...

    def apply(self, plan: Any, redo: bool = True) -> bool:
        """Install ``plan`` at this block boundary; a stale one is built again now
        (``redo``) or declined (False)."""
        ...

    def abandon_prepare(self) -> None:
        """Stop waiting for a plan being prepared for the same patch (an edit came)."""
        ...

    def revive(self, ids: Iterable[int]) -> None:
        """Unmute modules whose class was replaced; they render from the next patch."""
        ...

    def define_type(self, name: str, blob: bytes) -> None:
        """A module class was (re)defined: where modules render in other processes,
        they load it with their next patch."""
        ...

    def column_of(self, output: tuple[int, int]) -> int | None:
        """The column of :attr:`bus` holding ``output``, ``(module id, port)``, after the
        block; None: not rendered (yet) where the engine can see it.  A renderer that
        can show it from a later division asks for one (:attr:`rebalance_wanted`)."""
        ...

    def close(self) -> None:
        """End every process the renderer started."""
        ...
