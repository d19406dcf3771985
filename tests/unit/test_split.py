"""How the worker pool divides a patch (pure logic: no processes)."""

from __future__ import annotations

import numpy as np

import jupysynth as js
from jupysynth.engine.split import (
    SPLIT_WEIGHT,
    assign,
    holders,
    owner_of,
    part_id,
    split_part,
    weight,
)
from jupysynth.graph import NodeSpec, snapshot
from jupysynth.kernels.arith import CHUNK


def voice_bank(n: int, shared_lfo: bool = True):
    lfo = js.Sine(freq=0.3)
    voices = []
    for i in range(n):
        mod = lfo if shared_lfo else js.Sine(freq=0.3, phase=i / n)
        voices.append(js.LowPass(js.Saw(freq=100 + i, amp=0.01), cutoff=800 + 400 * mod))
    mix = js.Mix(*voices)
    master = js.LowPass(mix, cutoff=2000 + 100 * lfo)
    return lfo, voices, mix, master


def load(share, nodes) -> float:
    return sum(weight(nodes[i]) for i in share.body | share.tail)


def test_a_mixed_voice_bank_splits_by_voice_with_the_mix_as_tail_and_the_lfo_copied():
    lfo, voices, mix, master = voice_bank(64)
    nodes, _ = snapshot(master)
    shares = assign(nodes, [0, 1])
    tails = [s for s, sh in shares.items() if sh.tail]
    assert len(tails) == 1
    assert shares[tails[0]].tail == {mix.id, master.id}
    # the LFO every voice reads is rendered on both workers; each voice on one
    assert holders(shares)[lfo.id] == [0, 1]
    for v in voices:
        chain = {v.id, v.input.id, v.cutoff.id}
        (slot,) = [s for s, sh in shares.items() if chain <= sh.body]
        assert not chain & shares[1 - slot].body
    # balanced within one voice (4 modules)
    assert abs(load(shares[0], nodes) - load(shares[1], nodes)) <= 4 + weight(nodes[mix.id])
    # the tail imports every voice (and the cutoff modulation of the master) exactly once
    imported = {(i, p) for i, p, _ in shares[tails[0]].imports}
    assert {(v.id, 0) for v in voices} <= imported
    exported = {(i, p, s) for s, sh in shares.items() for i, p in sh.exports}
    assert {(i, p, s) for i, p, s in shares[tails[0]].imports} == exported


def test_voices_with_their_own_modulators_have_no_heads():
    _, voices, mix, master = voice_bank(64, shared_lfo=False)
    nodes, _ = snapshot(master)
    heads, tail, chains = split_part(set(nodes), nodes)
    assert tail == {mix.id, master.id} and heads == set()
    assert len(chains) == 65  # the voices, and the master's cutoff modulation
    every = set().union(*chains) | heads | tail
    assert every == set(nodes)


def test_light_parts_render_whole_and_heavy_ones_split():
    small = js.Mix(*[js.Sine(freq=100 + i, amp=0.01) for i in range(8)])
    nodes, _ = snapshot(small)
    assert sum(weight(s) for s in nodes.values()) < SPLIT_WEIGHT
    shares = assign(nodes, [0, 1])
    assert {len(sh.body) for sh in shares.values()} == {0, len(nodes)}
    assert not any(sh.tail for sh in shares.values())


def test_one_worker_gets_everything_as_one_body():
    _, _, _, master = voice_bank(64)
    nodes, _ = snapshot(master)
    shares = assign(nodes, [0])
    assert shares[0].body == set(nodes) and not shares[0].tail and not shares[0].imports


def test_voices_stay_on_their_worker_when_one_is_added():
    lfo = js.Sine(freq=0.3)
    voices = [js.LowPass(js.Saw(freq=100 + i, amp=0.01), cutoff=800 + 400 * lfo) for i in range(64)]
    nodes, _ = snapshot(js.Mix(*voices))
    first = assign(nodes, [0, 1])
    where = {i: slots[0] for i, slots in holders(first).items()}
    voices.append(js.LowPass(js.Saw(freq=99, amp=0.01), cutoff=800 + 400 * lfo))
    nodes2, _ = snapshot(js.Mix(*voices))
    second = assign(nodes2, [0, 1], where)
    moved = [
        i
        for i, slots in holders(second).items()
        if i in where and nodes2[i].type != "Mix" and slots[0] != where[i] and i != lfo.id
    ]
    assert moved == []


def test_a_feedback_loop_across_the_tail_keeps_the_part_whole():
    fb = js.Feedback()
    voices = [js.LowPass(js.Saw(freq=100 + i, amp=0.01) + 0.1 * fb, cutoff=900) for i in range(64)]
    mix = js.Mix(*voices)
    fb.input = mix
    nodes, _ = snapshot(mix)
    assert split_part(set(nodes), nodes) is None
    shares = assign(nodes, [0, 1])
    assert sorted(len(sh.body) for sh in shares.values()) == [0, len(nodes)]


def test_a_feedback_loop_inside_each_voice_splits():
    voices = []
    for i in range(64):
        fb = js.Feedback()
        v = js.LowPass(js.Saw(freq=100 + i, amp=0.01) + 0.3 * fb, cutoff=900)
        fb.input = v
        voices.append(v)
    nodes, _ = snapshot(js.Mix(*voices))
    heads, tail, chains = split_part(set(nodes), nodes)
    assert len(chains) == 64 and not heads


