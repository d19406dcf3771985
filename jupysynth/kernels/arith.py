"""Arithmetic kernels: multiply-add, gain, and the mix of many inputs."""

from __future__ import annotations

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


@njit(**JIT)
def mix(a, b, sr, bus, n, out, amp, runs, ptr):
    # instance i sums the column runs runs[ptr[i]:ptr[i+1]], each (start, length):
    # inputs that sit side by side on the bus sum as one vectorised reduction
    for t in range(a, b):
        row = bus[t]
        for i in range(n):
            acc = 0.0
            for r in range(ptr[i], ptr[i + 1]):
                start = runs[r, 0]
                seg = row[start : start + runs[r, 1]]
                for k in range(seg.shape[0]):
                    acc += seg[k]
            row[out + i] = acc * row[amp + i]
