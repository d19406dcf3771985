"""Kernels that move samples around the block bus (no module behind them)."""

from __future__ import annotations

import math

from numba import njit

from ._dsp import JIT


@njit(**JIT)
def gather(a, b, bus, slots, vals, dst):
    """dst[t, i] = bus[t, slots[i]], or vals[i] where slots[i] < 0 (a number)."""
    n = dst.shape[1]
    for t in range(a, b):
        for i in range(n):
            s = slots[i]
            dst[t, i] = bus[t, s] if s >= 0 else vals[i]


@njit(**JIT)
def ramp(a, b, old, new, dst):
    """A linear ramp from old to new across frames a..b, arriving at b-1."""
    n = dst.shape[1]
    span = b - a
    for t in range(a, b):
        f = (t - a + 1) / span
        for i in range(n):
            dst[t, i] = old[i] + (new[i] - old[i]) * f


@njit(**JIT)
def mix_out(a, b, bus, left, right, out):
    """Sum the output slots into the stereo block."""
    for t in range(a, b):
        acc = 0.0
        for s in left:
            acc += bus[t, s]
        out[t, 0] = acc
        acc = 0.0
        for s in right:
            acc += bus[t, s]
        out[t, 1] = acc


@njit(**JIT)
def all_finite(x, a, b):
    """True if rows a..b of a 2-D array hold no NaN or infinity."""
    for t in range(a, b):
        for i in range(x.shape[1]):
            if not math.isfinite(x[t, i]):
                return False
    return True


@njit(**JIT)
def scrub(x):
    """Replace NaN and infinities by zero in place (a 1-D view); returns how many."""
    count = 0
    for i in range(x.size):
        if not math.isfinite(x[i]):
            x[i] = 0.0
            count += 1
    return count
