"""Arithmetic kernels: multiply-add, gain, and the mix of many inputs."""

from __future__ import annotations

import numpy as np
from numba import njit

from ._dsp import JIT


@njit(**JIT)
def muladd(a, b, sr, bus, n, out, inp, mul, add):
    for t in range(a, b):
        o = bus[t, out : out + n]
        x = bus[t, inp : inp + n]
        m = bus[t, mul : mul + n]
        c = bus[t, add : add + n]
        for i in range(n):
            o[i] = x[i] * m[i] + c[i]


@njit(**JIT)
def gain(a, b, sr, bus, n, out, inp, amount):
    for t in range(a, b):
        o = bus[t, out : out + n]
        x = bus[t, inp : inp + n]
        g = bus[t, amount : amount + n]
        for i in range(n):
            o[i] = x[i] * g[i]


@njit(cache=True, nogil=True, fastmath={"nsz", "reassoc"}, error_model="numpy")
def _sum_in_order(x, m):
    # vectorised: how the additions group depends only on m, never on the bus layout
    acc = 0.0
    for j in range(m):
        acc += x[j]
    return acc


@njit(**JIT)
def mix(a, b, sr, bus, n, out, amp, runs, ptr):
    # instance i sums the column runs runs[ptr[i]:ptr[i+1]], each (start, length): its
    # inputs are first lined up in order in one scratch row, then summed in float64 by
    # one vectorised loop.  The sum depends on the inputs and their order only, not on
    # where they sit on the bus (a worker lays out only its share of the patch).
    scratch = np.empty(max(1, runs[:, 1].sum()), dtype=np.float32)
    for t in range(a, b):
        row = bus[t]
        for i in range(n):
            r0 = ptr[i]
            if ptr[i + 1] == r0 + 1:  # side by side already (the usual case)
                start = runs[r0, 0]
                acc = _sum_in_order(row[start:], runs[r0, 1])
            else:
                m = 0
                for r in range(r0, ptr[i + 1]):
                    start = runs[r, 0]
                    for j in range(runs[r, 1]):
                        scratch[m + j] = row[start + j]
                    m += runs[r, 1]
                acc = _sum_in_order(scratch, m)
            row[out + i] = acc * row[amp + i]
