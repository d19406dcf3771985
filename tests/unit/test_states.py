"""Module states moving between renderers, a group at a time (renderer.States).

A renderer that takes over a patch from another at a block boundary must go
on exactly where the first one was: these compare the samples of the two.
"""

from __future__ import annotations

import pickle

import numpy as np

import jupysynth as js
from jupysynth.graph import snapshot

SR = 48000
BS = 64


def patch():
    """Delays (a write position shared by the group), filters and oscillators."""
    lfo = js.Sine(freq=3.0)
    voices = [
        js.Delay(
            js.LowPass(js.Saw(freq=110.0 * (k + 1), amp=0.2), cutoff=800 + 300 * lfo, q=2),
            time=0.01 * (k + 1),
            feedback=0.5,
            mix=0.5,
        )
        for k in range(3)
    ]
    return js.Mix(*voices)


def blocks(r: js.Renderer, n: int) -> np.ndarray:
    return np.concatenate([r.process(BS).copy() for _ in range(n)])


def test_a_renderer_given_every_state_goes_on_exactly_where_the_other_was():
    nodes, outputs = snapshot(patch())
    a = js.Renderer(nodes, outputs, SR, BS)
    blocks(a, 40)
    b = js.Renderer(nodes, outputs, SR, BS)
    states = pickle.loads(pickle.dumps(a.export_state(nodes), protocol=5))
    assert states.ids() == set(nodes) and len(states) == len(nodes)
    b.import_state(states)
    after_a, after_b = blocks(a, 40), blocks(b, 40)
    assert np.abs(after_a).max() > 0.05
    assert np.array_equal(after_a, after_b)


def test_without_the_states_the_taking_renderer_starts_anew_and_differs():
    """The test above can fail: a renderer that is not given the states sounds different."""
    nodes, outputs = snapshot(patch())
    a = js.Renderer(nodes, outputs, SR, BS)
    blocks(a, 40)
    b = js.Renderer(nodes, outputs, SR, BS)
    assert not np.array_equal(blocks(a, 40), blocks(b, 40))


def test_a_later_chunk_wins_and_only_keeps_the_modules_asked_for():
    nodes, outputs = snapshot(patch())
    a = js.Renderer(nodes, outputs, SR, BS)
    blocks(a, 10)
    early = a.export_state(nodes)
    blocks(a, 10)
    late = a.export_state(nodes)
    b = js.Renderer(nodes, outputs, SR, BS)
    b.import_state(early.then(late))
    assert np.array_equal(blocks(a, 20), blocks(b, 20))
    some = sorted(nodes)[:5]
    assert late.only(some).ids() == set(some)
    assert late.only([]).ids() == set()


def test_a_shared_write_position_is_taken_only_by_a_group_that_came_whole_from_one_group():
    """A Delay group gathered from two source groups with different write positions keeps
    its own (taking either would move the other's echoes); one that came whole takes it."""
    d1 = js.Delay(js.Sine(freq=440.0), time=0.01)
    nodes, outputs = snapshot(d1)
    a = js.Renderer(nodes, outputs, SR, BS)
    blocks(a, 3)  # write position 192
    d2 = js.Delay(js.Sine(freq=330.0), time=0.01)
    nodes2, outputs2 = snapshot(d2)
    c = js.Renderer(nodes2, outputs2, SR, BS)
    blocks(c, 5)  # write position 320
    both = {**nodes, **nodes2}
    b = js.Renderer(both, outputs + outputs2, SR, BS)
    b.import_state(a.export_state(nodes).then(c.export_state(nodes2)))
    rt, _ = b._where[d1.id]
    pos = next(arr for decl, arr in zip(rt.group.cls.state, rt.state) if decl.shared)
    assert int(pos.ravel()[0]) == 0  # kept: neither source group covers this group
    whole = js.Renderer(nodes, outputs, SR, BS)
    whole.import_state(a.export_state(nodes))
    rt, _ = whole._where[d1.id]
    pos = next(arr for decl, arr in zip(rt.group.cls.state, rt.state) if decl.shared)
    assert int(pos.ravel()[0]) == 3 * BS
