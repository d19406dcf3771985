"""Compile every kernel ahead of time, so no first render (and no audio block) waits for it.

numba compiles a kernel the first time it is called and caches the machine code
on disk; this renders one block of a patch that uses every module type, which
fills that cache (seconds, once per installation) or loads it (milliseconds).

A live engine also calls :func:`warm_live`: a kernel first called inside a block
loads its machine code there (2 ms, most of a 2.7 ms block), and a live patch
reaches kernels a fixed render never does: every module's general kernel (a
number that becomes a signal), a knob's glide, a crossfade, a group whose
members read a parameter from different places, a muted module's clean-up.

>>> from jupysynth.warmup import warmup
>>> seconds = warmup()
"""

from __future__ import annotations

import time
import warnings

from . import modules as m
from .graph import Mix, Module, MulAdd, module_types, snapshot


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


def _signals_everywhere() -> Module:
    """Every module type with each of its signal parameters driven by a signal."""
    from .kernels.arith import CHUNK

    voices = []
    for cls in module_types().values():
        if cls.reads_bus:  # Mix, and a split Mix's parts (warmed by the worker)
            continue
        kwargs = {p.name: MulAdd(m.Sine(freq=1.0), 0.0, p.default) for p in cls.params if p.signal}
        voices.append(cls(**kwargs))
    ports = [v if v.channels == 1 else v.left for v in voices]
    ports += [ports[0]] * max(0, CHUNK + 1 - len(ports))  # the chunked sum too
    return Mix(*ports, amp=MulAdd(m.Sine(freq=1.0), 0.0, 0.0))


def warm_live(samplerate: int, blocksize: int) -> float:
    """Call every kernel a live patch may switch to, at the engine's block size; seconds taken.

    Every module's general kernel (parameters driven by signals), a knob's glide
    (``bus.ramp``, ``bus.fill``), a crossfade (``bus.mix_out_fade``), a group
    whose members read one parameter from different places (``bus.gather``),
    and a module muted for an absurd output (``bus.scrub``).
    """
    from .renderer import Renderer, render

    t = time.perf_counter()
    render(_signals_everywhere(), blocksize / samplerate, samplerate, blocksize)
    lfo = m.Sine(freq=3.0)
    mixed = [m.Sine(freq=220.0), m.Sine(freq=MulAdd(lfo, 10.0, 330.0))]  # one group, gathered
    r = Renderer(*snapshot(mixed), samplerate, blocksize)
    r.process(blocksize)
    knob = next(i for i, spec in r.nodes.items() if spec.values.get("freq") == 220.0)
    r.set(knob, "freq", 221.0, ramp=True)  # a knob turned: the glide
    r.process(blocksize)
    r.process(blocksize)
    # a cell run again: the new patch crossfades in over two blocks
    r.update(*snapshot([m.Saw(freq=110.0), m.Sine(freq=MulAdd(lfo, 10.0, 330.0))]), 2 * blocksize)
    for _ in range(3):
        r.process(blocksize)
    with warnings.catch_warnings():  # a module muted: its group's state is scrubbed
        warnings.simplefilter("ignore")
        r.update(*snapshot([m.Gain(m.Gain(m.Sine(freq=220.0), gain=1e6), gain=1e6)]))
        r.process(blocksize)
    return time.perf_counter() - t
