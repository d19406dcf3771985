"""How the worker pool divides a patch (pure logic: no processes)."""

from __future__ import annotations

import jupysynth as js
from jupysynth.engine.split import SPLIT_WEIGHT, assign, holders, split_part, weight
from jupysynth.graph import snapshot


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
