"""Group loops for modules written as a per-sample function (``sample = fn``).

The function is compiled by numba and called from these loops for every
instance and sample, so a module written in a cell is batched like the built-in
ones; numba inlines it, and a simple function vectorises across instances.
The loops take the function as an argument, so they are compiled once per
function (when the module is first rendered) and not cached on disk.
"""

from __future__ import annotations

from numba import njit

from ._dsp import FAST

_J = {"nogil": True, "fastmath": FAST, "error_model": "numpy"}


@njit(**_J)
def apply1(a, b, bus, n, out, cols, state, fn):
    c0 = cols[0]
    for t in range(a, b):
        o = bus[t, out : out + n]
        x0 = bus[t, c0 : c0 + n]
        for i in range(n):
            o[i] = fn(x0[i])


@njit(**_J)
def apply2(a, b, bus, n, out, cols, state, fn):
    c0, c1 = cols[0], cols[1]
    for t in range(a, b):
        o = bus[t, out : out + n]
        x0 = bus[t, c0 : c0 + n]
        x1 = bus[t, c1 : c1 + n]
        for i in range(n):
            o[i] = fn(x0[i], x1[i])


@njit(**_J)
def apply3(a, b, bus, n, out, cols, state, fn):
    c0, c1, c2 = cols[0], cols[1], cols[2]
    for t in range(a, b):
        o = bus[t, out : out + n]
        x0 = bus[t, c0 : c0 + n]
        x1 = bus[t, c1 : c1 + n]
        x2 = bus[t, c2 : c2 + n]
        for i in range(n):
            o[i] = fn(x0[i], x1[i], x2[i])


@njit(**_J)
def apply4(a, b, bus, n, out, cols, state, fn):
    c0, c1, c2, c3 = cols[0], cols[1], cols[2], cols[3]
    for t in range(a, b):
        o = bus[t, out : out + n]
        x0 = bus[t, c0 : c0 + n]
        x1 = bus[t, c1 : c1 + n]
        x2 = bus[t, c2 : c2 + n]
        x3 = bus[t, c3 : c3 + n]
        for i in range(n):
            o[i] = fn(x0[i], x1[i], x2[i], x3[i])


# stateful: fn(slots, *inputs) where slots is the instance's column of float64 state


@njit(**_J)
def apply1_state(a, b, bus, n, out, cols, state, fn):
    c0 = cols[0]
    for t in range(a, b):
        o = bus[t, out : out + n]
        x0 = bus[t, c0 : c0 + n]
        for i in range(n):
            o[i] = fn(state[:, i], x0[i])


@njit(**_J)
def apply2_state(a, b, bus, n, out, cols, state, fn):
    c0, c1 = cols[0], cols[1]
    for t in range(a, b):
        o = bus[t, out : out + n]
        x0 = bus[t, c0 : c0 + n]
        x1 = bus[t, c1 : c1 + n]
        for i in range(n):
            o[i] = fn(state[:, i], x0[i], x1[i])


@njit(**_J)
def apply3_state(a, b, bus, n, out, cols, state, fn):
    c0, c1, c2 = cols[0], cols[1], cols[2]
    for t in range(a, b):
        o = bus[t, out : out + n]
        x0 = bus[t, c0 : c0 + n]
        x1 = bus[t, c1 : c1 + n]
        x2 = bus[t, c2 : c2 + n]
        for i in range(n):
            o[i] = fn(state[:, i], x0[i], x1[i], x2[i])


@njit(**_J)
def apply4_state(a, b, bus, n, out, cols, state, fn):
    c0, c1, c2, c3 = cols[0], cols[1], cols[2], cols[3]
    for t in range(a, b):
        o = bus[t, out : out + n]
        x0 = bus[t, c0 : c0 + n]
        x1 = bus[t, c1 : c1 + n]
        x2 = bus[t, c2 : c2 + n]
        x3 = bus[t, c3 : c3 + n]
        for i in range(n):
            o[i] = fn(state[:, i], x0[i], x1[i], x2[i], x3[i])


LOOPS = {
    (1, False): apply1,
    (2, False): apply2,
    (3, False): apply3,
    (4, False): apply4,
    (1, True): apply1_state,
    (2, True): apply2_state,
    (3, True): apply3_state,
    (4, True): apply4_state,
}
