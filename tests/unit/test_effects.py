"""Gain, Mix, MulAdd, Pan, Delay and Feedback against their math."""

from __future__ import annotations

import numpy as np
import pytest

import jupysynth as js

from .dsp import SR


def impulse(at: float = 0.0):
    """A one-sample impulse of height 1 at time ``at``: a MulAdd whose offset is pulsed."""
    src = js.MulAdd(add=0.0)
    return src, [(at, src, "add", 1.0), (at + 1 / SR, src, "add", 0.0)]


def test_gain_mix_and_muladd_are_exact():
    a, b = js.Sine(freq=300), js.Saw(freq=70)
    xa, xb = js.render(a, 0.1)[:, 0], js.render(b, 0.1)[:, 0]
    np.testing.assert_array_equal(
        js.render(js.Gain(a, gain=0.25), 0.1)[:, 0], xa * np.float32(0.25)
    )
    np.testing.assert_allclose(
        js.render(js.Mix(a, b, amp=0.5), 0.1)[:, 0], (xa + xb) * 0.5, atol=1e-7
    )
    np.testing.assert_allclose(js.render(a * b + 0.5, 0.1)[:, 0], xa * xb + 0.5, atol=1e-7)
    np.testing.assert_allclose(js.render([a, b], 0.1)[:, 0], xa + xb, atol=1e-7)


@pytest.mark.parametrize("pos", [-1.0, -0.5, 0.0, 0.3, 1.0])
def test_pan_is_equal_power(pos):
    x = js.render(js.Pan(js.Sine(freq=200), pos=pos), 0.05).astype(np.float64)
    mono = js.render(js.Sine(freq=200), 0.05)[:, 0].astype(np.float64)
    np.testing.assert_allclose(x[:, 0] ** 2 + x[:, 1] ** 2, mono**2, atol=1e-6)
    theta = (pos + 1) * np.pi / 4
    np.testing.assert_allclose(x[:, 0], mono * np.cos(theta), atol=1e-6)
    np.testing.assert_allclose(x[:, 1], mono * np.sin(theta), atol=1e-6)


def test_delay_echoes_at_its_time_with_feedback_decay():
    src, events = impulse(0.01)
    d = js.Delay(src, time=0.1, feedback=0.5, mix=1.0)
    x = js.render(d, 0.5, events=events)[:, 0]
    start = round(0.01 * SR)
    peaks = np.flatnonzero(np.abs(x) > 1e-3)
    np.testing.assert_array_equal(peaks, start + np.array([1, 2, 3, 4]) * round(0.1 * SR))
    np.testing.assert_allclose(x[peaks], [1.0, 0.5, 0.25, 0.125], rtol=1e-6)


def test_fractional_delay_interpolates():
    d = js.Delay(js.Sine(freq=100), time=10.5 / SR, mix=1.0)
    x = js.render(d, 0.2)[:, 0].astype(np.float64)
    t = np.arange(x.size) - 10.5
    ref = np.where(t >= 0, np.sin(2 * np.pi * 100 * t / SR), 0)
    assert np.abs(x[100:] - ref[100:]).max() < 1e-5


def test_delay_time_modulated_per_sample_stays_finite():
    lfo = js.Sine(freq=0.5, amp=0.004) + 0.005
    x = js.render(js.Delay(js.Saw(freq=220), time=lfo, feedback=0.7, max_time=0.02), 1.0)
    assert np.isfinite(x).all() and np.abs(x).max() < 10


def test_delay_longer_than_its_buffer_says_what_to_do():
    with pytest.raises(js.ParamError, match="max_time=2 or more"):
        js.Delay(js.Saw(), time=2.0)


def test_feedback_loop_delays_exactly_64_samples():
    src, events = impulse(0.0)
    fb = js.Feedback()
    loop = src + 0.5 * fb
    fb.input = loop
    for bs in (16, 64, 100, 256):
        x = js.render(loop, 0.02, blocksize=bs, events=events)[:, 0]
        peaks = np.flatnonzero(x != 0)
        np.testing.assert_array_equal(peaks[:4], [0, 64, 128, 192])
        np.testing.assert_allclose(x[peaks[:4]], [1, 0.5, 0.25, 0.125])
