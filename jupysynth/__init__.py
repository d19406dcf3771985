"""jupysynth: a modular synthesizer you live-code from Jupyter notebooks.

Describe a patch with modules, render it offline, or play it live.

>>> import jupysynth as js
>>> voice = js.LowPass(js.Saw(freq=110, amp=0.3), cutoff=1200, q=2)
>>> samples = js.render(voice, seconds=0.25)

Importing jupysynth is light: numba and the kernels load on the first render.
"""

from __future__ import annotations

from typing import Any

from .errors import EngineError, JupysynthError, JupysynthWarning, ParamError, PatchError
from .graph import Mix, Module, MulAdd, Param, Port
from .modules import (
    ADSR,
    AR,
    LFO,
    VCA,
    BandPass,
    Delay,
    Feedback,
    Gain,
    HighPass,
    LowPass,
    Noise,
    Notch,
    Pan,
    Pulse,
    Saw,
    Sine,
    Square,
    Triangle,
)

__version__ = "0.1.0"

__all__ = [
    "ADSR",
    "AR",
    "BandPass",
    "Delay",
    "EngineError",
    "Feedback",
    "Gain",
    "HighPass",
    "JupysynthError",
    "JupysynthWarning",
    "LFO",
    "LowPass",
    "Mix",
    "Module",
    "MulAdd",
    "Noise",
    "Notch",
    "Pan",
    "Param",
    "ParamError",
    "PatchError",
    "Port",
    "Pulse",
    "Renderer",
    "Saw",
    "Sine",
    "Square",
    "Triangle",
    "VCA",
    "plot",
    "render",
    "write_wav",
]

_LAZY = {
    "render": "renderer",
    "write_wav": "renderer",
    "Renderer": "renderer",
    "plot": "plotting",
    "Engine": "player",
    "panic": "player.play",
    # %load_ext jupysynth (IPython and ipywidgets load only then)
    "load_ipython_extension": "notebook.extension",
    "unload_ipython_extension": "notebook.extension",
}


def __getattr__(name: str) -> Any:
    # the renderer pulls in numba: load it on first use, not on import
    if name in _LAZY:
        import importlib

        mod = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(mod, name)
    raise AttributeError(f"module 'jupysynth' has no attribute {name!r}")


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the JupyterLab extension is (``jupyter labextension develop`` reads it)."""
    return [{"src": "labextension", "dest": "jupysynth"}]
