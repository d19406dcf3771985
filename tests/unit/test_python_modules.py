"""Modules written in Python (a ``process`` over numpy blocks), their faults and hot swap."""

from __future__ import annotations

import math

import numpy as np
import pytest

import jupysynth as js
from jupysynth.graph import module_types, snapshot, type_name
from jupysynth.renderer import Renderer

from .dsp import SR

SIGNAL = js.Param("input", 0.0, -1e30, 1e30)


class Fold(js.Module):
    """A wavefolder: sin(input * amount)."""

    params = (SIGNAL, js.Param("amount", 1.0, 0.1, 10.0))
    positional = ("input",)

    def process(self, input, amount):
        return np.sin(input * amount)


class Smooth(js.Module):
    """A one-pole low-pass that keeps its memory in an attribute."""

    params = (SIGNAL, js.Param("coeff", 0.1, 0.0, 1.0))
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


class Explode(js.Module):
    params = (SIGNAL,)
    positional = ("input",)

    def process(self, input):
        raise RuntimeError("boom in process")


def test_a_numpy_process_module_renders_its_math():
    saw = js.Saw(freq=110)
    x = js.render(Fold(saw, amount=3.0), 0.1)[:, 0]
    ref = np.sin(js.render(saw, 0.1)[:, 0].astype(np.float64) * np.float32(3.0))
    np.testing.assert_allclose(x, ref, atol=1e-6)


def test_python_modules_are_batched_and_modulated_like_any_other():
    lfo = js.LFO(freq=2, amp=2, offset=3)
    a = Fold(js.Sine(freq=220), amount=lfo)
    b = Fold(js.Sine(freq=330), amount=1.5)
    x = js.render([a, b], 0.2)
    assert np.isfinite(x).all() and np.abs(x).max() > 0.5
    assert type_name(Fold) in module_types()


def test_state_in_attributes_is_block_size_independent():
    patch = Smooth(js.Square(freq=50), coeff=0.01)
    ref = js.render(patch, 0.1, blocksize=64)
    for bs in (16, 100, 512):
        np.testing.assert_allclose(js.render(patch, 0.1, blocksize=bs), ref, atol=1e-7)


def test_a_process_that_raises_is_muted_and_the_rest_plays():
    good = js.Sine(freq=440, amp=0.3)
    bad = Explode(js.Saw())
    with pytest.warns(js.JupysynthWarning, match="RuntimeError: boom in process"):
        x = js.render([good, bad], 0.1)
    np.testing.assert_array_equal(x, js.render(good, 0.1))


def test_redefining_the_class_swaps_running_instances_keeping_state():
    src = js.MulAdd(add=1.0)
    patch = Smooth(src, coeff=0.001)
    nodes, outs = snapshot(patch)
    r = Renderer(nodes, outs, SR, 64)
    before = r.process(64)[:, 0].copy()

    def doubled(self, input, coeff):  # the "edited cell": same state, output doubled
        y = Smooth.process(self, input, coeff)
        return 2 * y

    Smooth2 = type(
        "Smooth",
        (js.Module,),
        {
            "params": Smooth.params,
            "positional": ("input",),
            "setup": Smooth.setup,
            "process": doubled,
            "__module__": Smooth.__module__,
            "__qualname__": Smooth.__qualname__,
        },
    )
    try:
        assert module_types()[type_name(Smooth)] is Smooth2
        r.update(nodes, outs)
        after = r.process(64)[:, 0]
        # the memory carried over: the ramp continues from where it was, twice as loud
        z = before[-1]
        expect = 2 * (1 - (1 - z) * (1 - 0.001) ** np.arange(1, 65))
        np.testing.assert_allclose(after, expect, rtol=1e-5)
    finally:
        js.Module._registry[type_name(Smooth)] = Smooth


class Shaper(js.Module):
    """A per-sample waveshaper: compiled by numba and batched over instances."""

    params = (SIGNAL, js.Param("drive", 1.0, 0.1, 20.0))
    positional = ("input",)

    @staticmethod
    def sample(x, drive):
        return math.tanh(x * drive)


class Leaky(js.Module):
    """A per-sample leaky integrator with one float64 slot of state."""

    params = (SIGNAL, js.Param("leak", 0.01, 0.0, 1.0))
    positional = ("input",)
    sample_state = 1

    @staticmethod
    def sample(s, x, leak):
        s[0] += leak * (x - s[0])
        return s[0]


def test_a_per_sample_function_is_compiled_and_batched():
    saws = [js.Saw(freq=f) for f in (110, 220, 330)]
    shaped = [Shaper(s, drive=d) for s, d in zip(saws, (1.0, 4.0, 9.0))]
    x = js.render(shaped, 0.1)[:, 0]
    ref = sum(
        np.tanh(js.render(s, 0.1)[:, 0].astype(np.float64) * d) for s, d in zip(saws, (1, 4, 9))
    )
    np.testing.assert_allclose(x, ref, atol=1e-5)


def test_a_per_sample_function_with_state():
    patch = Leaky(js.MulAdd(add=1.0), leak=0.01)
    x = js.render(patch, 0.01, blocksize=32)[:, 0]
    np.testing.assert_allclose(x, 1 - 0.99 ** np.arange(1, x.size + 1), rtol=1e-5)
    np.testing.assert_array_equal(js.render(patch, 0.01, blocksize=7)[:, 0], x)


def test_a_per_sample_function_that_does_not_compile_is_reported():
    class Bad(js.Module):
        params = (SIGNAL,)
        positional = ("input",)

        @staticmethod
        def sample(x):
            return {"not": "a number"}[x]  # numba cannot type this

    good = js.Sine(freq=300)
    with pytest.warns(js.JupysynthWarning, match="Bad#"):
        x = js.render([good, Bad(js.Saw())], 0.05)
    np.testing.assert_array_equal(x, js.render(good, 0.05))


def test_two_cell_written_types_at_one_level_render_each_its_own_code():
    saw = js.Saw(freq=110)
    pairs = [(Fold(saw, amount=3.0), Smooth(saw)), (Shaper(saw, drive=3.0), Leaky(saw))]
    for a, b in pairs:
        np.testing.assert_array_equal(
            js.render([a, b], 0.05), js.render(a, 0.05) + js.render(b, 0.05)
        )
