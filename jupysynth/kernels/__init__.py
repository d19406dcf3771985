"""Compiled per-sample kernels, one per module type, each rendering *all* instances.

Conventions every kernel follows (so the renderer can call any of them alike)::

    kernel(a, b, sr, out, *params, *state)

- ``a, b``: the frame range of the block to render (rows of the bus);
- ``sr``: the sample rate;
- ``out``: float32 view ``(frames, channels * n)`` into the bus;
- ``params``: one float32 view ``(frames, n)`` per declared parameter, in order;
  a constant parameter is a stride-0 view, so the kernel reads every parameter
  per sample the same way, and a modulated one is the producer's bus columns;
- ``state``: arrays whose last axis is the instance, so the loop across
  instances is innermost and vectorises (struct of arrays).

Output never depends on where the block boundaries fall.  Kernels are compiled
with ``cache=True`` (on disk, so a second process loads them in milliseconds)
and ``nogil=True`` (so a worker thread can render while another runs).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

__all__ = ["load"]

_cache: dict[str, Callable] = {}


def load(name: str) -> Callable:
    """The compiled kernel ``"family.function"``, importing its family on first use."""
    fn = _cache.get(name)
    if fn is None:
        family, _, func = name.partition(".")
        mod = importlib.import_module(f"{__name__}.{family}")
        fn = getattr(mod, func)
        _cache[name] = fn
    return fn
