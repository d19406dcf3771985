"""Every renderer the engine drives offers the whole of ``LiveRenderer``, with its signatures.

The engine core calls these members without asking which renderer it has; a
member missing, or taking other arguments, would fail only when that renderer
meets that case live (a pool asked for a tap, an in-process renderer for a
worker count).
"""

from __future__ import annotations

import inspect
import re

import pytest

from jupysynth.engine.auto import AutoRenderer
from jupysynth.engine.renderers import LiveRenderer
from jupysynth.engine.workers import PoolRenderer
from jupysynth.renderer import Renderer

MEMBERS = [
    name
    for name in dir(LiveRenderer)
    if not name.startswith("_") and name not in dir(object) and name != "register"
] + list(LiveRenderer.__annotations__)


def test_the_protocol_names_what_the_core_uses():
    assert {
        "process",
        "set",
        "prepare",
        "apply",
        "column_of",
        "rebalance_wanted",
        "sandbox",
    } <= set(MEMBERS)


def _parameters(fn) -> list[tuple[str, object]]:
    return [(p.name, p.default) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("cls", [Renderer, PoolRenderer, AutoRenderer])
def test_each_renderer_has_every_member_with_the_same_parameters(cls):
    for name in MEMBERS:
        want = inspect.getattr_static(LiveRenderer, name, None)
        got = inspect.getattr_static(cls, name, None)
        if want is None or isinstance(want, property):
            # a value: a class attribute, a property, or set on the instance by __init__
            set_here = re.search(rf"self\.{name}\b[^=\n]*= ", inspect.getsource(cls))
            assert got is not None or set_here, f"{cls.__name__} has no {name}"
            assert not callable(got) or isinstance(got, property), (cls, name)
            continue
        assert callable(got), f"{cls.__name__} has no method {name}"
        # the protocol's parameters come first, named and defaulted the same; a renderer
        # may take more, each with a default (the pool's apply takes carried states)
        theirs = _parameters(got)
        ours = _parameters(want)
        assert theirs[: len(ours)] == ours, (cls.__name__, name, theirs, ours)
        assert all(d is not inspect.Parameter.empty for _, d in theirs[len(ours) :]), (
            cls.__name__,
            name,
        )


def test_an_in_process_renderer_is_a_live_renderer_and_shows_its_outputs():
    import jupysynth as js
    from jupysynth.graph import snapshot

    osc = js.Sine(freq=440)
    r = Renderer(*snapshot(osc), 48000, 64)
    assert isinstance(r, LiveRenderer)
    r.process(64)
    col = r.column_of((osc.id, 0))
    assert col is not None and r.bus[:64, col].any()
    assert r.column_of((osc.id + 1000, 0)) is None
    assert (r.workers, r.restarts, r.late_parts, r.in_process) == (0, 0, 0, True)
