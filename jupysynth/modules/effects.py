"""Amplifiers, panning, delay and the cycle-breaking Feedback tap.

>>> from jupysynth import Delay, Pan, Saw
>>> echo = Pan(Delay(Saw(freq=220, amp=0.2), time=0.25, feedback=0.4), pos=-0.5)
"""

from __future__ import annotations

from typing import Any

from ..errors import ParamError
from ..graph import Module, NodeSpec, Param, State

INPUT = Param("input", 0.0, -1e30, 1e30, "", "lin", "the signal to process")

FEEDBACK_SAMPLES = 64


class Gain(Module):
    """A VCA: ``input * gain``; modulate ``gain`` with an envelope.

    >>> from jupysynth import ADSR, Gain, Saw
    >>> voice = Gain(Saw(freq=110), gain=ADSR(attack=0.01))
    """

    params = (INPUT, Param("gain", 1.0, -1e6, 1e6, "", "lin", "multiplier"))
    positional = ("input", "gain")
    kernel = "arith.gain"


VCA = Gain


class Pan(Module):
    """Equal-power stereo panner: ``pos`` -1 is left, 0 centre (-3 dB each side), 1 right.

    >>> from jupysynth import Pan, Sine
    >>> wide = Pan(Sine(freq=330, amp=0.3), pos=0.7)
    """

    params = (INPUT, Param("pos", 0.0, -1.0, 1.0, "", "lin", "stereo position"))
    positional = ("input", "pos")
    channels = 2
    port_names = ("left", "right")
    kernel = "effects.pan"


class Delay(Module):
    """A feedback delay line with a modulatable, interpolated (4-point Hermite) time.

    ``max_time`` (seconds, fixed at construction) sizes the buffer.

    >>> from jupysynth import Delay, Saw
    >>> slapback = Delay(Saw(freq=110, amp=0.2), time=0.12, feedback=0.3, mix=0.4)
    """

    params = (
        INPUT,
        Param("time", 0.25, 0.0, 60.0, "s", "log", "delay time"),
        Param("feedback", 0.0, -1.0, 1.0, "", "lin", "share of the output fed back"),
        Param("mix", 0.5, 0.0, 1.0, "", "lin", "0 dry only, 1 delayed only"),
    )
    positional = ("input", "time", "feedback", "mix")
    options: dict[str, Any] = {"max_time": 1.0}
    state = (State("buf", "f4"), State("pos", "i8", (1,), shared=True))
    kernel = "effects.delay"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        max_time = self._opts["max_time"]
        if not 0.0 < max_time <= 60.0:
            raise ParamError(
                f"Delay max_time={max_time:g} s is out of range; use 0 < max_time <= 60"
            )
        time = self._values["time"]
        if isinstance(time, float) and time > max_time:
            raise ParamError(
                f"Delay time={time:g} s is longer than max_time={max_time:g} s; "
                f"pass max_time={time:g} or more"
            )

    @classmethod
    def state_lead(cls, state: State, specs: list[NodeSpec], samplerate: float) -> tuple:
        if state.name == "buf":
            longest = max(float(s.options["max_time"]) for s in specs)
            return (int(longest * samplerate) + 4,)
        return state.lead


class Feedback(Module):
    """Closes a loop in a patch, delaying its input by exactly 64 samples.

    A patch may only contain cycles that pass through a Feedback.  Its delay
    is fixed in samples (1.3 ms at 48 kHz), not tied to the block size, so a
    patch with feedback renders the same at any block size.

    >>> from jupysynth import Feedback, LowPass, Saw
    >>> fb = Feedback()
    >>> loop = LowPass(Saw(freq=110, amp=0.3) + 0.6 * fb, cutoff=2000)
    >>> fb.input = loop
    """

    params = (INPUT,)
    positional = ("input",)
    breaks_cycles = True
    state = (
        State("ring", "f4", (FEEDBACK_SAMPLES,)),
        State("pos", "i8", (1,), shared=True),
    )
    kernel = "effects.feedback_read"
    post_kernel = "effects.feedback_write"
