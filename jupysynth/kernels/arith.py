"""Arithmetic kernels: multiply-add, mix (sum of many), gain."""

from __future__ import annotations

from numba import njit

from ._dsp import JIT


@njit(**JIT)
def muladd(a, b, sr, out, inp, mul, add):
    n = out.shape[1]
    for t in range(a, b):
        for i in range(n):
            out[t, i] = inp[t, i] * mul[t, i] + add[t, i]


@njit(**JIT)
def gain(a, b, sr, out, inp, amount):
    n = out.shape[1]
    for t in range(a, b):
        for i in range(n):
            out[t, i] = inp[t, i] * amount[t, i]


@njit(**JIT)
def mix(a, b, sr, out, amp, bus, slots, ptr):
    # instance i sums bus columns slots[ptr[i]:ptr[i+1]]; summing in a float64
    # accumulator keeps 1024 voices as clean as one
    n = out.shape[1]
    for t in range(a, b):
        for i in range(n):
            acc = 0.0
            for k in range(ptr[i], ptr[i + 1]):
                acc += bus[t, slots[k]]
            out[t, i] = acc * amp[t, i]
