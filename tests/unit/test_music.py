"""The musical accuracy tests MUS-01..04, on rendered output."""

from __future__ import annotations

import numpy as np
import pytest

import jupysynth as js
from jupysynth.demo import build, seconds

from .dsp import SR, cents, measure_freq, snr_db

OSCILLATORS = [js.Sine, js.Saw, js.Square, js.Triangle, js.Pulse]


def test_mus01_sine_440_within_a_hundredth_of_a_cent():
    x = js.render(js.Sine(freq=440), 1.0)[:, 0]
    f = measure_freq(x, 440.0)
    assert abs(cents(f, 440.0)) < 0.01, f


@pytest.mark.parametrize("cls", OSCILLATORS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("freq", [20.0, 110.0, 1000.0, 4186.0, 12000.0, 20000.0])
def test_mus01_oscillators_in_tune_from_20_hz_to_20_khz(cls, freq):
    x = js.render(cls(freq=freq, amp=0.5), 1.0)[:, 0].astype(np.float64)
    f = measure_freq(x, freq)
    assert abs(cents(f, freq)) < 0.01, (cls.__name__, freq, f)


@pytest.mark.parametrize("blocksize", [16, 64, 100, 256])
def test_mus02_event_lands_on_its_exact_sample(blocksize):
    osc = js.Sine(freq=1000, amp=0.0, phase=0.25)  # a cosine: nonzero when the amp opens
    t = 0.0123457
    x = js.render(osc, 0.03, blocksize=blocksize, events=[(t, osc, "amp", 1.0)])[:, 0]
    n = round(t * SR)
    assert np.all(x[:n] == 0.0)
    assert x[n] != 0.0


@pytest.mark.parametrize("blocksize", [16, 64, 256])
def test_mus02_envelope_gated_at_sample_n_starts_at_n(blocksize):
    env = js.ADSR(attack=0.01)
    n = 1001
    x = js.render(env, 0.05, blocksize=blocksize, events=[(n / SR, env, "gate", 1.0)])[:, 0]
    assert np.all(x[:n] == 0.0)
    assert x[n] == pytest.approx(1.0 / (0.01 * SR), rel=1e-6)


def test_mus03_silence_is_exact_zeros():
    env = js.ADSR(attack=0.001, decay=0.01, sustain=0.5, release=0.02)
    patch = [
        js.Sine(freq=440, amp=0.0),
        js.LowPass(js.Saw(freq=110, amp=0.0), cutoff=800, q=4),
        js.Delay(js.Noise(amp=0.0), time=0.1, feedback=0.5),
        js.Saw(freq=220) * env,
    ]
    x = js.render(patch, 1.0, events=[(0.1, env, "gate", 1.0), (0.2, env, "gate", 0.0)])
    assert np.any(x[int(0.1 * SR) : int(0.2 * SR)] != 0.0)
    # 0.02 s release reaches -100 dB (the snap to zero) within 0.04 s
    assert np.all(x[int(0.3 * SR) :] == 0.0)
    assert np.all(js.render(js.Sine(freq=440, amp=0.0), 0.5) == 0.0)


def test_mus03_full_scale_sine_snr_at_least_120_db():
    x = js.render(js.Sine(freq=997, amp=1.0), 1.0)[:, 0].astype(np.float64)
    f = measure_freq(x, 997.0)
    snr = snr_db(x, f)
    assert snr >= 120.0, snr


def test_mus04_oscillators_started_together_are_phase_aligned():
    a, b = js.Sine(freq=220), js.Sine(freq=220)
    xa = js.render(a, 0.1)[:, 0]
    xb = js.render([js.Saw(freq=55), b], 0.1)  # b sits in a group with another instance
    xb = js.render(b, 0.1)[:, 0]
    np.testing.assert_array_equal(xa, xb)
    for cls in (js.Sine, js.Saw, js.Triangle):
        x = js.render(cls(freq=100), 0.01)[:, 0]
        assert x[0] == 0.0 and x[1] > 0.0, cls.__name__  # every one starts at zero, rising
    sq = js.render(js.Square(freq=100), 0.01)[:, 0]
    assert sq[5] == pytest.approx(1.0, abs=1e-6)  # the square's first half cycle is high


def test_mus04_output_identical_for_any_block_size():
    outputs, events = build(bars=1)
    ref = js.render(outputs, seconds(1), blocksize=64, events=events)
    assert np.abs(ref).max() > 0.1
    for bs in (16, 256, 1024):
        x = js.render(outputs, seconds(1), blocksize=bs, events=events)
        assert np.abs(x - ref).max() <= 1e-6, bs


def test_render_is_deterministic_with_seeded_noise():
    patch = [js.Noise(color="pink", seed=11), js.LFO(freq=3, shape="sh", seed=5)]
    a = js.render(patch, 0.5)
    b = js.render(patch, 0.5)
    np.testing.assert_array_equal(a, b)
    c = js.render([js.Noise(color="pink", seed=12), js.LFO(freq=3, shape="sh", seed=5)], 0.5)
    assert not np.array_equal(a, c)
