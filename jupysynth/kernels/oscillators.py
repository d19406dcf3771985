"""Oscillator kernels: sine, band-limited saw/square/triangle/pulse, noise, LFO.

Phase accumulators are float64 in cycles (exact tuning over hours); outputs are
float32.  Each loop runs time outside and instances inside, so the instance
loop vectorises across voices.
"""

from __future__ import annotations

import math

from numba import njit

from ._dsp import JIT, polyblamp, polyblep, sin2pi, uniform, xorshift


@njit(**JIT)
def sine(a, b, sr, out, freq, amp, phase, acc):
    n = out.shape[1]
    inv = 1.0 / sr
    for t in range(a, b):
        for i in range(n):
            p = acc[i]
            out[t, i] = amp[t, i] * sin2pi(p + phase[t, i])
            p += freq[t, i] * inv
            acc[i] = p - math.floor(p)


@njit(**JIT)
def saw(a, b, sr, out, freq, amp, phase, acc):
    n = out.shape[1]
    inv = 1.0 / sr
    for t in range(a, b):
        for i in range(n):
            dt = min(abs(freq[t, i] * inv), 0.5)
            q = acc[i] + phase[t, i] + 0.5  # the jump sits half a cycle in: starts at 0, rising
            q -= math.floor(q)
            out[t, i] = amp[t, i] * (q + q - 1.0 - polyblep(q, dt))
            p = acc[i] + freq[t, i] * inv
            acc[i] = p - math.floor(p)


@njit(inline="always", **JIT)
def _pulse(p, w, dt):
    v = 1.0 if p < w else -1.0
    v += polyblep(p, dt)
    q = p - w
    q -= math.floor(q)
    return v - polyblep(q, dt)


@njit(**JIT)
def square(a, b, sr, out, freq, amp, phase, acc):
    n = out.shape[1]
    inv = 1.0 / sr
    for t in range(a, b):
        for i in range(n):
            dt = min(abs(freq[t, i] * inv), 0.5)
            q = acc[i] + phase[t, i]
            q -= math.floor(q)
            out[t, i] = amp[t, i] * _pulse(q, 0.5, dt)
            p = acc[i] + freq[t, i] * inv
            acc[i] = p - math.floor(p)


@njit(**JIT)
def pulse(a, b, sr, out, freq, amp, phase, width, acc):
    n = out.shape[1]
    inv = 1.0 / sr
    for t in range(a, b):
        for i in range(n):
            dt = min(abs(freq[t, i] * inv), 0.5)
            w = min(max(width[t, i], 0.01), 0.99)
            q = acc[i] + phase[t, i]
            q -= math.floor(q)
            out[t, i] = amp[t, i] * _pulse(q, w, dt)
            p = acc[i] + freq[t, i] * inv
            acc[i] = p - math.floor(p)


@njit(**JIT)
def triangle(a, b, sr, out, freq, amp, phase, acc):
    n = out.shape[1]
    inv = 1.0 / sr
    for t in range(a, b):
        for i in range(n):
            dt = min(abs(freq[t, i] * inv), 0.5)
            q = acc[i] + phase[t, i] + 0.25  # corners at q=0 (trough) and q=0.5 (peak)
            q -= math.floor(q)
            v = 1.0 - 4.0 * abs(q - 0.5)
            h = q + 0.5
            h -= math.floor(h)
            # slope turns by +8 per cycle at the trough and -8 at the peak
            v += 8.0 * dt * (polyblamp(q, dt) - polyblamp(h, dt))
            out[t, i] = amp[t, i] * v
            p = acc[i] + freq[t, i] * inv
            acc[i] = p - math.floor(p)


@njit(**JIT)
def white(a, b, sr, out, amp, rng, poles):
    # poles is unused: white and pink noise share one state layout
    n = out.shape[1]
    for t in range(a, b):
        for i in range(n):
            s = xorshift(rng[i])
            rng[i] = s
            out[t, i] = amp[t, i] * uniform(s)


@njit(**JIT)
def pink(a, b, sr, out, amp, rng, poles):
    # Paul Kellet's refined filter: white noise through 7 first-order sections,
    # within 0.05 dB of -3 dB/octave from 9 Hz to Nyquist at 44.1 kHz
    n = out.shape[1]
    for t in range(a, b):
        for i in range(n):
            s = xorshift(rng[i])
            rng[i] = s
            w = uniform(s)
            b0 = 0.99886 * poles[0, i] + w * 0.0555179
            b1 = 0.99332 * poles[1, i] + w * 0.0750759
            b2 = 0.96900 * poles[2, i] + w * 0.1538520
            b3 = 0.86650 * poles[3, i] + w * 0.3104856
            b4 = 0.55000 * poles[4, i] + w * 0.5329522
            b5 = -0.7616 * poles[5, i] - w * 0.0168980
            y = b0 + b1 + b2 + b3 + b4 + b5 + poles[6, i] + w * 0.5362
            poles[0, i] = b0
            poles[1, i] = b1
            poles[2, i] = b2
            poles[3, i] = b3
            poles[4, i] = b4
            poles[5, i] = b5
            poles[6, i] = w * 0.115926
            out[t, i] = amp[t, i] * 0.11 * y


@njit(**JIT)
def lfo(a, b, sr, out, freq, amp, offset, phase, acc, shape, rng, held):
    # shape: 0 sine, 1 triangle, 2 saw, 3 square, 4 sample-and-hold
    n = out.shape[1]
    inv = 1.0 / sr
    for t in range(a, b):
        for i in range(n):
            q = acc[i] + phase[t, i]
            q -= math.floor(q)
            k = shape[i]
            if k == 0:
                v = sin2pi(q)
            elif k == 1:
                r = q + 0.25
                r -= math.floor(r)
                v = 1.0 - 4.0 * abs(r - 0.5)
            elif k == 2:
                r = q + 0.5
                r -= math.floor(r)
                v = r + r - 1.0
            elif k == 3:
                v = 1.0 if q < 0.5 else -1.0
            else:
                v = held[i]
            out[t, i] = offset[t, i] + amp[t, i] * v
            p = acc[i] + freq[t, i] * inv
            wrapped = math.floor(p)
            acc[i] = p - wrapped
            if k == 4 and wrapped != 0.0:
                s = xorshift(rng[i])
                rng[i] = s
                held[i] = uniform(s)
