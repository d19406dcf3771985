"""The standard module library, by family."""

from .effects import VCA, Delay, Feedback, Gain, Pan
from .envelopes import ADSR, AR
from .filters import BandPass, HighPass, LowPass, Notch
from .oscillators import LFO, Noise, Pulse, Saw, Sine, Square, Triangle

__all__ = [
    "ADSR",
    "AR",
    "BandPass",
    "Delay",
    "Feedback",
    "Gain",
    "HighPass",
    "LFO",
    "LowPass",
    "Noise",
    "Notch",
    "Pan",
    "Pulse",
    "Saw",
    "Sine",
    "Square",
    "Triangle",
    "VCA",
]
