"""Oscillator kernels: sine, band-limited saw/square/triangle/pulse, noise, LFO.

Every kernel: ``(a, b, sr, bus, n, out, *params, *state)`` where ``out`` and each
parameter are the first bus column of ``n`` adjacent ones (see kernels/__init__).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._dsp import (
    F0,
    F1,
    HALF,
    HALF_TURN,
    JIT,
    QUARTER_TURN,
    TWO32,
    increment,
    phase_offset,
    polyblamp,
    polyblep,
    sin_turn,
    turn,
    uniform,
    unit_turn,
    xorshift,
)


@njit(inline="always", **JIT)
def _hold(a, sr, bus, n, freq, phase, inc, pofs, dts):
    """Per-instance step, phase offset and normalised frequency, for a span with fixed pitch."""
    scale = TWO32 / sr
    limit = np.float32(0.4999 * sr)
    inv = np.float32(1.0 / sr)
    fr = bus[a, freq : freq + n]
    ph = bus[a, phase : phase + n]
    for i in range(n):
        inc[i] = increment(fr[i], scale, limit)
        pofs[i] = phase_offset(ph[i])
        dts[i] = min(abs(fr[i] * inv), HALF)


# Each oscillator has two entry points sharing one body: the general one reads
# frequency and phase per sample (FM, PM); the "fixed" one, which the renderer
# picks while both are numbers, converts them once per span.  Same output.


@njit(inline="always", **JIT)
def _sine(a, b, sr, bus, n, out, freq, amp, phase, acc, inc, pofs, dts, fixed):
    scale = TWO32 / sr
    limit = np.float32(0.4999 * sr)
    if fixed:
        _hold(a, sr, bus, n, freq, phase, inc, pofs, dts)
    for t in range(a, b):
        o = bus[t, out : out + n]
        am = bus[t, amp : amp + n]
        if fixed:
            for i in range(n):
                o[i] = am[i] * sin_turn(turn(np.uint32(acc[i] + pofs[i])))
                acc[i] = np.uint32(acc[i] + inc[i])
        else:
            fr = bus[t, freq : freq + n]
            ph = bus[t, phase : phase + n]
            for i in range(n):
                o[i] = am[i] * sin_turn(turn(np.uint32(acc[i] + phase_offset(ph[i]))))
                acc[i] = np.uint32(acc[i] + increment(fr[i], scale, limit))


@njit(**JIT)
def sine(a, b, sr, bus, n, out, freq, amp, phase, acc, inc, pofs, dts):
    _sine(a, b, sr, bus, n, out, freq, amp, phase, acc, inc, pofs, dts, False)


@njit(**JIT)
def sine_fixed(a, b, sr, bus, n, out, freq, amp, phase, acc, inc, pofs, dts):
    _sine(a, b, sr, bus, n, out, freq, amp, phase, acc, inc, pofs, dts, True)


@njit(inline="always", **JIT)
def _saw(a, b, sr, bus, n, out, freq, amp, phase, acc, inc, pofs, dts, fixed):
    scale = TWO32 / sr
    limit = np.float32(0.4999 * sr)
    inv = np.float32(1.0 / sr)
    if fixed:
        _hold(a, sr, bus, n, freq, phase, inc, pofs, dts)
    for t in range(a, b):
        o = bus[t, out : out + n]
        am = bus[t, amp : amp + n]
        if fixed:
            for i in range(n):
                dt = dts[i]
                y = turn(np.uint32(acc[i] + pofs[i]))  # 0 at the start, rising; jumps at 0.5
                o[i] = am[i] * (y + y - polyblep(y + HALF, dt))
                acc[i] = np.uint32(acc[i] + inc[i])
        else:
            fr = bus[t, freq : freq + n]
            ph = bus[t, phase : phase + n]
            for i in range(n):
                dt = min(abs(fr[i] * inv), HALF)
                y = turn(np.uint32(acc[i] + phase_offset(ph[i])))
                o[i] = am[i] * (y + y - polyblep(y + HALF, dt))
                acc[i] = np.uint32(acc[i] + increment(fr[i], scale, limit))


@njit(**JIT)
def saw(a, b, sr, bus, n, out, freq, amp, phase, acc, inc, pofs, dts):
    _saw(a, b, sr, bus, n, out, freq, amp, phase, acc, inc, pofs, dts, False)


@njit(**JIT)
def saw_fixed(a, b, sr, bus, n, out, freq, amp, phase, acc, inc, pofs, dts):
    _saw(a, b, sr, bus, n, out, freq, amp, phase, acc, inc, pofs, dts, True)


@njit(inline="always", **JIT)
def _pulse(t, w, dt):
    v = F1 if t < w else -F1
    v += polyblep(t, dt)
    q = t - w
    q = q + F1 if q < F0 else q
    return v - polyblep(q, dt)


@njit(inline="always", **JIT)
def _pulses(a, b, sr, bus, n, out, freq, amp, phase, width, acc, inc, pofs, dts, fixed):
    # width < 0 means a square (no width parameter column)
    scale = TWO32 / sr
    limit = np.float32(0.4999 * sr)
    inv = np.float32(1.0 / sr)
    lo = np.float32(0.01)
    hi = np.float32(0.99)
    if fixed:
        _hold(a, sr, bus, n, freq, phase, inc, pofs, dts)
    for t in range(a, b):
        o = bus[t, out : out + n]
        am = bus[t, amp : amp + n]
        wd = bus[t, width : width + n] if width >= 0 else am
        if fixed:
            for i in range(n):
                w = min(max(wd[i], lo), hi) if width >= 0 else HALF
                u = unit_turn(np.uint32(acc[i] + pofs[i]))
                o[i] = am[i] * _pulse(u, w, dts[i])
                acc[i] = np.uint32(acc[i] + inc[i])
        else:
            fr = bus[t, freq : freq + n]
            ph = bus[t, phase : phase + n]
            for i in range(n):
                dt = min(abs(fr[i] * inv), HALF)
                w = min(max(wd[i], lo), hi) if width >= 0 else HALF
                u = unit_turn(np.uint32(acc[i] + phase_offset(ph[i])))
                o[i] = am[i] * _pulse(u, w, dt)
                acc[i] = np.uint32(acc[i] + increment(fr[i], scale, limit))


@njit(**JIT)
def square(a, b, sr, bus, n, out, freq, amp, phase, acc, inc, pofs, dts):
    _pulses(a, b, sr, bus, n, out, freq, amp, phase, -1, acc, inc, pofs, dts, False)


@njit(**JIT)
def square_fixed(a, b, sr, bus, n, out, freq, amp, phase, acc, inc, pofs, dts):
    _pulses(a, b, sr, bus, n, out, freq, amp, phase, -1, acc, inc, pofs, dts, True)


@njit(**JIT)
def pulse(a, b, sr, bus, n, out, freq, amp, phase, width, acc, inc, pofs, dts):
    _pulses(a, b, sr, bus, n, out, freq, amp, phase, width, acc, inc, pofs, dts, False)


@njit(**JIT)
def pulse_fixed(a, b, sr, bus, n, out, freq, amp, phase, width, acc, inc, pofs, dts):
    _pulses(a, b, sr, bus, n, out, freq, amp, phase, width, acc, inc, pofs, dts, True)


@njit(inline="always", **JIT)
def _triangle(a, b, sr, bus, n, out, freq, amp, phase, acc, inc, pofs, dts, fixed):
    scale = TWO32 / sr
    limit = np.float32(0.4999 * sr)
    inv = np.float32(1.0 / sr)
    four = np.float32(4.0)
    eight = np.float32(8.0)
    if fixed:
        _hold(a, sr, bus, n, freq, phase, inc, pofs, dts)
    for t in range(a, b):
        o = bus[t, out : out + n]
        am = bus[t, amp : amp + n]
        fr = bus[t, freq : freq + n]
        ph = bus[t, phase : phase + n]
        for i in range(n):
            if fixed:
                dt = dts[i]
                p = np.uint32(acc[i] + pofs[i])
            else:
                dt = min(abs(fr[i] * inv), HALF)
                p = np.uint32(acc[i] + phase_offset(ph[i]))
            # a quarter cycle ahead, so the trough is at q=0 and the peak at q=0.5
            q0 = np.uint32(p + QUARTER_TURN)
            q = unit_turn(q0)
            h = unit_turn(np.uint32(q0 + HALF_TURN))
            v = F1 - four * abs(q - HALF)
            # the slope turns by +8 per cycle at the trough and by -8 at the peak
            v += eight * dt * (polyblamp(q, dt) - polyblamp(h, dt))
            o[i] = am[i] * v
            if fixed:
                acc[i] = np.uint32(acc[i] + inc[i])
            else:
                acc[i] = np.uint32(acc[i] + increment(fr[i], scale, limit))


@njit(**JIT)
def triangle(a, b, sr, bus, n, out, freq, amp, phase, acc, inc, pofs, dts):
    _triangle(a, b, sr, bus, n, out, freq, amp, phase, acc, inc, pofs, dts, False)


@njit(**JIT)
def triangle_fixed(a, b, sr, bus, n, out, freq, amp, phase, acc, inc, pofs, dts):
    _triangle(a, b, sr, bus, n, out, freq, amp, phase, acc, inc, pofs, dts, True)


@njit(**JIT)
def white(a, b, sr, bus, n, out, amp, rng, poles):
    # poles is unused: white and pink noise share one state layout
    for t in range(a, b):
        o = bus[t, out : out + n]
        am = bus[t, amp : amp + n]
        for i in range(n):
            s = xorshift(rng[i])
            rng[i] = s
            o[i] = am[i] * uniform(s)


_K = (
    np.float32(0.99886),
    np.float32(0.0555179),
    np.float32(0.99332),
    np.float32(0.0750759),
    np.float32(0.96900),
    np.float32(0.1538520),
    np.float32(0.86650),
    np.float32(0.3104856),
    np.float32(0.55000),
    np.float32(0.5329522),
    np.float32(-0.7616),
    np.float32(0.0168980),
    np.float32(0.5362),
    np.float32(0.115926),
    np.float32(0.11),
)


@njit(**JIT)
def pink(a, b, sr, bus, n, out, amp, rng, poles):
    # Paul Kellet's refined filter: white noise through 7 first-order sections,
    # within 0.05 dB of -3 dB/octave above 9 Hz
    k = _K
    for t in range(a, b):
        o = bus[t, out : out + n]
        am = bus[t, amp : amp + n]
        for i in range(n):
            s = xorshift(rng[i])
            rng[i] = s
            w = uniform(s)
            b0 = k[0] * poles[0, i] + w * k[1]
            b1 = k[2] * poles[1, i] + w * k[3]
            b2 = k[4] * poles[2, i] + w * k[5]
            b3 = k[6] * poles[3, i] + w * k[7]
            b4 = k[8] * poles[4, i] + w * k[9]
            b5 = k[10] * poles[5, i] - w * k[11]
            y = b0 + b1 + b2 + b3 + b4 + b5 + poles[6, i] + w * k[12]
            poles[0, i] = b0
            poles[1, i] = b1
            poles[2, i] = b2
            poles[3, i] = b3
            poles[4, i] = b4
            poles[5, i] = b5
            poles[6, i] = w * k[13]
            o[i] = am[i] * k[14] * y


@njit(**JIT)
def lfo(a, b, sr, bus, n, out, freq, amp, offset, phase, acc, shape, rng, held):
    # shape: 0 sine, 1 triangle, 2 saw, 3 square, 4 sample-and-hold
    scale = TWO32 / sr
    limit = np.float32(0.4999 * sr)
    four = np.float32(4.0)
    for t in range(a, b):
        o = bus[t, out : out + n]
        fr = bus[t, freq : freq + n]
        am = bus[t, amp : amp + n]
        of = bus[t, offset : offset + n]
        ph = bus[t, phase : phase + n]
        for i in range(n):
            p = np.uint32(acc[i] + phase_offset(ph[i]))
            k = shape[i]
            if k == 0:
                v = sin_turn(turn(p))
            elif k == 1:
                v = F1 - four * abs(unit_turn(np.uint32(p + QUARTER_TURN)) - HALF)
            elif k == 2:
                y = turn(p)
                v = y + y
            elif k == 3:
                v = F1 if unit_turn(p) < HALF else -F1
            else:
                v = held[i]
            o[i] = of[i] + am[i] * v
            nxt = np.uint32(acc[i] + increment(fr[i], scale, limit))
            if k == 4 and nxt < acc[i]:  # wrapped: a new cycle, a new random value
                s = xorshift(rng[i])
                rng[i] = s
                held[i] = uniform(s)
            acc[i] = nxt
