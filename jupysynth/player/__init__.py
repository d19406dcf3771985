"""Live playing, from the kernel: everything here runs in the user's kernel.

- ``engine.py``: :class:`Engine`, the handle that starts an engine process
  (:mod:`jupysynth.engine`) and asks it for status, records and syncs;
- ``play.py``: ``play``/``stop``/``panic``: sends a patch's modules, and then
  every knob turned on them;
- ``throttle.py``: coalesces a dragged knob's changes before they are sent.

The path of a knob value, by file name: a slider (``notebook/knobs.py``) sets a
module's parameter (``graph.py``), whose listener in ``player/play.py`` hands it
to ``player/throttle.py``, which sends it through ``control/client.py``; in the
engine process ``control/server.py`` receives it, ``engine/core.py`` applies it
at its block, and the renderer (``engine/renderers.py``) glides to it.

>>> import jupysynth as js
>>> from jupysynth.player import Engine, play
>>> with Engine() as engine:                        # doctest: +SKIP
...     play(js.Sine(freq=440, amp=0.2), engine)
"""

from ..errors import EngineError
from .engine import Engine, default_engine, running_engines
from .play import Player, panic, play, stop

__all__ = [
    "Engine",
    "EngineError",
    "Player",
    "default_engine",
    "panic",
    "play",
    "running_engines",
    "stop",
]
