"""Kernels that move samples around the block bus (no module behind them)."""

from __future__ import annotations

import math

from numba import njit

from ._dsp import JIT


@njit(**JIT)
def gather(a, b, bus, dst, slots, vals):
    """bus[t, dst + i] = bus[t, slots[i]], or vals[i] where slots[i] < 0 (a number)."""
    n = slots.shape[0]
    for t in range(a, b):
        row = bus[t]
        for i in range(n):
            s = slots[i]
            row[dst + i] = row[s] if s >= 0 else vals[i]


@njit(**JIT)
def fill(bus, start, vals):
    """Every row of columns start.. start+len(vals) holds vals (constant parameters)."""
    n = vals.shape[0]
    for t in range(bus.shape[0]):
        row = bus[t, start : start + n]
        for i in range(n):
            row[i] = vals[i]


@njit(**JIT)
def ramp(a, b, bus, start, old, new):
    """A linear ramp from old to new across frames a..b, arriving at b-1."""
    n = old.shape[0]
    span = b - a
    for t in range(a, b):
        f = (t - a + 1) / span
        row = bus[t, start : start + n]
        for i in range(n):
            row[i] = old[i] + (new[i] - old[i]) * f


@njit(inline="always", **JIT)
def _sum_slots(row, slots):
    """The sum of row[slots[k]] in float64 over eight lanes (lane k % 8, then a fixed
    tree): defined by the order of ``slots`` alone, and eight additions in flight."""
    m = slots.shape[0]
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    k = 0
    while k + 8 <= m:
        s0 += row[slots[k]]
        s1 += row[slots[k + 1]]
        s2 += row[slots[k + 2]]
        s3 += row[slots[k + 3]]
        s4 += row[slots[k + 4]]
        s5 += row[slots[k + 5]]
        s6 += row[slots[k + 6]]
        s7 += row[slots[k + 7]]
        k += 8
    if k < m:
        s0 += row[slots[k]]
    if k + 1 < m:
        s1 += row[slots[k + 1]]
    if k + 2 < m:
        s2 += row[slots[k + 2]]
    if k + 3 < m:
        s3 += row[slots[k + 3]]
    if k + 4 < m:
        s4 += row[slots[k + 4]]
    if k + 5 < m:
        s5 += row[slots[k + 5]]
    if k + 6 < m:
        s6 += row[slots[k + 6]]
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@njit(**JIT)
def mix_out(a, b, bus, left, right, out):
    """Sum the output slots into the stereo block."""
    for t in range(a, b):
        row = bus[t]
        out[t, 0] = _sum_slots(row, left)
        out[t, 1] = _sum_slots(row, right)


@njit(**JIT)
def all_finite(x, a, b):
    """True if rows a..b of a 2-D array hold no NaN or infinity."""
    for t in range(a, b):
        for i in range(x.shape[1]):
            if not math.isfinite(x[t, i]):
                return False
    return True


@njit(**JIT)
def scrub(x):
    """Replace NaN and infinities by zero in place (a 1-D view); returns how many."""
    count = 0
    for i in range(x.size):
        if not math.isfinite(x[i]):
            x[i] = 0.0
            count += 1
    return count


@njit(**JIT)
def mix_out_fade(a, b, bus, left, right, lmode, rmode, pos, length, out):
    """Sum the output slots, fading some in or out: mode 0 steady, 1 out, 2 in (linear)."""
    for t in range(a, b):
        x = min((pos + t - a + 1) / length, 1.0)
        acc = 0.0
        for k in range(left.shape[0]):
            m = lmode[k]
            g = 1.0 if m == 0 else (1.0 - x if m == 1 else x)
            acc += g * bus[t, left[k]]
        out[t, 0] = acc
        acc = 0.0
        for k in range(right.shape[0]):
            m = rmode[k]
            g = 1.0 if m == 0 else (1.0 - x if m == 1 else x)
            acc += g * bus[t, right[k]]
        out[t, 1] = acc


@njit(**JIT)
def hold(a, b, sr, bus, n, out):
    """The kernel of an imported signal: its columns are written from outside, nothing to do."""
    return


@njit(**JIT)
def copy_runs(frames, src, runs, dst):
    """Copy column runs: runs[r] = (first source column, first destination column, count)."""
    for t in range(frames):
        s = src[t]
        d = dst[t]
        for r in range(runs.shape[0]):
            a = runs[r, 0]
            b = runs[r, 1]
            n = runs[r, 2]
            if n < 16:
                for k in range(n):
                    d[b + k] = s[a + k]
            else:
                d[b : b + n] = s[a : a + n]


def column_runs(src_cols, dst_cols):
    """Pairs of columns merged into ``copy_runs`` runs where both sides are consecutive."""
    import numpy as np

    runs = []
    for a, b in zip(src_cols, dst_cols):
        a, b = int(a), int(b)
        if runs and runs[-1][0] + runs[-1][2] == a and runs[-1][1] + runs[-1][2] == b:
            runs[-1][2] += 1
        else:
            runs.append([a, b, 1])
    return np.asarray(runs, dtype=np.int64).reshape(-1, 3)


@njit(**JIT)
def all_sane(x, a, b, limit):
    """True if rows a..b of a 2-D array hold only finite values no larger than ``limit``."""
    for t in range(a, b):
        for i in range(x.shape[1]):
            if not abs(x[t, i]) <= limit:  # NaN compares false too
                return False
    return True


@njit(**JIT)
def safety_limit(x, n, gain, ceiling, release, on):
    """Keep rows 0..n of a stereo block within +-ceiling; True if it turned anything down.

    ``on``: a peak limiter with instant attack (no look-ahead, so no latency) and
    a release of ``release`` per frame (the gain's step towards 1); the channels
    share one gain, ``gain[0]``, kept between blocks.  Exactly transparent while
    the gain is 1 and no sample exceeds the ceiling.  Off, or after it: a hard
    clip at +-1, so no device is ever sent more than full scale.
    """
    g = gain[0]
    engaged = False
    for t in range(n):
        if on:
            peak = max(abs(x[t, 0]), abs(x[t, 1]))
            want = ceiling / peak if peak > ceiling else 1.0
            if want < g:
                g = want
                engaged = True
            elif g < 1.0:
                g = g + (want - g) * release
                if g > 0.999999:
                    g = 1.0
            if g < 1.0:
                x[t, 0] *= g
                x[t, 1] *= g
        for c in range(2):
            if x[t, c] > 1.0:
                x[t, c] = 1.0
            elif x[t, c] < -1.0:
                x[t, c] = -1.0
    gain[0] = g
    return engaged


@njit(**JIT)
def lane_ends(bus, row, left, right, per, ends):
    """Each worker's share of the output at frame ``row``: ``ends[slot] = (left, right)``,
    summed over the lanes in its column range (``per`` columns a slot, column 0 none)."""
    ends[:] = 0.0
    for k in range(left.shape[0]):
        c = left[k]
        if c > 0:
            ends[(c - 1) // per, 0] += bus[row, c]
    for k in range(right.shape[0]):
        c = right[k]
        if c > 0:
            ends[(c - 1) // per, 1] += bus[row, c]


@njit(**JIT)
def ramp_out(out, frames, left, right):
    """Add a line from (``left``, ``right``) down to zero over ``frames`` to ``out``: what
    a part that stopped arriving was playing, faded instead of cut."""
    for t in range(frames):
        g = 1.0 - (t + 1) / frames
        out[t, 0] += g * left
        out[t, 1] += g * right
