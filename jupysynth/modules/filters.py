"""Resonant state-variable filters; cutoff and Q follow a signal per sample.

>>> from jupysynth import LowPass, Saw, Sine
>>> acid = LowPass(Saw(freq=55), cutoff=800 + 600 * Sine(freq=0.25), q=6)
"""

from __future__ import annotations

from ..graph import Module, Param, State

INPUT = Param("input", 0.0, -1e30, 1e30, "", "lin", "the signal to filter")
CUTOFF = Param("cutoff", 1000.0, 1.0, 100000.0, "Hz", "log", "cutoff (centre) frequency")
Q = Param("q", 0.707, 0.05, 100.0, "", "log", "resonance: gain at the cutoff")
SVF_STATE = (State("ic1", "f4"), State("ic2", "f4"))


class _SVF(Module):
    params = (INPUT, CUTOFF, Q)
    positional = ("input", "cutoff", "q")
    state = SVF_STATE


class LowPass(_SVF):
    """12 dB/octave resonant low-pass; its gain at ``cutoff`` is ``q``.

    >>> from jupysynth import LowPass, Saw
    >>> warm = LowPass(Saw(freq=110), cutoff=800, q=2)
    """

    kernel = "filters.lowpass"


class HighPass(_SVF):
    """12 dB/octave resonant high-pass; its gain at ``cutoff`` is ``q``.

    >>> from jupysynth import HighPass, Noise
    >>> hats = HighPass(Noise(amp=0.3), cutoff=7000)
    """

    kernel = "filters.highpass"


class BandPass(_SVF):
    """Band-pass with unity gain at ``cutoff``; ``q`` sets how narrow.

    >>> from jupysynth import BandPass, Noise
    >>> wind = BandPass(Noise(), cutoff=600, q=8)
    """

    kernel = "filters.bandpass"


class Notch(_SVF):
    """Band-reject: zero gain at ``cutoff``, ``q`` sets how narrow.

    >>> from jupysynth import Notch, Saw
    >>> hollow = Notch(Saw(freq=110), cutoff=1200, q=1)
    """

    kernel = "filters.notch"