def test_a_large_mix_is_summed_by_chunks_where_the_voices_are():
    lfo, voices, mix, master = voice_bank(160)  # chunks of inputs 0-63, 64-127, 128-159
    nodes, _ = snapshot(master)
    shares = assign(nodes, [0, 1])
    (ts,) = [s for s, sh in shares.items() if sh.tail]
    join = shares[ts].specs[mix.id]
    assert join.type == "MixJoin" and join.label() == nodes[mix.id].label()
    assert join.values["amp"] == nodes[mix.id].values["amp"]
    parts = [part_id(mix.id, c) for c in range(3)]
    assert join.inputs == [(p, port) for p in parts for port in (0, 1)]
    assert {owner_of(p) for p in parts} == {mix.id} and owner_of(mix.id) == mix.id
    slot_of_voice = {v.id: s for s, sh in shares.items() for v in voices if v.id in sh.body}
    for c, p in enumerate(parts):
        ins = nodes[mix.id].inputs[c * CHUNK : (c + 1) * CHUNK]
        homes = {slot_of_voice[i] for i, _ in ins}
        (where,) = [s for s, sh in shares.items() if p in sh.body | sh.tail]
        spec = shares[where].specs[p]
        assert spec.type == "MixPart" and spec.inputs == ins
        if len(homes) == 1:  # summed beside its voices, in the body
            assert p in shares[homes.pop()].body
        else:  # across the workers' ranges: the tail sums it from copied voices
            assert p in shares[ts].tail
            assert {(i, 0) for i, _ in ins} <= {(i, q) for i, q, _ in shares[ts].imports}
    # the tail reads two columns per chunk summed elsewhere, not those chunks' voices
    imported = {(i, q) for i, q, _ in shares[ts].imports}
    body_parts = [p for p in parts if p not in shares[ts].tail]
    assert body_parts and {(p, q) for p in body_parts for q in (0, 1)} <= imported
    copied = sum(1 for i, _ in imported if i > 0 and i in slot_of_voice)
    assert copied <= CHUNK


def test_a_small_mix_and_a_whole_part_keep_their_mix():
    _, _, mix, master = voice_bank(48)
    nodes, _ = snapshot(master)
    shares = assign(nodes, [0, 1])
    assert not any(sh.specs for sh in shares.values())
    _, _, mix, master = voice_bank(160)
    nodes, _ = snapshot(master)
    shares = assign(nodes, [0])  # one worker: nothing to split
    assert not shares[0].specs and mix.id in shares[0].body


def test_a_mix_summed_by_chunks_gives_the_samples_of_the_mix():
    """MixPart + MixJoin, in any layout, give what Mix gives (which sums by chunks)."""
    rng = np.random.default_rng(3)
    loud = [js.Sine(freq=float(f), amp=1e6) for f in rng.uniform(50, 5000, CHUNK)]
    # chunk 1 cancels chunk 0 exactly, chunk 2 is quiet: summed in another order than
    # 0, 1, 2, the quiet chunk would be lost in the rounding of the loud ones
    srcs = [*loud, *(-1 * s for s in loud)]
    srcs += [js.Sine(freq=float(f), amp=1e-3) for f in rng.uniform(50, 5000, 17)]
    lfo = js.Sine(freq=3.0, amp=0.5)
    mix = js.Mix(*srcs, amp=lfo + 1)
    nodes, outputs = snapshot(mix)
    want = js.Renderer(nodes, outputs, 48000, 64).process(64).copy()
    split = dict(nodes)
    order = [2, 0, 1]  # made in another order than summed: on the bus elsewhere
    for c in order:
        pid = part_id(mix.id, c)
        ins = nodes[mix.id].inputs[c * CHUNK : (c + 1) * CHUNK]
        split[pid] = NodeSpec(pid, "MixPart", "arith.mix_part", {}, inputs=list(ins))
    join = [(part_id(mix.id, c), q) for c in range(3) for q in (0, 1)]
    amp = nodes[mix.id].values["amp"]
    split[mix.id] = NodeSpec(mix.id, "MixJoin", "arith.mix_join", {"amp": amp}, inputs=join)
    got = js.Renderer(split, outputs, 48000, 64).process(64).copy()
    assert 1e-4 < np.abs(want).max() < 0.1
    assert np.array_equal(got, want)
    # and the chunked sum is the float64 sum, to float32's precision
    ref = np.zeros(64)
    for s in srcs:
        ref += js.render(s, 64 / 48000, 48000, 64)[:, 0].astype(np.float64)
    ref *= js.render(lfo + 1, 64 / 48000, 48000, 64)[:, 0].astype(np.float64)
    np.testing.assert_allclose(want[:, 0], ref, rtol=0, atol=np.abs(ref).max() * 2e-6)


def test_measured_costs_weigh_a_type_and_decide_the_split():
    _, voices, mix, master = voice_bank(24, shared_lfo=False)
    nodes, _ = snapshot(master)
    # guessed: 24 voices of 4 built-in modules stay under the threshold, whole
    assert sum(weight(s) for s in nodes.values()) < SPLIT_WEIGHT
    shares = assign(nodes, [0, 1])
    assert not shares[0].body or not shares[1].body
    # measured: a LowPass costs 20 units here, so the bank splits by voice
    costs = {"LowPass": 20.0}
    assert weight(nodes[voices[0].id], costs) == 20.0
    assert weight(nodes[voices[0].input.id], costs) == weight(nodes[voices[0].input.id])
    shares = assign(nodes, [0, 1], costs=costs)
    assert shares[0].body and shares[1].body
    assert sum(bool(sh.tail) for sh in shares.values()) == 1
