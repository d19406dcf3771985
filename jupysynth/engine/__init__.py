"""The engine process: everything here runs there, none of it in the kernel.

The kernel starts it and talks to it through :mod:`jupysynth.player` (the
``Engine`` handle, ``play``/``stop``/``panic``) over OSC (:mod:`jupysynth.control`,
the protocol both sides share).  The process owns the patch, the renderer,
the OSC server and the audio driver.

Where a message goes, by file:

- ``child.py``: the process's ``main``: starts the OSC server, the core and the driver;
- ``core.py``: the block clock, the scheduled messages, how an edit reaches a block;
- ``patch.py``: the authoritative patch table the messages edit;
- ``renderers.py``: the one interface the core renders through, implemented by
  :class:`~jupysynth.renderer.Renderer` (in this process), ``workers.py`` (the
  worker pool, ``Engine(workers=N)``) and ``auto.py`` (``workers="auto"``);
- ``split.py`` (how a pool divides a patch), ``messages.py`` (what the pool says
  to its workers), ``wire.py`` (how), ``worker.py`` (a worker process);
- ``sandbox.py``: the process that runs code written in cells, under a time budget;
- ``drivers.py`` (the sound card's ring or a wall clock) and ``browser.py`` (the
  browser's output): what clocks the blocks;
- ``taps.py``: the shared-memory rings scopes read.

``from jupysynth.engine import Engine, play, stop, panic`` still works (it is
the kernel side's, loaded on first use, never by the engine process).
"""

from __future__ import annotations

from typing import Any

from ..errors import EngineError

__all__ = ["EngineError"]

_KERNEL_SIDE = {
    "Engine": "engine",
    "default_engine": "engine",
    "running_engines": "engine",
    "Player": "play",
    "panic": "play",
    "play": "play",
    "stop": "play",
}


def __getattr__(name: str) -> Any:
    if name in _KERNEL_SIDE:
        import importlib

        return getattr(importlib.import_module(f"..player.{_KERNEL_SIDE[name]}", __name__), name)
    raise AttributeError(f"module 'jupysynth.engine' has no attribute {name!r}")
