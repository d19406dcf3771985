"""How the worker pool divides a patch between its workers.

A patch is cut into its connected parts.  A light part renders whole on one
worker.  A heavy one (voices summed into one Mix, a bank of oscillators under
one LFO) is split by voices, in three roles:

``tail``
    What depends on more than half of the part's sources (the Mix of the
    voices and everything after it: a master filter, a reverb).  It renders
    on one worker in a second phase of the block, after every worker has
    rendered its voices, reading them from the shared output bus.
``heads``
    What more than half of the part's ends depend on (one LFO modulating every
    voice).  Each worker that needs a head renders its own copy: every module
    is deterministic, so the copies stay sample-identical.
``chains``
    The rest falls apart into independent chains (the voices).  Each chain
    renders whole on one worker; chains are spread so the workers carry the
    same weight, and a chain stays where it was when the patch changes.

Every module still renders with the same inputs in the same order as in one
process, so the samples do not depend on the worker count.

A Mix of more than :data:`~jupysynth.kernels.arith.CHUNK` inputs in a tail is
cut in its chunks (the pieces a Mix always sums separately): each chunk whose
voices render on one worker is summed there (:class:`MixPart`, two float32
columns for a float64 sum), so the tail reads two columns per chunk instead of
every voice and adds them (:class:`MixJoin`, the Mix's own id and name).  A part whose
Feedback loop would cross the roles, or whose heads would cost more than a
quarter of its voices, renders whole.

Pure logic (no processes), so it is tested alone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..graph import PYTHON_KERNEL, SAMPLE_KERNEL, Mix, Module, NodeSpec, module_types
from ..kernels.arith import CHUNK

__all__ = [
    "HEAD_SHARE",
    "NS_PER_UNIT",
    "SPLIT_WEIGHT",
    "ImportMono",
    "ImportStereo",
    "MixJoin",
    "MixPart",
    "Share",
    "assign",
    "holders",
    "import_type",
    "owner_of",
    "part_id",
    "split_part",
    "warm_partials",
    "weight",
]

#: A part lighter than this (about this many built-in modules) renders whole: the
#: second phase of a split block costs a hand-off (tens of microseconds).
SPLIT_WEIGHT = 128.0
#: Largest share of a part's weight its replicated heads may have.
HEAD_SHARE = 0.25


class ImportMono(Module):
    """A mono signal rendered by another worker, copied in before the tail renders."""

    kernel = "bus.hold"
    internal = True  # made by the pool, never by a patch


class ImportStereo(Module):
    """A stereo signal rendered by another worker, copied in before the tail renders."""

    channels = 2
    port_names = ("left", "right")
    kernel = "bus.hold"
    internal = True


class MixPart(Module):
    """One chunk of a split Mix's inputs, summed where its voices render.

    Its two outputs hold the float64 sum as float32 ``hi`` and ``lo``.
    """

    channels = 2
    port_names = ("hi", "lo")
    kernel = "arith.mix_part"
    reads_bus = True
    internal = True


class MixJoin(Module):
    """A split Mix: its chunks' ``(hi, lo)`` pairs added in order, times ``amp``."""

    params = Mix.params
    kernel = "arith.mix_join"
    reads_bus = True
    internal = True


#: Chunks a Mix may have: a MixPart's id is below the Mix's id times this.
_PARTS = 1 << 16


def part_id(mix_id: int, chunk: int) -> int:
    """The id of chunk ``chunk`` of Mix ``mix_id`` (negative: never a patch's)."""
    return -(mix_id * _PARTS + chunk + 1)


def owner_of(node_id: int) -> int:
    """The module an id stands for: a MixPart's Mix, else the id itself."""
    return (-node_id - 1) // _PARTS if node_id < 0 else node_id


