"""Effect and routing kernels: delay, equal-power pan, the one-way Feedback tap."""

from __future__ import annotations

import math

from numba import njit

from ._dsp import JIT, sin2pi


@njit(inline="always", **JIT)
def _hermite(xm1, x0, x1, x2, f):
    c1 = 0.5 * (x1 - xm1)
    c2 = xm1 - 2.5 * x0 + 2.0 * x1 - 0.5 * x2
    c3 = 0.5 * (x2 - xm1) + 1.5 * (x0 - x1)
    return ((c3 * f + c2) * f + c1) * f + x0


@njit(**JIT)
def delay(a, b, sr, out, inp, time, feedback, mix, buf, pos):
    # buf is (length, n), time-major so each sample's write is one contiguous row;
    # pos[0] is the row written next, shared by all instances
    n = out.shape[1]
    length = buf.shape[0]
    w = pos[0]
    for t in range(a, b):
        for i in range(n):
            d = min(max(time[t, i] * sr, 2.0), length - 3.0)
            r = w - d
            base = math.floor(r)
            f = r - base
            j = int(base) % length
            jm1 = (j - 1) % length
            j1 = (j + 1) % length
            j2 = (j + 2) % length
            wet = _hermite(buf[jm1, i], buf[j, i], buf[j1, i], buf[j2, i], f)
            x = inp[t, i]
            buf[w, i] = x + feedback[t, i] * wet
            m = mix[t, i]
            out[t, i] = (1.0 - m) * x + m * wet
        w += 1
        if w == length:
            w = 0
    pos[0] = w


@njit(**JIT)
def pan(a, b, sr, out, inp, pos):
    # equal power: left = cos(theta), right = sin(theta), theta = (pos + 1) * pi / 4
    n = inp.shape[1]
    for t in range(a, b):
        for i in range(n):
            x = inp[t, i]
            th = (min(max(pos[t, i], -1.0), 1.0) + 1.0) * 0.125
            out[t, i] = x * sin2pi(th + 0.25)
            out[t, n + i] = x * sin2pi(th)


@njit(**JIT)
def feedback_read(a, b, sr, out, inp, ring, pos):
    # ring holds the last `length` input samples; reading before this block's
    # writes gives a delay of exactly `length` samples, whatever the block size
    n = out.shape[1]
    length = ring.shape[0]
    w = pos[0]
    for t in range(a, b):
        r = (w + t - a) % length
        for i in range(n):
            out[t, i] = ring[r, i]


@njit(**JIT)
def feedback_write(a, b, sr, out, inp, ring, pos):
    n = out.shape[1]
    length = ring.shape[0]
    w = pos[0]
    for t in range(a, b):
        r = (w + t - a) % length
        for i in range(n):
            ring[r, i] = inp[t, i]
    pos[0] = (w + b - a) % length
