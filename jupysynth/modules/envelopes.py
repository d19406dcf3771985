"""Envelopes driven by a gate: open while the gate is above zero.

>>> from jupysynth import ADSR, LFO, Saw
>>> env = ADSR(gate=LFO(freq=2, shape="square"), attack=0.01, decay=0.2, sustain=0.5)
>>> pluck = Saw(freq=220) * env
"""

from __future__ import annotations

from ..graph import Module, Param, State

GATE = Param("gate", 0.0, -1e30, 1e30, "", "lin", "open while above zero")
ATTACK = Param("attack", 0.01, 0.0, 60.0, "s", "log", "linear rise from the current level to 1")
RELEASE = Param("release", 0.3, 0.0, 60.0, "s", "log", "time to fall 60 dB after the gate closes")
ENV_STATE = (State("level", "f8"), State("stage", "i4"), State("prev", "i4"))


class ADSR(Module):
    """Attack, decay, sustain, release.

    Decay and release are exponential (the time given covers 60 dB of the way),
    the attack linear; a new gate restarts the attack from the current level.

    >>> from jupysynth import ADSR
    >>> env = ADSR(attack=0.005, decay=0.3, sustain=0.4, release=0.5)
    """

    params = (
        GATE,
        ATTACK,
        Param("decay", 0.1, 0.0, 60.0, "s", "log", "time to fall 60 dB toward the sustain"),
        Param("sustain", 0.7, 0.0, 1.0, "", "lin", "level held while the gate is open"),
        RELEASE,
    )
    positional = ("gate",)
    state = ENV_STATE
    kernel = "envelopes.adsr"


class AR(Module):
    """Attack then hold at 1 while the gate is open, release when it closes.

    >>> from jupysynth import AR
    >>> env = AR(attack=0.002, release=0.2)
    """

    params = (GATE, ATTACK, RELEASE)
    positional = ("gate",)
    state = ENV_STATE
    kernel = "envelopes.ar"
