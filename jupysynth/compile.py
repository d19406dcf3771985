"""Compiling a patch into a schedule of batched groups.

The graph of :class:`~jupysynth.graph.NodeSpec` records becomes a list of
groups, one per (kernel, topological level), each rendered by one compiled
kernel call over all its instances.  Every group owns a contiguous range of
columns ("slots") of the block bus, so a consumer whose instances read from a
producer group in order sees its inputs as one contiguous view, and the kernel's
loop across instances stays vectorisable.  Pure Python and numpy-free: it only
decides where things go.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import PatchError
from .graph import PYTHON_KERNEL, SAMPLE_KERNEL, Module, NodeSpec, module_types

__all__ = ["Binding", "Group", "Schedule", "compile_schedule", "find_cycle"]

ZERO_SLOT = 0  # a bus column that always holds zeros (faulted or missing sources read it)


@dataclass
class Binding:
    """How one parameter of a group reaches its kernel.

    kind is ``"const"`` (every instance holds a number: ``values``), ``"bus"``
    (every instance reads a signal, and the sources are the contiguous slots
    ``start .. start+n``) or ``"gather"`` (a mix: ``slots[i]`` is a source slot or
    -1 for a number in ``values[i]``).
    """

    kind: str
    values: list[float]
    start: int = -1
    slots: list[int] = field(default_factory=list)


@dataclass
class Group:
    """All instances of one kernel at one topological level."""

    kernel: str
    post_kernel: str
    cls: type[Module]
    level: int
    ids: list[int]
    out_start: int
    bindings: dict[str, Binding]
    channels: int

    @property
    def size(self) -> int:
        return len(self.ids)


@dataclass
class Schedule:
    """The compiled patch: groups in execution order and where the outputs are."""

    groups: list[Group]
    nslots: int
    slot_of: dict[tuple[int, int], int]
    left: list[int]
    right: list[int]
    has_feedback: bool
    nodes: dict[int, NodeSpec]

    def locate(self, node_id: int) -> tuple[Group, int]:
        """The group rendering ``node_id`` and its index there."""
        for g in self.groups:
            if node_id in g.ids:
                return g, g.ids.index(node_id)
        raise PatchError(f"module #{node_id} is not in this patch")


def _producers(spec: NodeSpec, cls: type[Module]) -> list[int]:
    """Modules this one must wait for (none through a cycle-breaking Feedback)."""
    if cls.breaks_cycles:
        return []
    return [src for src, _ in spec.sources()]


def find_cycle(nodes: dict[int, NodeSpec]) -> list[int] | None:
    """A list of ids forming a cycle not broken by a Feedback module, or None."""
    types = module_types()
    color: dict[int, int] = {}
    for root in nodes:
        if root in color:
            continue
        path: list[int] = []
        stack = [(root, iter(_producers(nodes[root], types[nodes[root].type])))]
        color[root] = 1
        path.append(root)
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                color[node] = 2
                stack.pop()
                path.pop()
                continue
            if nxt not in nodes:
                continue
            c = color.get(nxt, 0)
            if c == 1:
                return path[path.index(nxt) :] + [nxt]
            if c == 0:
                color[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(_producers(nodes[nxt], types[nodes[nxt].type]))))
    return None


def compile_schedule(
    nodes: dict[int, NodeSpec],
    outputs: list[tuple[int, int, int]],
    disabled: set[int] | frozenset[int] = frozenset(),
) -> Schedule:
    """Group, order and lay out ``nodes`` for rendering.

    Parameters
    ----------
    nodes : dict
        ``{id: NodeSpec}``, e.g. from :func:`jupysynth.graph.snapshot`.
    outputs : list
        ``[(id, port, channels)]`` summed to the stereo output.
    disabled : set
        Ids of faulted modules: they are not rendered and read as silence.

    Raises
    ------
    PatchError
        On a cycle that no Feedback module breaks, or a connection to a port
        that does not exist.
    """
    types = module_types()
    for spec in nodes.values():
        if spec.type not in types:
            raise PatchError(f"unknown module type {spec.type!r}")
    cycle = find_cycle(nodes)
    if cycle is not None:
        names = " -> ".join(nodes[i].label() for i in cycle)
        raise PatchError(
            f"the patch has a cycle: {names}; break it with a Feedback module "
            "(fb = Feedback(); ...; fb.input = <the module closing the loop>)"
        )

    live = {i: s for i, s in nodes.items() if i not in disabled}
    # topological levels: a module renders after everything it reads
    level: dict[int, int] = {}

    def level_of(i: int) -> int:
        todo = [i]
        while todo:
            cur = todo[-1]
            if cur in level:
                todo.pop()
                continue
            spec = live[cur]
            deps = [d for d in _producers(spec, types[spec.type]) if d in live]
            missing = [d for d in deps if d not in level]
            if missing:
                todo.extend(missing)
                continue
            level[cur] = 1 + max((level[d] for d in deps), default=-1)
            todo.pop()
        return level[i]

    for i in live:
        level_of(i)

    # the generic kernels of cell-written modules run each type's own code: one group per
    # type; types sharing a kernel with another channel count (a mono and a stereo
    # stand-in of the pool) are grouped apart, as a group has one output layout
    buckets: dict[tuple[int, str, str, int], list[int]] = {}
    for i, spec in live.items():
        own = spec.type if spec.kernel in (PYTHON_KERNEL, SAMPLE_KERNEL) else ""
        key = (level[i], spec.kernel, own, types[spec.type].channels)
        buckets.setdefault(key, []).append(i)

    slot_of: dict[tuple[int, int], int] = {}
    next_slot = ZERO_SLOT + 1
    groups: list[Group] = []
    for key in sorted(buckets):
        ids = buckets[key]
        lvl, kernel = key[0], key[1]
        cls = types[live[ids[0]].type]

        def order_key(i: int) -> tuple:
            # follow the producers' slot order so inputs form contiguous views
            keys = []
            for v in live[i].values.values():
                if isinstance(v, tuple):
                    keys.append(slot_of.get(v, 0))
            return (keys[0] if keys else 0, i)

        ids.sort(key=order_key)
        n = len(ids)
        chans = cls.channels
        out_start = next_slot
        for k, i in enumerate(ids):
            for c in range(chans):
                slot_of[(i, c)] = out_start + c * n + k
        next_slot += chans * n
        groups.append(Group(kernel, cls.post_kernel, cls, lvl, ids, out_start, {}, chans))

    def source_slot(owner: NodeSpec, src: tuple[int, int]) -> int:
        sid, port = src
        if sid in disabled or sid not in nodes:
            return ZERO_SLOT
        if port >= types[nodes[sid].type].channels:
            raise PatchError(
                f"{owner.label()} reads port {port} of {nodes[sid].label()}, "
                "which has no such output"
            )
        return slot_of[src]

    for g in groups:
        for param in g.cls.params:
            vals: list[float] = []
            slots: list[int] = []
            for i in g.ids:
                v = live[i].values[param.name]
                if isinstance(v, tuple):
                    vals.append(param.default)
                    slots.append(source_slot(live[i], v))
                else:
                    vals.append(float(v))
                    slots.append(-1)
            if all(s < 0 for s in slots):
                g.bindings[param.name] = Binding("const", vals)
            elif (
                all(s >= 0 for s in slots)
                and all(b - a == 1 for a, b in zip(slots, slots[1:]))
                and slots[0] != ZERO_SLOT
            ):
                g.bindings[param.name] = Binding("bus", vals, start=slots[0])
            else:
                g.bindings[param.name] = Binding("gather", vals, slots=slots)
        if any(live[i].inputs for i in g.ids):
            # variable inputs (Mix): a flat slot list, instance k owns ptr[k]..ptr[k+1]
            flat: list[int] = []
            ptr = [0]
            for i in g.ids:
                flat.extend(source_slot(live[i], s) for s in live[i].inputs)
                ptr.append(len(flat))
            g.bindings["__inputs__"] = Binding("inputs", [float(p) for p in ptr], slots=flat)

    left: list[int] = []
    right: list[int] = []
    for oid, port, chans in outputs:
        slot = source_slot(nodes[oid], (oid, port)) if oid in nodes else ZERO_SLOT
        if chans == 1:
            left.append(slot)
            right.append(slot)
        elif port == 0:
            left.append(slot)
        else:
            right.append(slot)

    has_feedback = any(g.cls.breaks_cycles for g in groups)
    return Schedule(groups, next_slot, slot_of, left, right, has_feedback, nodes)
