"""State-variable filter kernels (Simper's trapezoidal SVF), resonant, cutoff and Q per sample.

The trapezoidal integrators make this the bilinear transform of the analog
prototype ``1 / (s^2 + s/Q + 1)`` with the cutoff prewarped, so the cutoff and
the peak gain (Q at the cutoff) are exact, and modulating them per sample stays
stable.
"""

from __future__ import annotations

from numba import njit

from ._dsp import JIT, tan_pi


@njit(inline="always", **JIT)
def _svf(a, b, sr, out, inp, cutoff, q, ic1, ic2, mode):
    n = out.shape[1]
    inv = 1.0 / sr
    for t in range(a, b):
        for i in range(n):
            f = min(max(cutoff[t, i] * inv, 1e-6), 0.49)
            g = tan_pi(f)
            k = 1.0 / min(max(q[t, i], 0.05), 100.0)
            a1 = 1.0 / (1.0 + g * (g + k))
            a2 = g * a1
            a3 = g * a2
            v0 = inp[t, i]
            s1 = ic1[i]
            s2 = ic2[i]
            v3 = v0 - s2
            v1 = a1 * s1 + a2 * v3
            v2 = s2 + a2 * s1 + a3 * v3
            ic1[i] = v1 + v1 - s1
            ic2[i] = v2 + v2 - s2
            if mode == 0:
                out[t, i] = v2
            elif mode == 1:
                out[t, i] = v0 - k * v1 - v2
            elif mode == 2:
                out[t, i] = k * v1  # unity gain at the centre
            else:
                out[t, i] = v0 - k * v1


@njit(**JIT)
def lowpass(a, b, sr, out, inp, cutoff, q, ic1, ic2):
    _svf(a, b, sr, out, inp, cutoff, q, ic1, ic2, 0)


@njit(**JIT)
def highpass(a, b, sr, out, inp, cutoff, q, ic1, ic2):
    _svf(a, b, sr, out, inp, cutoff, q, ic1, ic2, 1)


@njit(**JIT)
def bandpass(a, b, sr, out, inp, cutoff, q, ic1, ic2):
    _svf(a, b, sr, out, inp, cutoff, q, ic1, ic2, 2)


@njit(**JIT)
def notch(a, b, sr, out, inp, cutoff, q, ic1, ic2):
    _svf(a, b, sr, out, inp, cutoff, q, ic1, ic2, 3)
