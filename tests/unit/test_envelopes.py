"""ADSR and AR against their definitions."""

from __future__ import annotations

import numpy as np
import pytest

import jupysynth as js

from .dsp import SR


def gate_events(env, on, off):
    return [(on, env, "gate", 1.0), (off, env, "gate", 0.0)]


def test_adsr_segments():
    env = js.ADSR(attack=0.01, decay=0.1, sustain=0.5, release=0.2)
    x = js.render(env, 1.0, events=gate_events(env, 0.0, 0.5))[:, 0].astype(np.float64)
    a = int(0.01 * SR)
    np.testing.assert_allclose(x[:a], np.arange(1, a + 1) / a, rtol=2e-7)  # linear (float32 out)
    assert x[a - 1] == 1.0
    # decay: 60 dB of the way from 1 to the sustain in 0.1 s
    d = a - 1 + int(0.1 * SR)
    assert x[d] - 0.5 == pytest.approx(0.5e-3, rel=1e-3)
    assert x[int(0.45 * SR)] == pytest.approx(0.5, abs=1e-9)
    # release: 60 dB down from the sustain in 0.2 s
    r = int(0.5 * SR) - 1 + int(0.2 * SR)
    assert x[r] == pytest.approx(0.5e-3, rel=1e-3)
    assert np.all(x[int(0.9 * SR) :] == 0.0)  # snapped to exact zero below -100 dB


def test_ar_holds_one_while_gated():
    env = js.AR(attack=0.005, release=0.05)
    x = js.render(env, 0.5, events=gate_events(env, 0.1, 0.3))[:, 0]
    assert np.all(x[int(0.11 * SR) : int(0.3 * SR)] == 1.0)
    assert x[int(0.3 * SR) + int(0.05 * SR) - 1] == pytest.approx(1e-3, rel=1e-3)


def test_retrigger_restarts_the_attack_from_the_current_level():
    env = js.ADSR(attack=0.02, decay=0.05, sustain=0.3, release=0.5)
    events = gate_events(env, 0.0, 0.2) + [(0.25, env, "gate", 1.0)]
    x = js.render(env, 0.4, events=events)[:, 0].astype(np.float64)
    n = int(0.25 * SR)
    assert x[n] == pytest.approx(x[n - 1] + 1 / (0.02 * SR), rel=1e-6)  # no jump, no reset to 0
    assert np.max(np.abs(np.diff(x[n - 10 : n + 10]))) < 2 / (0.02 * SR)


def test_envelope_as_a_vca():
    env = js.AR(attack=0.0, release=0.01)
    osc = js.Sine(freq=1000)
    x = js.render(osc * env, 0.1, events=gate_events(env, 0.02, 0.05))[:, 0]
    y = js.render(osc, 0.1)[:, 0]
    on = slice(int(0.02 * SR), int(0.05 * SR))
    np.testing.assert_allclose(x[on], y[on], atol=1e-7)
    assert np.all(x[: int(0.02 * SR)] == 0.0)
