"""The three reference patches of the render benchmark, built with jupysynth.

Voice i of N plays f_i = 110 * 2**(4*i/N) Hz (four octaves up from A2).
"""

from __future__ import annotations

import jupysynth as js


def freqs(n: int) -> list[float]:
    return [110.0 * 2.0 ** (4.0 * i / n) for i in range(n)]


def p1(n: int) -> js.Module:
    """N sines, summed, amplitude 1/N each."""
    return js.Mix(*[js.Sine(freq=f, amp=1.0 / n) for f in freqs(n)])


def p2(n: int) -> js.Module:
    """N band-limited saws, each through its own resonant low-pass (1 kHz, Q 2), summed."""
    return js.Mix(*[js.LowPass(js.Saw(freq=f, amp=1.0 / n), cutoff=1000, q=2) for f in freqs(n)])


def p3(n: int) -> js.Module:
    """As P2, each cutoff 1000 + 500*sin(2*pi*(0.5*t + i/N)) from its own LFO, per sample."""
    voices = []
    for i, f in enumerate(freqs(n)):
        lfo = js.Sine(freq=0.5, phase=i / n)
        voices.append(js.LowPass(js.Saw(freq=f, amp=1.0 / n), cutoff=1000 + 500 * lfo, q=2))
    return js.Mix(*voices)


PATCHES = {"P1": p1, "P2": p2, "P3": p3}