def warm_partials(samplerate: float, blocksize: int) -> None:
    """Load the kernels of a split Mix (a worker's first split block would otherwise)."""
    from ..graph import snapshot
    from ..modules import Noise, Sine
    from ..renderer import Renderer

    noise, lfo = Noise(amp=0.5), Sine(freq=1.0)
    nodes, _ = snapshot([noise, lfo])
    pid = part_id(lfo.id, 0)
    nodes[pid] = NodeSpec(pid, "MixPart", "arith.mix_part", {}, inputs=[(noise.id, 0)])
    join = [(pid, 0), (pid, 1)]
    nodes[0] = NodeSpec(0, "MixJoin", "arith.mix_join", {"amp": (lfo.id, 0)}, inputs=join)
    Renderer(nodes, [(0, 0, 1)], samplerate, blocksize).process(blocksize)


def import_type(channels: int) -> str:
    """The registry name of the stand-in for a module with ``channels`` outputs."""
    return "ImportMono" if channels == 1 else "ImportStereo"


#: Measured cost of one weight unit: nanoseconds per frame of one instance (a
#: built-in kernel instance costs 0.3 to 2 here: Gain 0.26, LowPass 1.2, a
#: frequency-modulated Saw 1.8; a 16-partial cell ``sample()`` 194).
NS_PER_UNIT = 1.0


def weight(spec: NodeSpec, costs: dict[str, float] | None = None) -> float:
    """Cost of one module per block, in units of about a built-in kernel instance.

    ``costs``: measured ``{type name: weight}`` (see :data:`NS_PER_UNIT`); a
    type not measured yet is guessed from its kind.
    """
    if costs:
        measured = costs.get(spec.type)
        if measured is not None:
            return measured
    if spec.kernel == PYTHON_KERNEL:
        return 16.0  # a Python call per instance per block
    if spec.kernel == SAMPLE_KERNEL:
        return 2.0
    return 1.0 + len(spec.inputs) / 16.0


@dataclass
class Share:
    """What one worker renders.

    ``body`` renders first (its chains, whole light parts, copies of heads);
    ``tail`` renders after every worker's body, reading ``imports``:
    ``(module id, port, slot)``, the slot whose body exports that port.
    ``exports`` lists the ``(module id, port)`` of its body that tails read.
    """

    body: set[int] = field(default_factory=set)
    tail: set[int] = field(default_factory=set)
    imports: list[tuple[int, int, int]] = field(default_factory=list)
    exports: list[tuple[int, int]] = field(default_factory=list)
    #: specs made by the division, for ids of ``body``/``tail``: MixParts, MixJoins
    specs: dict[int, NodeSpec] = field(default_factory=dict)

    def spec(self, node_id: int, nodes: dict[int, NodeSpec]) -> NodeSpec:
        """The spec this worker renders for ``node_id``."""
        return self.specs.get(node_id) or nodes[node_id]


def _components(ids: set[int], nodes: dict[int, NodeSpec]) -> list[set[int]]:
    """Connected parts of ``ids`` through any connection (a Feedback's too)."""
    parent = {i: i for i in ids}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in ids:
        for src, _ in nodes[i].sources():
            if src in ids:
                parent[find(src)] = find(i)
    parts: dict[int, set[int]] = {}
    for i in ids:
        parts.setdefault(find(i), set()).add(i)
    return sorted(parts.values(), key=min)


