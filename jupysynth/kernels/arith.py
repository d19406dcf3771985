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


@njit(**JIT)
def mix(a, b, sr, bus, n, out, amp, runs, ptr):
    # instance i sums the column runs runs[ptr[i]:ptr[i+1]], each (start, length), in
    # float64 over eight lanes: input k adds to lane k % 8, the lanes add up in a fixed
    # tree.  The sum depends only on the inputs and their order, never on where they
    # sit on the bus (a worker lays out only its share); adjacent inputs vectorise.
    lanes = np.zeros(8)
    for t in range(a, b):
        row = bus[t]
        for i in range(n):
            for q in range(8):
                lanes[q] = 0.0
            k = 0
            for r in range(ptr[i], ptr[i + 1]):
                start = runs[r, 0]
                length = runs[r, 1]
                j = 0
                while j < length and (k & 7) != 0:
                    lanes[k & 7] += row[start + j]
                    j += 1
                    k += 1
                if j + 8 <= length:
                    # the aligned middle, eight running sums in registers
                    s0, s1, s2, s3 = lanes[0], lanes[1], lanes[2], lanes[3]
                    s4, s5, s6, s7 = lanes[4], lanes[5], lanes[6], lanes[7]
                    while j + 8 <= length:
                        p = start + j
                        s0 += row[p]
                        s1 += row[p + 1]
                        s2 += row[p + 2]
                        s3 += row[p + 3]
                        s4 += row[p + 4]
                        s5 += row[p + 5]
                        s6 += row[p + 6]
                        s7 += row[p + 7]
                        j += 8
                        k += 8
                    lanes[0], lanes[1], lanes[2], lanes[3] = s0, s1, s2, s3
                    lanes[4], lanes[5], lanes[6], lanes[7] = s4, s5, s6, s7
                while j < length:
                    lanes[k & 7] += row[start + j]
                    j += 1
                    k += 1
            acc = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + (
                (lanes[4] + lanes[5]) + (lanes[6] + lanes[7])
            )
            row[out + i] = acc * row[amp + i]
