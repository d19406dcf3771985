"""Compile every kernel ahead of time, so no first render (and no audio block) waits for it.

numba compiles a kernel the first time it is called and caches the machine code
on disk; this renders one block of a patch that uses every module type, which
fills that cache (seconds, once per installation) or loads it (milliseconds).

>>> from jupysynth.warmup import warmup
>>> seconds = warmup()
"""

from __future__ import annotations

import time

from . import modules as m
from .graph import Mix, Module


def _everything() -> list[Module]:
    lfo = m.LFO(freq=2.0, shape="square")
    saw = m.Saw(freq=110)
    fb = m.Feedback()
    looped = m.LowPass(saw + 0.5 * fb, cutoff=800, q=2)
    fb.input = looped
    voices: list[Module] = [
        m.Sine(freq=220) * m.ADSR(gate=lfo),
        m.Square(freq=110) * m.AR(gate=lfo),
        m.Triangle(freq=330),
        m.Pulse(freq=55, width=0.3),
        m.Noise(color="white"),
        m.Noise(color="pink"),
        m.HighPass(m.Noise(), cutoff=2000),
        m.BandPass(saw, cutoff=1000),
        m.Notch(saw, cutoff=1000),
        m.Gain(m.Delay(saw, time=0.01, max_time=0.02), gain=0.5),
        looped,
    ]
    return [Mix(*voices), m.Pan(saw, pos=0.3)]


def warmup(verbose: bool = False) -> float:
    """Compile (or load from the disk cache) every kernel; returns the seconds it took."""
    from .renderer import render

    t = time.perf_counter()
    render(_everything(), seconds=0.01, blocksize=64)
    took = time.perf_counter() - t
    if verbose:
        print(f"jupysynth kernels ready in {took:.2f} s")
    return took