def split_part(
    part: set[int], nodes: dict[int, NodeSpec], costs: dict[str, float] | None = None
) -> tuple[set[int], set[int], list[set[int]]] | None:
    """``(heads, tail, chains)`` of a connected part, or None if it does not split.

    See the module docstring for the roles.  Chains come sorted by their
    lowest module id (the order the voices were made in).
    """
    types = module_types()
    breaks = {i for i in part if types[nodes[i].type].breaks_cycles}
    # producers: what must render first (a Feedback reads its source a block behind)
    prod = {
        i: set() if i in breaks else {s for s, _ in nodes[i].sources() if s in part and s != i}
        for i in part
    }
    cons: dict[int, set[int]] = {i: set() for i in part}
    for i, ps in prod.items():
        for p in ps:
            cons[p].add(i)
    order: list[int] = []
    waiting = {i: len(ps) for i, ps in prod.items()}
    ready = sorted(i for i, n in waiting.items() if n == 0)
    while ready:
        i = ready.pop()
        order.append(i)
        for c in cons[i]:
            waiting[c] -= 1
            if waiting[c] == 0:
                ready.append(c)
    if len(order) != len(part):
        return None  # a cycle no Feedback breaks: the compiler will say so
    # the sources each module depends on, as bit sets
    roots = [i for i in order if not prod[i]]
    bit = {r: 1 << k for k, r in enumerate(roots)}
    below: dict[int, int] = {}
    for i in order:
        acc = bit.get(i, 0)
        for p in prod[i]:
            acc |= below[p]
        below[i] = acc
    tail = {i for i in part if 2 * below[i].bit_count() > len(roots)}
    rest = part - tail
    # the ends each module feeds, among what is not tail
    ends = [i for i in order if i in rest and not (cons[i] & rest)]
    ebit = {e: 1 << k for k, e in enumerate(ends)}
    above: dict[int, int] = {}
    for i in reversed(order):
        if i not in rest:
            continue
        acc = ebit.get(i, 0)
        for c in cons[i]:
            if c in rest:
                acc |= above[c]
        above[i] = acc
    heads = {i for i in rest if 2 * above[i].bit_count() > len(ends)}
    body = rest - heads
    for f in breaks:
        for src, _ in nodes[f].sources():
            if src in part and ((src in tail) != (f in tail) or (src in heads) != (f in heads)):
                return None  # the loop would cross the phases of a block
    chains = _components(body, nodes)
    if len(chains) < 2:
        return None
    w_heads = sum(weight(nodes[i], costs) for i in heads)
    w_body = sum(weight(nodes[i], costs) for i in body)
    if w_heads > HEAD_SHARE * w_body:
        return None
    return heads, tail, chains


def _ancestors(ids: set[int], within: set[int], nodes: dict[int, NodeSpec]) -> set[int]:
    """Members of ``within`` that ``ids`` read from, directly or through each other."""
    found: set[int] = set()
    todo = list(ids)
    while todo:
        i = todo.pop()
        for src, _ in nodes[i].sources():
            if src in within and src not in found:
                found.add(src)
                todo.append(src)
    return found


def _vote(ids: set[int], previous: dict[int, int], slots: list[int]) -> int | None:
    votes = Counter(previous[i] for i in ids if previous.get(i) in slots)
    if not votes:
        return None
    return min(votes, key=lambda s: (-votes[s], s))


