"""Envelope kernels: ADSR and AR driven by a gate signal.

A gate above zero opens the envelope at that very sample.  The attack is a
linear ramp from the current level (retriggering never clicks); decay and
release are exponential, covering 99.9 % (-60 dB) of the way to their target
in the given time, and the release snaps to exact zero below -100 dB so
silence is digital silence.  Levels are float64: a 10 s attack adds 480 000
increments and must still land on 1.
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
def adsr(a, b, sr, bus, n, out, gate, attack, decay, sustain, release, level, stage, prev):
    for t in range(a, b):
        o = bus[t, out : out + n]
        gt = bus[t, gate : gate + n]
        at = bus[t, attack : attack + n]
        dc = bus[t, decay : decay + n]
        su = bus[t, sustain : sustain + n]
        rl = bus[t, release : release + n]
        for i in range(n):
            g = gt[i] > 0.0
            lv, st = _step(
                g,
                prev[i] != 0,
                level[i],
                stage[i],
                float(at[i]),
                float(dc[i]),
                min(max(float(su[i]), 0.0), 1.0),
                float(rl[i]),
                sr,
            )
            level[i] = lv
            stage[i] = st
            prev[i] = 1 if g else 0
            o[i] = lv


@njit(**JIT)
def ar(a, b, sr, bus, n, out, gate, attack, release, level, stage, prev):
    for t in range(a, b):
        o = bus[t, out : out + n]
        gt = bus[t, gate : gate + n]
        at = bus[t, attack : attack + n]
        rl = bus[t, release : release + n]
        for i in range(n):
            g = gt[i] > 0.0
            lv, st = _step(
                g, prev[i] != 0, level[i], stage[i], float(at[i]), 0.0, 1.0, float(rl[i]), sr
            )
            level[i] = lv
            stage[i] = st
            prev[i] = 1 if g else 0
            o[i] = lv
