"""The messages between the engine's worker pool and its workers, by name.

The engine (:class:`~.workers.PoolRenderer`) sends requests, a worker
(:mod:`.worker`) answers each in order; both go over a :class:`~.wire.Wire`.
A block that changes nothing, the common case, is not pickled: it is
:func:`plain_block`'s few bytes, and its reply is :data:`DONE` (or
:data:`DONE_READY`).  Everything else is one of the classes here, pickled.

Requests, and their replies:

- :class:`Block`: render one block (reply :data:`DONE`, :data:`DONE_READY` or
  a :class:`Report`); with ``states``, switch first to the patch prepared
  since the last :class:`Build`;
- :class:`Rebuild`: replace the worker's share of the patch now (reply :data:`DONE`);
- :class:`Build`: build a share on a thread while blocks go on (no reply; the
  first block reply once it is built says so);
- :class:`Export`: the state of modules moving away (reply a
  :class:`~jupysynth.renderer.States`);
- :class:`Quit`: exit (no reply).

A new worker sends :data:`STARTED` once its kernels are warm.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from ..graph import NodeSpec
from ..renderer import States

__all__ = [
    "Block",
    "Build",
    "DONE",
    "DONE_READY",
    "Export",
    "Part",
    "Place",
    "Quit",
    "Rebuild",
    "Report",
    "STARTED",
    "Share",
    "plain_block",
    "read_plain_block",
]

#: A worker is up (its kernels warm) and waits for requests.
STARTED = b"R"
#: A block rendered; nothing to report.
DONE = b"K"
#: A block rendered, and the share being built (:class:`Build`) is ready to switch to.
DONE_READY = b"k"

_PLAIN = struct.Struct("<cII")  # b"B", frames, block number


def plain_block(frames: int, number: int) -> bytes:
    """A :class:`Block` with no numbers set, no events and no switch (not pickled)."""
    return _PLAIN.pack(b"B", frames, number)


def read_plain_block(data: bytes) -> tuple[int, int] | None:
    """``(frames, number)`` of a plain block; None for a pickled message."""
    if data[:1] != b"B":
        return None
    _, frames, number = _PLAIN.unpack(data)
    return frames, number


@dataclass(frozen=True)
class Part:
    """One of a worker's two renderers' patch: modules, outputs, their shared-bus columns.

    ``outputs`` are ``(id, port, channels)``; channels 0 marks a copy only (a
    voice a tail reads, a tapped output), not summed into the renderer's output.
    """

    nodes: dict[int, NodeSpec]
    outputs: list[tuple[int, int, int]]
    columns: list[int]


@dataclass(frozen=True)
class Place:
    """Where a worker stands among the others for a two-phase block (split parts).

    ``slot``: its "done" flag; ``waits``: the flags its tail waits for before it
    renders; ``rings``: the slots whose doorbells it rings once its voices are written.
    """

    slot: int
    waits: list[int]
    rings: list[int]


@dataclass(frozen=True)
class Share:
    """A worker's share of the patch: its body, its tail, what the tail imports, its place.

    ``imports``: ``(id, port, column)`` the tail reads from the shared bus
    through stand-in modules.
    """

    body: Part
    tail: Part
    imports: list[tuple[int, int, int]]
    place: Place


@dataclass(frozen=True)
class Block:
    """Render a block of ``frames``, number ``number`` (its "done" flag's value).

    ``sets``: ``(id, name, value, ramp)`` applied first; ``events``: in-block
    changes ``(offset, id, name, value)``; ``states``: switch to the prepared
    share first, importing these states of modules moved here (None: no switch).
    """

    frames: int
    sets: list[tuple[int, str, Any, bool]]
    events: list[tuple[int, int, str, Any]]
    number: int
    states: States | None = None


@dataclass(frozen=True)
class Rebuild:
    """Replace the worker's share now, keeping the state of modules that stay.

    ``states``: of modules moved here; ``types``: module classes to load
    ``{name: /type/define blob}``; ``revived``: modules to unmute.
    """

    share: Share
    states: States
    types: dict[str, bytes]
    revived: list[int]


@dataclass(frozen=True)
class Build:
    """As :class:`Rebuild`, but built on a thread while blocks go on; a
    :class:`Block` with ``states`` switches to it."""

    share: Share
    types: dict[str, bytes]
    revived: list[int]


@dataclass(frozen=True)
class Export:
    """Reply the state of these modules (they are moving to another worker)."""

    ids: list[int]


@dataclass(frozen=True)
class Quit:
    """Exit."""


@dataclass(frozen=True)
class Report:
    """A block's reply with news: ``faults`` muted (``{id: text}``, all of them since
    the last patch), ``ready`` (the built share can be switched to), ``costs``
    (``{type name: (seconds, instance-frames)}`` since the last report, or None)."""

    faults: dict[int, str] = field(default_factory=dict)
    ready: bool = False
    costs: dict[str, tuple[float, int]] | None = None
