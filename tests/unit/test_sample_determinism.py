"""A cell-written ``sample()`` module renders the same samples in any group size.

Built-in kernels are compiled without floating-point contraction: a fused
multiply-add rounds once where ``a * b + c`` rounds twice, and LLVM may fuse in
the loop it vectorises across instances but not in the scalar remainder, so an
instance's samples would depend on how many instances share its group (and so
on the worker count, which divides groups).  A per-sample function written in
a cell is compiled with the same flags (it had ``contract``).  On this machine
numba calls the function from the group loop without inlining it, so both
flags give equal samples today; the test guards the property, whichever way
the loop is compiled.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import jupysynth as js
from jupysynth.graph import snapshot
from jupysynth.renderer import Renderer

SR, BS = 48000, 128


def _cell_class(name: str) -> type[js.Module]:
    def sample(s, x, k):
        # products summed: every one a place where a fused multiply-add rounds differently
        y = x * k + s[0] * 0.999 + s[1] * s[0] * 0.37 + math.sin(x * 3.1) * k * 0.21
        s[1] = s[0]
        s[0] = y * 0.5
        return y * 0.5

    return type(
        name,
        (js.Module,),
        {
            "params": (js.Param("input", 0.0, -1e30, 1e30), js.Param("k", 1.0, -10.0, 10.0)),
            "positional": ("input",),
            "sample_state": 2,
            "sample": staticmethod(sample),
            "__module__": __name__,
            "__qualname__": name,
        },
    )


def _render_alone_and_grouped(cls: type[js.Module], n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first voice rendered alone, and as one of ``n`` voices of one group."""
    voices = [
        cls(js.Saw(freq=110.0 * (1 + 0.01 * i), amp=0.7), k=0.3 + 0.011 * i) for i in range(n)
    ]

    def run(mods: list[js.Module]) -> np.ndarray:
        r = Renderer(*snapshot(mods), SR, BS)
        return np.concatenate([r.process(BS).copy() for _ in range(40)])

    pans = [js.Pan(v, pos=-1.0 if i == 0 else 1.0) for i, v in enumerate(voices)]
    alone = run(pans[:1])[:, 0]
    grouped = run(pans)[:, 0]  # voice 0 alone on the left, the others right
    return alone, grouped


@pytest.mark.parametrize("n", [2, 3, 8, 17, 33])
def test_a_cell_sample_module_is_bit_identical_in_any_group_size(n):
    alone, grouped = _render_alone_and_grouped(_cell_class(f"Fma{n}"), n)
    assert np.abs(alone).max() > 0.05
    np.testing.assert_array_equal(alone, grouped)
