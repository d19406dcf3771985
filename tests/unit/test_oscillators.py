"""Oscillators, noise and LFO against their math."""

from __future__ import annotations

import numpy as np
import pytest

import jupysynth as js

from .dsp import SR, band_power


def naive_phase(freq: float, frames: int) -> np.ndarray:
    return (freq * np.arange(frames) / SR) % 1.0


def far_from(phase: np.ndarray, edges: list[float], dt: float) -> np.ndarray:
    """Samples more than two samples' worth of phase away from every edge."""
    ok = np.ones(phase.size, bool)
    for e in edges:
        d = np.abs((phase - e + 0.5) % 1.0 - 0.5)
        ok &= d > 2 * dt
    return ok


def test_sine_matches_numpy():
    x = js.render(js.Sine(freq=440, amp=0.8, phase=0.1), 1.0)[:, 0]
    # the 32-bit phase accumulator steps in units of sr / 2**32 (11 microhertz)
    f = round(440 * 2**32 / SR) * SR / 2**32
    ref = 0.8 * np.sin(2 * np.pi * (f * np.arange(x.size) / SR + 0.1))
    assert np.abs(x - ref).max() < 2e-6


@pytest.mark.parametrize(
    "cls,ideal,edges",
    [
        (js.Saw, lambda p: 2 * ((p + 0.5) % 1.0) - 1, [0.5]),
        (js.Square, lambda p: np.where(p < 0.5, 1.0, -1.0), [0.0, 0.5]),
        (js.Triangle, lambda p: 1 - 4 * np.abs((p + 0.25) % 1.0 - 0.5), [0.25, 0.75]),
    ],
    ids=["saw", "square", "triangle"],
)
def test_band_limited_shapes_equal_the_ideal_wave_away_from_edges(cls, ideal, edges):
    f = 97.0
    x = js.render(cls(freq=f), 0.2)[:, 0]
    p = naive_phase(f, x.size)
    ok = far_from(p, edges, f / SR)
    assert np.abs(x[ok] - ideal(p[ok])).max() < 1e-4


def test_pulse_width_sets_the_duty_cycle():
    for width in (0.1, 0.3, 0.75):
        x = js.render(js.Pulse(freq=100, width=width), 1.0)[:, 0]
        assert np.mean(x > 0) == pytest.approx(width, abs=0.002)


def test_triangle_harmonics_fall_as_one_over_k_squared():
    f = 200.0  # one second: bins land exactly on harmonics
    x = js.render(js.Triangle(freq=f), 1.0)[:, 0]
    spec = np.abs(np.fft.rfft(x)) / (x.size / 2)
    h1, h2, h3, h5 = (spec[int(k * f)] for k in (1, 2, 3, 5))
    assert h1 == pytest.approx(8 / np.pi**2, rel=2e-3)
    assert h3 / h1 == pytest.approx(1 / 9, rel=2e-2)
    assert h5 / h1 == pytest.approx(1 / 25, rel=3e-2)
    assert h2 / h1 < 1e-4


def alias_ratio_db(x: np.ndarray, f: float) -> float:
    """Power off the harmonic series relative to power on it (aliases, in dB)."""
    w = np.blackman(x.size)
    spec = np.abs(np.fft.rfft(x * w)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / SR)
    k = np.round(freqs / f)
    on = (np.abs(freqs - k * f) < 8) & (k >= 1)
    audible = freqs < 20000
    return 10 * np.log10(spec[~on & audible].sum() / spec[on].sum())


def test_polyblep_saw_aliases_far_less_than_a_naive_saw():
    f = 2489.0  # D#7: its harmonics fold back all over the audible band
    x = js.render(js.Saw(freq=f), 1.0)[:, 0].astype(np.float64)
    naive = 2 * ((naive_phase(f, x.size) + 0.5) % 1.0) - 1
    ours, theirs = alias_ratio_db(x, f), alias_ratio_db(naive, f)
    assert ours < theirs - 10, (ours, theirs)
    assert ours < -25, ours


def test_white_noise_is_uniform_flat_and_seeded():
    x = js.render(js.Noise(seed=1), 2.0)[:, 0].astype(np.float64)
    assert abs(x.mean()) < 0.01
    assert x.var() == pytest.approx(1 / 3, rel=0.01)
    low, high = band_power(x, 200, 2000), band_power(x, 10000, 20000)
    assert 10 * np.log10(high / low) == pytest.approx(0.0, abs=0.5)
    np.testing.assert_array_equal(x, js.render(js.Noise(seed=1), 2.0)[:, 0])


def test_pink_noise_falls_3_db_per_octave():
    x = js.render(js.Noise(color="pink", seed=2), 4.0)[:, 0].astype(np.float64)
    lo = band_power(x, 200, 400)
    hi = band_power(x, 3200, 6400)  # four octaves up
    assert 10 * np.log10(hi / lo) == pytest.approx(-12.0, abs=1.0)


@pytest.mark.parametrize(
    "shape,fn",
    [
        ("sine", lambda p: np.sin(2 * np.pi * p)),
        ("triangle", lambda p: 1 - 4 * np.abs((p + 0.25) % 1.0 - 0.5)),
        ("saw", lambda p: 2 * ((p + 0.5) % 1.0) - 1),
        ("square", lambda p: np.where(p < 0.5, 1.0, -1.0)),
    ],
)
def test_lfo_shapes_with_amp_and_offset(shape, fn):
    x = js.render(js.LFO(freq=3, amp=200, offset=1000, shape=shape), 1.0)[:, 0]
    p = naive_phase(3, x.size)
    ok = far_from(p, [0.0, 0.5], 3 / SR)
    assert np.abs(x[ok] - (1000 + 200 * fn(p[ok]))).max() < 0.05


def test_sample_and_hold_changes_once_per_cycle():
    x = js.render(js.LFO(freq=10, shape="sh", seed=3), 1.0)[:, 0]
    changes = np.flatnonzero(np.diff(x) != 0) + 1
    np.testing.assert_allclose(changes, np.arange(1, 10) * SR / 10, atol=1)
    assert np.all(np.abs(x) <= 1.0) and len(np.unique(x)) == 10


def test_frequency_modulation_per_sample():
    # an FM pair: the carrier's instantaneous frequency follows the modulator sample by sample
    mod = js.Sine(freq=5, amp=100)
    x = js.render(js.Sine(freq=1000 + mod), 1.0)[:, 0].astype(np.float64)
    inst = 1000 + 100 * np.sin(2 * np.pi * 5 * np.arange(x.size) / SR)
    phase = (
        np.concatenate([[0.0], np.cumsum(inst)[:-1]]) / SR
    )  # sample n plays the phase before its step
    # float32 signals: the summed frequency carries ~3e-5 Hz of rounding per sample
    assert np.abs(x - np.sin(2 * np.pi * phase)).max() < 2e-3


@pytest.mark.parametrize(
    "cls", [js.Sine, js.Saw, js.Square, js.Triangle, js.Pulse], ids=lambda c: c.__name__
)
def test_fixed_pitch_kernel_sounds_exactly_like_the_general_one(cls):
    # numbers pick the fixed-pitch kernel; the same numbers as signals pick the general one
    fixed = cls(freq=1234.5, phase=0.3, amp=0.7)
    general = cls(
        freq=js.LFO(freq=0, amp=0, offset=1234.5), phase=js.LFO(freq=0, amp=0, offset=0.3), amp=0.7
    )
    np.testing.assert_array_equal(js.render(fixed, 0.1), js.render(general, 0.1))
