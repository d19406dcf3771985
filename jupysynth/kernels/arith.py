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


#: Inputs a Mix sums in one piece.  A Mix of more inputs sums them in chunks of
#: this many, in order, each chunk's float64 sum kept as a (hi, lo) pair of
#: float32, then adds the pairs in order.  A worker pool computes the chunks of a
#: split voice bank where the voices are (``MixPart``) and sums the pairs on the
#: tail's worker (``MixJoin``): the same operations, so the same samples.
CHUNK = 64


@njit(cache=True, nogil=True, fastmath={"nsz", "reassoc"}, error_model="numpy")
def _sum_in_order(x, m):
    # vectorised: how the additions group depends only on m, never on the bus layout
    acc = 0.0
    for j in range(m):
        acc += x[j]
    return acc


@njit(**JIT)
def _split(p):
    # a float64 as two float32: hi + lo holds 48 of its 53 bits, exactly
    hi = np.float32(p)
    return hi, np.float32(p - np.float64(hi))


@njit(**JIT)
def _sum_chunked(x, m):
    if m <= CHUNK:
        return _sum_in_order(x, m)
    acc = 0.0
    for c in range(0, m, CHUNK):
        hi, lo = _split(_sum_in_order(x[c:], min(CHUNK, m - c)))
        acc += np.float64(hi) + np.float64(lo)  # no reassoc here: the pool's order
    return acc


@njit(**JIT)
def _line_up(row, runs, r0, r1, scratch):
    """The columns of runs[r0:r1] one after another in ``scratch``; returns the count."""
    m = 0
    for r in range(r0, r1):
        start = runs[r, 0]
        for j in range(runs[r, 1]):
            scratch[m + j] = row[start + j]
        m += runs[r, 1]
    return m


@njit(**JIT)
def mix(a, b, sr, bus, n, out, amp, runs, ptr):
    # instance i sums the column runs runs[ptr[i]:ptr[i+1]], each (start, length): its
    # inputs are first lined up in order in one scratch row, then summed in float64 by
    # one vectorised loop (in chunks of CHUNK).  The sum depends on the inputs and
    # their order only, not on where they sit on the bus (a worker lays out only its
    # share of the patch).
    scratch = np.empty(max(1, runs[:, 1].sum()), dtype=np.float32)
    for t in range(a, b):
        row = bus[t]
        for i in range(n):
            r0 = ptr[i]
            if ptr[i + 1] == r0 + 1:  # side by side already (the usual case)
                acc = _sum_chunked(row[runs[r0, 0] :], runs[r0, 1])
            else:
                m = _line_up(row, runs, r0, ptr[i + 1], scratch)
                acc = _sum_chunked(scratch, m)
            row[out + i] = acc * row[amp + i]


@njit(**JIT)
def mix_part(a, b, sr, bus, n, out, runs, ptr):
    # one chunk of a Mix (at most CHUNK inputs): its float64 sum as (hi, lo) on ports 0, 1
    scratch = np.empty(max(1, runs[:, 1].sum()), dtype=np.float32)
    for t in range(a, b):
        row = bus[t]
        for i in range(n):
            r0 = ptr[i]
            if ptr[i + 1] == r0 + 1:
                p = _sum_in_order(row[runs[r0, 0] :], runs[r0, 1])
            else:
                m = _line_up(row, runs, r0, ptr[i + 1], scratch)
                p = _sum_in_order(scratch, m)
            hi, lo = _split(p)
            row[out + i] = hi
            row[out + n + i] = lo


@njit(**JIT)
def mix_join(a, b, sr, bus, n, out, amp, runs, ptr):
    # a Mix from its chunks' (hi, lo) pairs, in order: inputs hi0, lo0, hi1, lo1, ...
    scratch = np.empty(max(1, runs[:, 1].sum()), dtype=np.float32)
    for t in range(a, b):
        row = bus[t]
        for i in range(n):
            m = _line_up(row, runs, ptr[i], ptr[i + 1], scratch)
            acc = 0.0
            for c in range(0, m - 1, 2):
                acc += np.float64(scratch[c]) + np.float64(scratch[c + 1])
            row[out + i] = acc * row[amp + i]
