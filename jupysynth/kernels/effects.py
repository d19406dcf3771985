"""Effect and routing kernels: delay, equal-power pan, the Feedback tap."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._dsp import JIT, QUARTER, sin_turn

_HALF = np.float32(0.5)
_ONE = np.float32(1.0)


@njit(inline="always", **JIT)
def _hermite(xm1, x0, x1, x2, f):
    c1 = 0.5 * (x1 - xm1)
    c2 = xm1 - 2.5 * x0 + 2.0 * x1 - 0.5 * x2
    c3 = 0.5 * (x2 - xm1) + 1.5 * (x0 - x1)
    return ((c3 * f + c2) * f + c1) * f + x0


@njit(**JIT)
def delay(a, b, sr, bus, n, out, inp, time, feedback, mix, buf, pos):
    # buf is (length, n), time-major so each sample's write is one contiguous row;
    # pos[0] is the row written next, shared by all instances
    length = buf.shape[0]
    w = pos[0]
    for t in range(a, b):
        o = bus[t, out : out + n]
        x = bus[t, inp : inp + n]
        tm = bus[t, time : time + n]
        fb = bus[t, feedback : feedback + n]
        mx = bus[t, mix : mix + n]
        for i in range(n):
            d = min(max(tm[i] * sr, 2.0), length - 3.0)
            r = w - d
            base = math.floor(r)
            f = r - base
            j = int(base) % length
            wet = _hermite(
                buf[(j - 1) % length, i],
                buf[j, i],
                buf[(j + 1) % length, i],
                buf[(j + 2) % length, i],
                f,
            )
            buf[w, i] = x[i] + fb[i] * wet
            m = mx[i]
            o[i] = (1.0 - m) * x[i] + m * wet
        w += 1
        if w == length:
            w = 0
    pos[0] = w


@njit(**JIT)
def pan(a, b, sr, bus, n, out, inp, pos):
    # equal power: left = cos(theta), right = sin(theta), theta = (pos + 1) * pi / 4
    for t in range(a, b):
        left = bus[t, out : out + n]
        right = bus[t, out + n : out + n + n]
        x = bus[t, inp : inp + n]
        p = bus[t, pos : pos + n]
        for i in range(n):
            th = (min(max(p[i], -_ONE), _ONE) + _ONE) * np.float32(0.125)
            left[i] = x[i] * sin_turn(QUARTER - th)  # cos(2 pi th), in sin_turn's range
            right[i] = x[i] * sin_turn(th)


@njit(**JIT)
def feedback_read(a, b, sr, bus, n, out, inp, ring, pos):
    # ring holds the last `length` input samples; reading before this span's
    # writes gives a delay of exactly `length` samples, whatever the block size
    length = ring.shape[0]
    w = pos[0]
    for t in range(a, b):
        o = bus[t, out : out + n]
        r = ring[(w + t - a) % length]
        for i in range(n):
            o[i] = r[i]


@njit(**JIT)
def feedback_write(a, b, sr, bus, n, out, inp, ring, pos):
    length = ring.shape[0]
    w = pos[0]
    for t in range(a, b):
        x = bus[t, inp : inp + n]
        r = ring[(w + t - a) % length]
        for i in range(n):
            r[i] = x[i]
    pos[0] = (w + b - a) % length
