"""Module classes written in Python play live: ``/type/define``, hot swap, faults, bad blobs.

The classes below stand for notebook cells: the player pickles them by value
(``cloudpickle``) and the headless engine process rebuilds them.  A
"re-run cell" is a new class object with the same ``__module__`` and
``__qualname__``, built with ``type(...)`` as in ``tests/unit/test_python_modules.py``.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

import jupysynth as js
from jupysynth.control.typedefs import dump_type
from jupysynth.errors import EngineError
from jupysynth.graph import type_name
from jupysynth.player import Engine, play, stop

SR, BS = 48000, 128
SIGNAL = js.Param("input", 0.0, -1e30, 1e30)


class LiveFold(js.Module):
    """A wavefolder over numpy blocks."""

    params = (SIGNAL, js.Param("amount", 1.0, 0.1, 10.0))
    positional = ("input",)

    def process(self, input, amount):
        return np.sin(input * amount)


class LiveLeaky(js.Module):
    """A per-sample leaky integrator (numba), one slot of state."""

    params = (SIGNAL, js.Param("leak", 0.01, 0.0, 1.0))
    positional = ("input",)
    sample_state = 1

    @staticmethod
    def sample(s, x, leak):
        s[0] += leak * (x - s[0])
        return math.tanh(s[0])


class Ramp(js.Module):
    """A slow one-pole towards its input; its memory lives in an attribute."""

    params = (SIGNAL, js.Param("coeff", 1e-5, 0.0, 1.0))
    positional = ("input",)

    def setup(self):
        self.z = 0.0

    def process(self, input, coeff):
        y = np.empty(input.shape, np.float64)
        z = self.z
        for i in range(input.size):
            z += coeff[i] * (input[i] - z)
            y[i] = z
        self.z = z
        return y


class SlotRamp(js.Module):
    """The same slow one-pole, per sample, its memory in a state slot."""

    params = (SIGNAL,)
    positional = ("input",)
    sample_state = 1

    @staticmethod
    def sample(s, x):
        s[0] += 1e-5 * (x - s[0])
        return s[0]


class Flaky(js.Module):
    params = (SIGNAL,)
    positional = ("input",)

    def process(self, input):
        raise RuntimeError("boom in a live process")


def redefine(cls, **body):
    """The class as a cell run again with a new body: same module, same qualified name."""
    namespace = {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}
    namespace.update(body, __module__=cls.__module__, __qualname__=cls.__qualname__)
    return type(cls.__name__, (js.Module,), namespace)


@pytest.fixture(scope="module")
def engine():
    # measured as rendered: two doubled ramps sum over full scale; a cell's process() has a
    # second per call, not two blocks: on a loaded machine the sandbox running it may wait
    # its turn for longer, and the budget (tested in test_engine_containment) would mute it
    with Engine(headless=True, limiter=False, code_budget=1.0) as e:
        yield e
    assert not e.running


@pytest.fixture(autouse=True)
def silence_after(engine):
    yield
    js.panic(engine)
    engine.client.sync()  # forgets the errors a failed test left


def test_sample_and_process_modules_play_live_exactly_as_offline(engine):
    saw = js.Saw(freq=110, amp=0.8)
    fold = LiveFold(saw, amount=3.0)
    leaky = LiveLeaky(js.Square(freq=50), leak=0.05)
    patch = [js.Pan(fold * 0.3, pos=-0.5), js.Pan(leaky * 0.3, pos=0.5)]
    play(patch, engine)  # the engine learns both types (and numba compiles the sample one)
    stop(patch, engine)
    assert set(engine.player._sent) == {type_name(LiveFold), type_name(LiveLeaky)}
    t = engine.time_of(engine.frame_at(time.time() + 0.3))
    play(patch, engine, at=t)
    live = engine.record(0.5, at=t)
    offline = js.render(patch, 0.5, SR, BS)
    assert np.abs(offline).max() > 0.1
    np.testing.assert_array_equal(live, offline)
    assert engine.status()["faults"] == {}


def test_redefining_a_playing_class_swaps_the_code_and_keeps_the_state(engine):
    ramps = [Ramp(js.MulAdd(add=1.0)), SlotRamp(js.MulAdd(add=1.0))]
    play(ramps, engine)
    before = engine.record(0.2)[:, 0] / 2  # two ramps, equal: each is half the sum
    z = before[-1]
    assert 0.01 < z < 0.9  # on its way up, not yet at 1 (compiling took engine time)

    def doubled(self, input, coeff):
        return 2 * Ramp.process(self, input, coeff)

    def doubled_sample(s, x):
        s[0] += 1e-5 * (x - s[0])
        return 2 * s[0]

    try:
        # each class statement sends itself: the engine swaps at its next block
        redefine(Ramp, process=doubled)
        redefine(SlotRamp, sample=staticmethod(doubled_sample))
        after = engine.record(0.05)[:, 0] / 2
    finally:
        js.Module._registry[type_name(Ramp)] = Ramp
        js.Module._registry[type_name(SlotRamp)] = SlotRamp
    # continuing from where it was (a reset would restart near 0), and twice as loud:
    # the one-pole's curve from its value at the swap, doubled (an undoubled ramp is
    # below 1, so after / 2 would be, too, and leave this curve)
    assert after[0] / 2 >= z
    zs = after[0] / 2
    curve = 1 - (1 - zs) * (1 - 1e-5) ** np.arange(after.size)
    np.testing.assert_allclose(after / 2, curve, rtol=1e-4)
    assert engine.client.take_errors() == []


def test_a_process_that_raises_is_muted_reported_and_revived_by_a_fix(engine):
    sine = js.Sine(freq=440, amp=0.3)
    bad = Flaky(js.Saw(freq=220))
    play([sine, bad], engine)
    time.sleep(0.1)
    status = engine.status()
    assert list(status["faults"]) == [bad.id]
    assert "RuntimeError: boom in a live process" in status["faults"][bad.id]
    x = engine.record(0.2)[:, 0]
    np.testing.assert_allclose(np.abs(x).max(), 0.3, rtol=1e-3)  # the sine alone plays on
    try:
        redefine(Flaky, process=lambda self, input: 0.5 * input)
        assert engine.status()["faults"] == {}
        y = engine.record(0.2)[:, 0]
    finally:
        js.Module._registry[type_name(Flaky)] = Flaky
    assert np.abs(y).max() > 0.4  # the fixed module plays again, beside the sine (0.3)


def test_a_corrupted_or_misnamed_definition_is_refused_and_the_engine_plays_on(engine):
    sine = js.Sine(freq=1000, amp=0.25)
    play(sine, engine)
    client = engine.client
    client.send("/type/define", "cells.Broken", b"\x80\x05not a pickle at all")
    client.send("/type/define", "cells.Other", dump_type(LiveFold))
    errors = client.sync()
    assert [a for a, _ in errors] == ["/type/define", "/type/define"]
    assert "cannot load module type 'cells.Broken'" in errors[0][1]
    assert "send the name jupysynth.graph.type_name(cls) gives" in errors[1][1]
    x = engine.record(0.1)[:, 0]
    np.testing.assert_allclose(np.abs(x).max(), 0.25, rtol=1e-3)
    client.send("/module/new", 99, "cells.Broken")
    (error,) = client.sync()
    assert "unknown module type 'cells.Broken'" in error[1]


def test_a_class_too_large_for_one_datagram_is_refused_before_sending(engine):
    big = type(
        "Big",
        (js.Module,),
        {
            "params": (SIGNAL,),
            "table": np.random.default_rng(0).standard_normal(20000),  # 160 KB
            "process": lambda self, input: input * self.table[0],
            "__module__": __name__,
            "__qualname__": "Big",
        },
    )
    try:
        with pytest.raises(EngineError, match=r"pickles to \d+ bytes, more than the 59000"):
            play(big(input=js.Sine()), engine)
    finally:
        js.Module._registry.pop(type_name(big), None)
    assert engine.status()["modules"] == 0


def test_workers_load_the_definitions_and_swap_too():
    with Engine(headless=True, workers=1) as pooled:
        fold = LiveFold(js.Saw(freq=110, amp=0.8), amount=3.0)
        ramp = Ramp(js.MulAdd(add=1.0))
        play([fold, ramp], pooled)
        both = pooled.record(0.05)[:, 0]
        try:
            redefine(LiveFold, process=lambda self, input, amount: 0 * input)
            ramp_only = pooled.record(0.05)[:, 0]
            redefine(Ramp, process=lambda self, input, coeff: 2 * Ramp.process(self, input, coeff))
            doubled = pooled.record(0.05)[:, 0]
        finally:
            js.Module._registry[type_name(LiveFold)] = LiveFold
            js.Module._registry[type_name(Ramp)] = Ramp
        assert np.abs(np.diff(both)).max() > 0.01  # the fold sounds
        assert np.abs(np.diff(ramp_only)).max() < 1e-4  # swapped to silence: the ramp alone
        assert doubled[0] / 2 >= ramp_only[-1] > 0.01  # doubled, its memory kept
        assert pooled.status()["faults"] == {}
        assert pooled.client.take_errors() == []
