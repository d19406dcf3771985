"""The notebook layer: knob panels, live scopes, the IPython extension and live coding.

>>> import jupysynth as js
>>> from jupysynth.notebook import knobs, scope
>>> osc = js.Saw(freq=220, amp=0.3)
>>> panel = knobs(osc)        # sliders, linked both ways
>>> view = scope(osc)         # a triggered oscilloscope
"""

from .knobs import KnobPanel, knobs
from .live import play, stop
from .scope import OfflineSource, Oscilloscope, Spectrum, scope, spectrum

__all__ = [
    "KnobPanel",
    "OfflineSource",
    "Oscilloscope",
    "Spectrum",
    "knobs",
    "play",
    "scope",
    "spectrum",
    "stop",
]
