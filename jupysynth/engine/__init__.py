"""The real-time engine: a child process that renders blocks ahead into a sound device.

The kernel holds an :class:`Engine` (start, stop, status, record) and talks to
the engine process over OSC (:mod:`jupysynth.control`); the process owns the
patch, the :class:`~jupysynth.render.Renderer`, the OSC server and the audio
driver (an rtmixer ring buffer, or a wall clock when headless).

>>> import jupysynth as js
>>> from jupysynth.engine import Engine, play
>>> with Engine() as engine:                        # doctest: +SKIP
...     play(js.Sine(freq=440, amp=0.2), engine)

Layout: ``engine.py`` (the kernel's handle), ``play.py`` (``play``/``stop``/
``panic``), ``child.py`` (the process), ``core.py`` (the block clock and
message scheduling), ``patch.py`` (the authoritative patch),
``drivers.py`` (device or headless clock), ``workers.py`` (the worker pool,
``Engine(workers=N)``) and ``worker.py`` (a worker process).
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