def assign(
    nodes: dict[int, NodeSpec],
    slots: list[int],
    previous: dict[int, int] | None = None,
    split_weight: float = SPLIT_WEIGHT,
    costs: dict[str, float] | None = None,
) -> dict[int, Share]:
    """Divide the modules ``nodes`` between the workers in ``slots``.

    Parameters
    ----------
    nodes : dict
        The modules to render (muted ones already left out).
    slots : list
        The workers that can take work.
    previous : dict
        ``{module id: slot}`` of the assignment before: modules stay where
        they were when the balance allows (moving one costs its state's trip).
    split_weight : float
        Parts at least this heavy are split by voices when there are two or more slots.
    costs : dict
        Measured weights by type name (see :func:`weight`).

    Returns
    -------
    dict
        ``{slot: Share}`` for every slot (empty shares included).
    """
    previous = previous or {}
    shares = {s: Share() for s in slots}
    if not slots:
        return shares
    load = {s: 0.0 for s in slots}
    w = {i: weight(spec, costs) for i, spec in nodes.items()}
    parts = _components(set(nodes), nodes)
    parts.sort(key=lambda p: (-sum(w[i] for i in p), min(p)))
    for part in parts:
        pw = sum(w[i] for i in part)
        cut = split_part(part, nodes, costs) if len(slots) > 1 and pw >= split_weight else None
        if cut is None:
            slot = _vote(part, previous, slots)
            if slot is None:
                slot = min(slots, key=lambda s: (load[s], s))
            shares[slot].body |= part
            load[slot] += pw
            continue
        heads, tail, chains = cut
        if tail:
            ts = _vote(tail, previous, slots)
            if ts is None:
                ts = min(slots, key=lambda s: (load[s], s))
            shares[ts].tail |= tail
            load[ts] += sum(w[i] for i in tail)
        cw = [sum(w[i] for i in c) for c in chains]
        target = (sum(load.values()) + sum(cw)) / len(slots)
        placed: dict[int, int] = {}
        for k, chain in enumerate(chains):  # chains that may stay where they were
            slot = _vote(chain, previous, slots)
            if slot is not None and load[slot] + cw[k] <= target + 0.5 * max(cw):
                placed[k] = slot
                load[slot] += cw[k]
        # the rest in ranges: consecutive voices fill one worker, then the next, so
        # a worker's voices sit side by side on the shared bus (one copy, one sum)
        free = [s for s in slots if load[s] < target]
        for k in range(len(chains)):
            if k in placed:
                continue
            while len(free) > 1 and load[free[0]] + 0.5 * cw[k] > target:
                free.pop(0)
            slot = free[0] if free else min(slots, key=lambda s: (load[s], s))
            placed[k] = slot
            load[slot] += cw[k]
        mine: dict[int, set[int]] = {s: set() for s in slots}
        for k, slot in placed.items():
            mine[slot] |= chains[k]
        for slot, ids in mine.items():
            if ids:
                need = _ancestors(ids, heads, nodes)
                shares[slot].body |= ids | need
                load[slot] += sum(w[i] for i in need)
        if tail:
            # a head the tail reads is rendered on the tail's worker if no chain there needs it
            direct = {s for i in tail for s, _ in nodes[i].sources() if s in heads}
            missing = direct - shares[ts].body
            if missing:
                shares[ts].body |= missing | _ancestors(missing, heads, nodes)
    _partial_sums(nodes, shares, slots)
    # what each tail reads from bodies: from its own worker's body when it has a copy
    holder: dict[int, int] = {}
    for slot in slots:
        for i in shares[slot].body:
            holder.setdefault(i, slot)
    exported: set[tuple[int, int]] = set()
    for slot in slots:
        share = shares[slot]
        seen: set[tuple[int, int]] = set()
        for i in sorted(share.tail):
            for src, port in share.spec(i, nodes).sources():
                if src in share.tail or (src, port) in seen:
                    continue
                seen.add((src, port))
                home = slot if src in share.body else holder[src]
                share.imports.append((src, port, home))
                if (src, port, home) not in exported:
                    exported.add((src, port, home))
                    shares[home].exports.append((src, port))
    return shares


def _partial_sums(nodes: dict[int, NodeSpec], shares: dict[int, Share], slots: list[int]) -> None:
    """Cut each large Mix of a tail in its chunks, summed where their voices are."""
    for slot in slots:
        share = shares[slot]
        for i in sorted(share.tail):
            mix = nodes[i]
            if mix.type != "Mix" or len(mix.inputs) <= CHUNK:
                continue
            join: list[tuple[int, int]] = []
            for c0 in range(0, len(mix.inputs), CHUNK):
                chunk = mix.inputs[c0 : c0 + CHUNK]
                pid = part_id(i, c0 // CHUNK)
                spec = NodeSpec(
                    pid,
                    "MixPart",
                    "arith.mix_part",
                    {},
                    inputs=list(chunk),
                    name=f"{mix.label()} inputs {c0}-{c0 + len(chunk) - 1}",
                )
                srcs = {s for s, _ in chunk}
                home = next((h for h in [slot, *slots] if srcs <= shares[h].body), None)
                if home is None:  # a chunk across workers: the tail sums it from copies
                    share.tail.add(pid)
                    share.specs[pid] = spec
                else:
                    shares[home].body.add(pid)
                    shares[home].specs[pid] = spec
                join += [(pid, 0), (pid, 1)]
            share.specs[i] = NodeSpec(
                i,
                "MixJoin",
                "arith.mix_join",
                {"amp": mix.values["amp"]},
                dict(mix.options),
                join,
                name=mix.label(),
            )


def holders(shares: dict[int, Share]) -> dict[int, list[int]]:
    """``{module id: [slots rendering it]}`` (a head has several, anything else one)."""
    out: dict[int, list[int]] = {}
    for slot in sorted(shares):
        share = shares[slot]
        for i in share.body | share.tail:
            out.setdefault(i, []).append(slot)
    return out
