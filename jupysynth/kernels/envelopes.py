"""Envelope kernels: ADSR and AR driven by a gate signal.

A gate above zero opens the envelope at that very sample.  The attack is a
linear ramp from the current level (retriggering never clicks); decay and
release are exponential, covering 99.9 % (-60 dB) of the way to their target
in the given time, and the release snaps to exact zero below -100 dB so
silence is digital silence.
"""

from __future__ import annotations

import math

from numba import njit

from ._dsp import JIT

_LN_1000 = math.log(1000.0)
_FLOOR = 1e-5
IDLE, ATTACK, DECAY, RELEASE = 0, 1, 2, 3


@njit(inline="always", **JIT)
def _step(g, prev, level, stage, attack, decay, sustain, release, sr):
    if g and not prev:
        stage = ATTACK
    elif prev and not g:
        stage = RELEASE
    if stage == ATTACK:
        if attack * sr <= 1.0:
            level = 1.0
        else:
            level += 1.0 / (attack * sr)
        if level >= 1.0:
            level = 1.0
            stage = DECAY
    elif stage == DECAY:
        if decay * sr <= 1.0:
            level = sustain
        else:
            level = sustain + (level - sustain) * math.exp(-_LN_1000 / (decay * sr))
    elif stage == RELEASE:
        if release * sr <= 1.0:
            level = 0.0
        else:
            level *= math.exp(-_LN_1000 / (release * sr))
        if level < _FLOOR:
            level = 0.0
            stage = IDLE
    return level, stage


@njit(**JIT)
def adsr(a, b, sr, out, gate, attack, decay, sustain, release, level, stage, prev):
    n = out.shape[1]
    for t in range(a, b):
        for i in range(n):
            g = gate[t, i] > 0.0
            lv, st = _step(g, prev[i] != 0, level[i], stage[i], attack[t, i], decay[t, i],
                           min(max(sustain[t, i], 0.0), 1.0), release[t, i], sr)
            level[i] = lv
            stage[i] = st
            prev[i] = 1 if g else 0
            out[t, i] = lv


@njit(**JIT)
def ar(a, b, sr, out, gate, attack, release, level, stage, prev):
    n = out.shape[1]
    for t in range(a, b):
        for i in range(n):
            g = gate[t, i] > 0.0
            lv, st = _step(g, prev[i] != 0, level[i], stage[i], attack[t, i], 0.0, 1.0,
                           release[t, i], sr)
            level[i] = lv
            stage[i] = st
            prev[i] = 1 if g else 0
            out[t, i] = lv
