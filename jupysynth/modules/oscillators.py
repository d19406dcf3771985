"""Oscillators: the sources of a patch.

>>> from jupysynth import Sine, Saw
>>> tone = Saw(freq=110, amp=0.3) + Sine(freq=220, amp=0.2)
"""

from __future__ import annotations

from typing import Any

from ..graph import Module, NodeSpec, Param, State

FREQ = Param("freq", 440.0, 0.0, 100000.0, "Hz", "log", "frequency")
AMP = Param("amp", 1.0, -1e6, 1e6, "", "lin", "peak amplitude")
PHASE = Param("phase", 0.0, 0.0, 1.0, "cycles", "lin", "phase offset (modulate it for PM)")
ACC = State("acc", "u4")
# scratch for the fixed-pitch kernels: step, phase offset, normalised frequency
PITCH = (ACC, State("inc", "u4"), State("pofs", "u4"), State("dts", "f4"))
FIXED = ("freq", "phase")

_LFO_SHAPES = ("sine", "triangle", "saw", "square", "sh")


def _seed(spec: NodeSpec) -> int:
    """A nonzero 32-bit xorshift seed from the module's seed option (or its id)."""
    seed = int(spec.options.get("seed", 0)) or spec.id
    x = (seed * 0x9E3779B1 + 0x7F4A7C15) & 0xFFFFFFFF
    return x or 0x1234567


class Sine(Module):
    """A sine oscillator, in tune to better than 0.001 cent.

    >>> from jupysynth import Sine
    >>> a4 = Sine(freq=440, amp=0.5)
    """

    params = (FREQ, AMP, PHASE)
    positional = ("freq", "amp")
    state = PITCH
    kernel = "oscillators.sine"
    fixed_kernel = "oscillators.sine_fixed"
    fixed_params = FIXED


class Saw(Module):
    """A band-limited (PolyBLEP) sawtooth, rising, starting at zero like a sine.

    >>> from jupysynth import Saw
    >>> bass = Saw(freq=55, amp=0.4)
    """

    params = (FREQ, AMP, PHASE)
    positional = ("freq", "amp")
    state = PITCH
    kernel = "oscillators.saw"
    fixed_kernel = "oscillators.saw_fixed"
    fixed_params = FIXED


class Square(Module):
    """A band-limited (PolyBLEP) square wave: +amp for the first half cycle.

    >>> from jupysynth import Square
    >>> reed = Square(freq=220, amp=0.2)
    """

    params = (FREQ, AMP, PHASE)
    positional = ("freq", "amp")
    state = PITCH
    kernel = "oscillators.square"
    fixed_kernel = "oscillators.square_fixed"
    fixed_params = FIXED


class Triangle(Module):
    """A band-limited (PolyBLAMP) triangle, starting at zero and rising like a sine.

    >>> from jupysynth import Triangle
    >>> flute = Triangle(freq=660, amp=0.3)
    """

    params = (FREQ, AMP, PHASE)
    positional = ("freq", "amp")
    state = PITCH
    kernel = "oscillators.triangle"
    fixed_kernel = "oscillators.triangle_fixed"
    fixed_params = FIXED


class Pulse(Module):
    """A band-limited (PolyBLEP) pulse wave whose ``width`` (duty cycle) can be modulated.

    >>> from jupysynth import Pulse, LFO
    >>> pwm = Pulse(freq=110, width=0.5 + 0.4 * LFO(freq=0.3))
    """

    params = (FREQ, AMP, PHASE, Param("width", 0.5, 0.01, 0.99, "", "lin", "duty cycle"))
    positional = ("freq", "amp")
    state = PITCH
    kernel = "oscillators.pulse"
    fixed_kernel = "oscillators.pulse_fixed"
    fixed_params = FIXED


class Noise(Module):
    """Seeded noise: ``color="white"`` (flat) or ``"pink"`` (-3 dB per octave).

    The same seed gives the same samples on every run and in every process.

    >>> from jupysynth import Noise
    >>> hiss = Noise(amp=0.1, color="pink", seed=7)
    """

    params = (AMP,)
    positional = ("amp",)
    options: dict[str, Any] = {"color": "white", "seed": 0}
    color_choices = ("white", "pink")
    state = (State("rng", "u4"), State("poles", "f4", (7,)))
    kernel = "oscillators.white"

    def kernel_name(self) -> str:
        return f"oscillators.{self._opts['color']}"

    @classmethod
    def init_state(cls, spec: NodeSpec) -> dict[str, Any]:
        return {"rng": _seed(spec)}


class LFO(Module):
    """A low-frequency oscillator: ``offset + amp * wave``, wave in [-1, 1].

    ``shape`` is one of sine, triangle, saw, square or sh (sample and hold:
    a new seeded random value every cycle).  Not band-limited: meant for
    modulation.

    >>> from jupysynth import LFO, LowPass, Saw
    >>> wah = LowPass(Saw(freq=110), cutoff=LFO(freq=0.5, amp=600, offset=900))
    """

    params = (
        Param("freq", 1.0, 0.0, 20000.0, "Hz", "log", "rate"),
        Param("amp", 1.0, -1e6, 1e6, "", "lin", "depth"),
        Param("offset", 0.0, -1e6, 1e6, "", "lin", "centre value"),
        PHASE,
    )
    positional = ("freq", "amp", "offset")
    options: dict[str, Any] = {"shape": "sine", "seed": 0}
    shape_choices = _LFO_SHAPES
    state = (ACC, State("shape", "i4"), State("rng", "u4"), State("held", "f4"))
    kernel = "oscillators.lfo"

    @classmethod
    def init_state(cls, spec: NodeSpec) -> dict[str, Any]:
        seed = _seed(spec)
        # sample-and-hold starts on a value of its own, not on zero
        s = seed ^ ((seed << 13) & 0xFFFFFFFF)
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        first = (s >> 8) * (2.0 / 16777216.0) - 1.0
        return {"shape": _LFO_SHAPES.index(spec.options["shape"]), "rng": s, "held": first}
