"""An instance renders the same samples whatever group it is in.

The worker pool gives each worker a share of a group (some of the voices); the
samples must not depend on that.  Fast-math flags that fuse or reassociate
let LLVM compile a kernel's vectorised loop and its scalar remainder
differently, so the last instances of a group of 50 differed from the same
instances in a group of 100 (a rounding step, rarely).  These tests keep that
from coming back, for every built-in module type.
"""

from __future__ import annotations

import numpy as np
import pytest

import jupysynth as js
from jupysynth.graph import Mix, MulAdd, module_types
from jupysynth.renderer import Renderer

SR, BS = 48000, 128


def _types() -> list[str]:
    """Every module type a patch can make (the pool's internal ones are tested in test_split)."""
    return sorted(
        name
        for name, cls in module_types().items()
        if cls.__module__.startswith("jupysynth.") and not getattr(cls, "internal", False)
    )


def make(name: str, k: int, signals: bool) -> js.Module:
    """Instance ``k`` of type ``name``, every parameter its own (signal or number)."""
    cls = module_types()[name]
    if cls is Mix:
        return Mix(*[js.Saw(freq=97 + 13 * k + j, amp=0.2) for j in range(1 + k % 11)])
    kwargs = {}
    for p in cls.params:
        if p.name == "input":
            kwargs[p.name] = js.Saw(freq=97 + 13 * k, amp=0.5)
        elif p.signal and signals:
            depth = 0.1 * abs(p.default) + 0.01
            kwargs[p.name] = MulAdd(js.Sine(freq=0.5 + 0.37 * k), depth, p.default)
        elif p.default != 0:
            kwargs[p.name] = min(p.default * (1.0 + 0.003 * k), p.max)
    if "seed" in cls.options:
        kwargs["seed"] = k + 1  # unseeded noise is seeded by the module's id
    return cls(**kwargs)


def columns(mods: list[js.Module], blocks: int = 40) -> np.ndarray:
    """Every module's first output, block after block, from one renderer."""
    from jupysynth.graph import snapshot

    nodes, outputs = snapshot(mods)
    r = Renderer(nodes, outputs, SR, BS)
    out = []
    for _ in range(blocks):
        r.process(BS)
        out.append(np.stack([r.bus[:, r.schedule.slot_of[(m.id, 0)]] for m in mods], 1).copy())
    return np.concatenate(out)


@pytest.mark.parametrize("signals", [False, True], ids=["numbers", "signals"])
@pytest.mark.parametrize("name", _types())
def test_an_instance_renders_the_same_in_a_group_of_any_size(name, signals):
    whole = columns([make(name, k, signals) for k in range(45)])
    for lo, hi in ((0, 22), (37, 45), (44, 45), (3, 30)):
        part = columns([make(name, k, signals) for k in range(lo, hi)])
        assert np.array_equal(whole[:, lo:hi], part), (name, lo, hi)


@pytest.mark.parametrize("m", [1, 7, 8, 33, 1000])
def test_a_mix_sums_the_same_whether_its_inputs_sit_side_by_side_or_apart(m):
    """Mix's sum depends on its inputs and their order, not on their bus columns."""
    from jupysynth import kernels

    mix = kernels.load("arith.mix")
    rng = np.random.default_rng(m)
    # large values that cancel among small ones: how float64 additions are grouped
    # shows in the result (the old vectorised Mix differed in 3-9 rows of 64 here)
    x = rng.standard_normal((64, m)).astype(np.float32)
    big = rng.random((64, m)) < 0.3
    x[big] = np.float32(2.0**40) * np.sign(rng.standard_normal(big.sum())).astype(np.float32)
    together = np.zeros((64, m + 3), np.float32)
    together[:, 1 : m + 1] = x
    together[:, m + 2] = 1.0
    mix(0, 64, 48000.0, together, 1, m + 1, m + 2, np.array([[1, m]]), np.array([0, 1]))
    # the same inputs, in the same order, every other column in reverse column order
    apart = np.zeros((64, 2 * m + 3), np.float32)
    cols = 2 * m - 2 * np.arange(m)  # descending, with gaps
    apart[:, cols] = x
    apart[:, 2 * m + 2] = 1.0
    runs = np.array([[c, 1] for c in cols])
    mix(0, 64, 48000.0, apart, 1, 2 * m + 1, 2 * m + 2, runs, np.array([0, m]))
    assert np.array_equal(together[:, m + 1], apart[:, 2 * m + 1])
    if m == 1:
        assert np.array_equal(together[:, 2], x[:, 0])
