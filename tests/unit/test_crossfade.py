"""The one crossfade both renderers use: who fades which way, and the gains it mixes with."""

from __future__ import annotations

import numpy as np

from jupysynth.crossfade import Crossfade


def test_begin_renders_both_patches_and_marks_each_output():
    a, b, c = (1, 0, 1), (2, 0, 1), (3, 0, 1)
    fade, nodes, outputs = Crossfade.begin({1: "A", 2: "B"}, [a, b], {2: "B", 3: "C"}, [b, c], 8)
    assert outputs == [a, b, c] and nodes == {1: "A", 2: "B", 3: "C"}
    assert fade.modes == {a: 1, b: 0, c: 2}
    assert fade.nodes == {2: "B", 3: "C"} and fade.outputs == [b, c]
    # nothing playing, or no fade: the new patch at once
    assert Crossfade.begin({}, [], {3: "C"}, [c], 8) == (None, {3: "C"}, [c])
    assert Crossfade.begin({1: "A"}, [a], {3: "C"}, [c], 0) == (None, {3: "C"}, [c])


def test_the_mix_fades_out_in_and_holds_linearly_and_says_when_it_is_done():
    a, b, c = (1, 0, 1), (2, 0, 1), (3, 0, 2)  # c is stereo: port 0 left only
    fade, _, outputs = Crossfade.begin({}, [a, b], {}, [b, c], 8)
    lanes = fade.lanes(outputs)
    assert lanes[0].tolist() == [1, 0, 2] and lanes[1].tolist() == [1, 0]
    bus = np.ones((4, 4), dtype=np.float32)
    bus[:, 1], bus[:, 2], bus[:, 3] = 1.0, 10.0, 100.0
    left = np.array([1, 2, 3], dtype=np.int64)
    right = np.array([1, 2], dtype=np.int64)
    out = np.zeros((4, 2), dtype=np.float32)
    got = []
    for _ in range(2):
        done = fade.mix(0, 4, bus, left, right, lanes, out)
        got.append(out.copy())
    assert done and fade.done == 8
    x = (np.arange(1, 9) / 8.0).astype(np.float32)
    left_want = (1 - x) * 1 + 10 + x * 100
    right_want = (1 - x) * 1 + 10
    np.testing.assert_allclose(np.concatenate(got)[:, 0], left_want, rtol=1e-6)
    np.testing.assert_allclose(np.concatenate(got)[:, 1], right_want, rtol=1e-6)
    fade2, _, _ = Crossfade.begin({}, [a], {}, [b], 8)
    assert not fade2.mix(0, 4, bus, left[:1], right[:1], fade2.lanes([a, b]), out)
