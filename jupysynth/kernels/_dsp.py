"""Inline DSP helpers shared by the kernels (compiled into each caller).

Audio math runs in float32 so the loop across instances fills 8 lanes of a
256-bit vector; phases are 32-bit unsigned accumulators (a DDS: wrap-around is
free and exact, frequency resolution samplerate / 2**32, 11 microhertz at 48 kHz).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# Only the fast-math flag that changes no value (the sign of a zero).  Fusing
# (contract), reassociating or using reciprocals (arcp) let LLVM compile the
# vectorised loop and its scalar remainder differently, so an instance's samples
# depended on its place in its group: on how many instances a worker renders.
# The loop across instances vectorises without them; NaN and inf keep their
# meaning, so a module producing NaN is still caught downstream.
FAST = {"nsz"}
JIT = {"cache": True, "nogil": True, "fastmath": FAST, "error_model": "numpy"}

F0 = np.float32(0.0)
F1 = np.float32(1.0)
F2 = np.float32(2.0)
HALF = np.float32(0.5)
QUARTER = np.float32(0.25)
TWO_PI = np.float32(2.0 * math.pi)
PI = np.float32(math.pi)
TWO32 = 4294967296.0
TURN = np.float32(2.0**-32)  # one unit of the phase accumulator, in cycles
QUARTER_TURN = np.uint32(0x40000000)
HALF_TURN = np.uint32(0x80000000)

# Taylor coefficients of sin(z)/z in z**2; on |z| <= pi/2 the float32 result
# is within 1e-7 of sin (a full-scale sine measures 144 dB SNR)
_S1 = np.float32(-1.0 / 6.0)
_S2 = np.float32(1.0 / 120.0)
_S3 = np.float32(-1.0 / 5040.0)
_S4 = np.float32(1.0 / 362880.0)
_S5 = np.float32(-1.0 / 39916800.0)


@njit(inline="always", **JIT)
def sin_turn(y):
    """sin(2*pi*y) for y in [-0.5, 0.5], branch-free so a loop of it vectorises."""
    y = min(y, HALF - y)  # fold onto [-0.25, 0.25] by symmetry
    y = max(y, -HALF - y)
    z = TWO_PI * y
    z2 = z * z
    return z * (F1 + z2 * (_S1 + z2 * (_S2 + z2 * (_S3 + z2 * (_S4 + z2 * _S5)))))


@njit(inline="always", **JIT)
def turn(p):
    """A phase accumulator value as a signed fraction of a cycle, in [-0.5, 0.5)."""
    return np.float32(np.int32(p)) * TURN


@njit(inline="always", **JIT)
def unit_turn(p):
    """A phase accumulator value as a fraction of a cycle in [0, 1)."""
    y = np.float32(np.int32(p)) * TURN
    return y + F1 if y < F0 else y


@njit(inline="always", **JIT)
def increment(freq, scale, limit):
    """The accumulator step for ``freq`` Hz (``scale`` = 2**32 / sr, float64), rounded, |f| < sr/2.

    The product needs 32 bits, more than float32 holds: computed in float64, every
    frequency is exact to the accumulator's resolution.
    """
    f = np.float64(min(max(freq, -limit), limit))
    return np.uint32(np.int32(np.floor(f * scale + 0.5)))


@njit(inline="always", **JIT)
def phase_offset(cycles):
    """A phase offset in cycles (any real) as an accumulator offset."""
    c = cycles - np.floor(cycles) - HALF  # [-0.5, 0.5): fits an int32 once scaled
    return np.uint32(np.uint32(np.int32(c * np.float32(TWO32))) + HALF_TURN)


@njit(inline="always", **JIT)
def tan_pi(f):
    """tan(pi*f) for 0 <= f < 0.5 (the bilinear prewarp); Pade [5/4], 1e-7 below 10 kHz."""
    x = PI * f
    x2 = x * x
    num = x * (np.float32(945.0) + x2 * (np.float32(-105.0) + x2))
    den = np.float32(945.0) + x2 * (np.float32(-420.0) + x2 * np.float32(15.0))
    return num / den


@njit(inline="always", **JIT)
def polyblep(t, dt):
    """Two-sample polynomial band-limited step residual (a step of height 2 at t=0)."""
    if t < dt:
        x = t / dt
        return x + x - x * x - F1
    if t > F1 - dt:
        x = (t - F1) / dt
        return x * x + x + x + F1
    return F0


@njit(inline="always", **JIT)
def polyblamp(t, dt):
    """Two-sample polynomial band-limited ramp residual (unit slope change per sample at t=0)."""
    if t < dt:
        u = F1 - t / dt
        return u * u * u * np.float32(1.0 / 6.0)
    if t > F1 - dt:
        u = F1 + (t - F1) / dt
        return u * u * u * np.float32(1.0 / 6.0)
    return F0


@njit(inline="always", **JIT)
def xorshift(s):
    """Next state of a 32-bit xorshift generator (state kept in a uint32 array)."""
    s = np.uint32(s)
    s ^= np.uint32(s << np.uint32(13))
    s ^= np.uint32(s >> np.uint32(17))
    s ^= np.uint32(s << np.uint32(5))
    return s


@njit(inline="always", **JIT)
def uniform(s):
    """Map a 32-bit state to a float32 in [-1, 1)."""
    return np.float32(np.int32(s)) * np.float32(2.0**-31)
