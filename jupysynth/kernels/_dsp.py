"""Inline DSP helpers shared by the kernels (compiled into each caller)."""

from __future__ import annotations

import math

from numba import njit

# Fast-math flags that let LLVM vectorise and fuse but keep NaN/inf semantics,
# so a module that produces NaN is still caught downstream.
FAST = {"nsz", "arcp", "contract", "reassoc"}
JIT = {"cache": True, "nogil": True, "fastmath": FAST, "error_model": "numpy"}

TWO_PI = 2.0 * math.pi

# Taylor coefficients of sin(z)/z in z**2, exact to 7e-10 on |z| <= pi/2
_S1 = -1.0 / 6.0
_S2 = 1.0 / 120.0
_S3 = -1.0 / 5040.0
_S4 = 1.0 / 362880.0
_S5 = -1.0 / 39916800.0
_S6 = 1.0 / 6227020800.0


@njit(inline="always", **JIT)
def sin2pi(x):
    """sin(2*pi*x) for any x, branch-free so a loop of it vectorises (error < 1e-9)."""
    y = x - math.floor(x + 0.5)  # [-0.5, 0.5)
    y = min(y, 0.5 - y)  # fold onto [-0.25, 0.25] by symmetry
    y = max(y, -0.5 - y)
    z = TWO_PI * y
    z2 = z * z
    return z * (1.0 + z2 * (_S1 + z2 * (_S2 + z2 * (_S3 + z2 * (_S4 + z2 * (_S5 + z2 * _S6))))))


@njit(inline="always", **JIT)
def tan_pi(f):
    """tan(pi*f) for 0 <= f < 0.5 (the bilinear-transform prewarp)."""
    h = 0.5 * f
    return sin2pi(h) / sin2pi(h + 0.25)


@njit(inline="always", **JIT)
def polyblep(t, dt):
    """Two-sample polynomial band-limited step residual (step of height 2 at t=0)."""
    if t < dt:
        x = t / dt
        return x + x - x * x - 1.0
    if t > 1.0 - dt:
        x = (t - 1.0) / dt
        return x * x + x + x + 1.0
    return 0.0


@njit(inline="always", **JIT)
def polyblamp(t, dt):
    """Two-sample polynomial band-limited ramp residual (unit slope change per sample at t=0)."""
    if t < dt:
        u = 1.0 - t / dt
        return u * u * u / 6.0
    if t > 1.0 - dt:
        u = 1.0 + (t - 1.0) / dt
        return u * u * u / 6.0
    return 0.0


@njit(inline="always", **JIT)
def xorshift(s):
    """Next state of a 32-bit xorshift generator (state kept in a uint32 array)."""
    s ^= (s << 13) & 0xFFFFFFFF
    s ^= s >> 17
    s ^= (s << 5) & 0xFFFFFFFF
    return s


@njit(inline="always", **JIT)
def uniform(s):
    """Map a 32-bit state to a float in [-1, 1)."""
    return (s >> 8) * (2.0 / 16777216.0) - 1.0
