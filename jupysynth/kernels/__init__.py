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


def _drop_stale_cache() -> None:
    """Delete numba's on-disk cache when any kernel source changed.

    numba keys a cached kernel on its own file's timestamp only, so a change in
    a shared inline helper (_dsp.py) would otherwise keep serving old machine code.
    """
    import hashlib
    import os
    from pathlib import Path

    here = Path(__file__).parent
    digest = hashlib.sha1()
    for src in sorted(here.glob("*.py")):
        digest.update(src.read_bytes())
    stamp = digest.hexdigest()
    cache = Path(os.environ.get("NUMBA_CACHE_DIR") or here / "__pycache__")
    marker = cache / "jupysynth-kernels.stamp"
    try:
        if marker.exists() and marker.read_text() == stamp:
            return
        cache.mkdir(parents=True, exist_ok=True)
        for f in list(cache.glob("*.nbi")) + list(cache.glob("*.nbc")):
            f.unlink(missing_ok=True)
        # a process still running the old sources may write its kernels back into
        # the cache; numba keys them on their file's time stamp, so new stamps on
        # the sources make such entries miss
        for src in here.glob("*.py"):
            os.utime(src)
        marker.write_text(stamp)
    except OSError:
        pass  # a read-only install: its cache was written by the same sources


_drop_stale_cache()
