"""State-variable filter kernels (Simper's trapezoidal SVF), resonant, cutoff and Q per sample.

The trapezoidal integrators make this the bilinear transform of the analog
prototype ``1 / (s^2 + s/Q + 1)`` with the cutoff prewarped, so the cutoff and
the peak gain (Q at the cutoff) are exact, and modulating them per sample stays
stable.  Coefficients are computed per sample (no table, no zipper).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._dsp import JIT, tan_pi

_FMIN = np.float32(1e-6)
_FMAX = np.float32(0.49)
_QMIN = np.float32(0.05)
_QMAX = np.float32(100.0)
_ONE = np.float32(1.0)


@njit(inline="always", **JIT)
def _svf(a, b, sr, bus, n, out, inp, cutoff, q, ic1, ic2, mode):
    inv = np.float32(1.0 / sr)
    for t in range(a, b):
        o = bus[t, out : out + n]
        x = bus[t, inp : inp + n]
        c = bus[t, cutoff : cutoff + n]
        r = bus[t, q : q + n]
        for i in range(n):
            g = tan_pi(min(max(c[i] * inv, _FMIN), _FMAX))
            k = _ONE / min(max(r[i], _QMIN), _QMAX)
            a1 = _ONE / (_ONE + g * (g + k))
            a2 = g * a1
            a3 = g * a2
            v0 = x[i]
            s1 = ic1[i]
            s2 = ic2[i]
            v3 = v0 - s2
            v1 = a1 * s1 + a2 * v3
            v2 = s2 + a2 * s1 + a3 * v3
            ic1[i] = v1 + v1 - s1
            ic2[i] = v2 + v2 - s2
            if mode == 0:
                o[i] = v2
            elif mode == 1:
                o[i] = v0 - k * v1 - v2
            elif mode == 2:
                o[i] = k * v1  # unity gain at the centre
            else:
                o[i] = v0 - k * v1


@njit(**JIT)
def lowpass(a, b, sr, bus, n, out, inp, cutoff, q, ic1, ic2):
    _svf(a, b, sr, bus, n, out, inp, cutoff, q, ic1, ic2, 0)


@njit(**JIT)
def highpass(a, b, sr, bus, n, out, inp, cutoff, q, ic1, ic2):
    _svf(a, b, sr, bus, n, out, inp, cutoff, q, ic1, ic2, 1)


@njit(**JIT)
def bandpass(a, b, sr, bus, n, out, inp, cutoff, q, ic1, ic2):
    _svf(a, b, sr, bus, n, out, inp, cutoff, q, ic1, ic2, 2)


@njit(**JIT)
def notch(a, b, sr, bus, n, out, inp, cutoff, q, ic1, ic2):
    _svf(a, b, sr, bus, n, out, inp, cutoff, q, ic1, ic2, 3)
