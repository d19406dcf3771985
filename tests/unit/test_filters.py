"""State-variable filters against the bilinear transform of their analog prototypes."""

from __future__ import annotations

import numpy as np
import pytest

import jupysynth as js

from .dsp import SR, amplitude_at


def analytic_gain(kind: str, f: float, fc: float, q: float) -> float:
    # trapezoidal SVF == bilinear transform with the cutoff prewarped:
    # s = j * tan(pi f / sr) / tan(pi fc / sr) on the normalised prototype
    s = 1j * np.tan(np.pi * f / SR) / np.tan(np.pi * fc / SR)
    k = 1 / q
    den = s * s + k * s + 1
    num = {"low": 1, "high": s * s, "band": k * s, "notch": s * s + 1}[kind]
    return float(abs(num / den))


FILTERS = {"low": js.LowPass, "high": js.HighPass, "band": js.BandPass, "notch": js.Notch}


@pytest.mark.parametrize("kind", list(FILTERS))
@pytest.mark.parametrize("q", [0.707, 4.0])
def test_magnitude_response_matches_the_math(kind, q):
    fc = 1200.0
    for f in (150.0, 600.0, 1200.0, 2500.0, 9000.0):
        if kind == "notch" and f == fc:
            continue  # exactly zero: checked below
        x = js.render(FILTERS[kind](js.Sine(freq=f, amp=0.5), cutoff=fc, q=q), 0.6)[:, 0]
        steady = x[int(0.3 * SR) :].astype(np.float64)
        got = amplitude_at(steady, f) / 0.5
        want = analytic_gain(kind, f, fc, q)
        assert 20 * np.log10(got / want) == pytest.approx(0.0, abs=0.05), (kind, q, f, got, want)


def test_lowpass_gain_at_cutoff_is_q_and_notch_rejects_it():
    fc = 2000.0
    x = js.render(js.LowPass(js.Sine(freq=fc, amp=0.1), cutoff=fc, q=8), 0.6)[:, 0]
    assert amplitude_at(x[int(0.3 * SR) :], fc) / 0.1 == pytest.approx(8.0, rel=1e-3)
    y = js.render(js.Notch(js.Sine(freq=fc, amp=0.5), cutoff=fc, q=1), 0.6)[:, 0]
    assert np.abs(y[int(0.3 * SR) :]).max() < 1e-3


def test_cutoff_modulated_per_sample_at_high_q_stays_stable():
    sweep = js.Sine(freq=40, amp=9000, phase=0.0) + 10000  # 1 kHz .. 19 kHz, 40 times a second
    x = js.render(js.LowPass(js.Saw(freq=110, amp=0.5), cutoff=sweep, q=50), 2.0)
    assert np.isfinite(x).all()
    assert np.abs(x).max() < 60  # resonance rings but never runs away


def test_modulated_cutoff_equals_stepped_constant_cutoff():
    # a cutoff signal that is constant must sound exactly like the number
    a = js.render(js.LowPass(js.Saw(freq=220), cutoff=js.LFO(freq=0, offset=900, amp=0), q=3), 0.2)
    b = js.render(js.LowPass(js.Saw(freq=220), cutoff=900, q=3), 0.2)
    np.testing.assert_array_equal(a, b)
