"""A dragged knob does not flood the engine, and the engine ends on the last value."""

from __future__ import annotations

import time

import numpy as np
import pytest

import jupysynth as js
from jupysynth.player import Engine, play, stop

SR = 48000


def peak_hz(x: np.ndarray, fs: float = SR) -> float:
    """Frequency of the largest spectral peak, refined between bins (Hann window, parabola)."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-30)
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * fs / len(x)


def test_a_thousand_rapid_sets_send_a_few_messages_and_land_on_the_last():
    with Engine(headless=True) as engine:
        osc = js.Sine(freq=200, amp=0.5)
        play(osc, engine)
        before = engine.status()["messages"]
        for v in np.linspace(200.0, 1234.0, 1000):
            osc.freq = float(v)
        # no sync: the trailing send must come from the timer on its own
        time.sleep(0.2)
        sent = engine.status()["messages"] - before - 1  # less the /status asking
        assert 1 <= sent <= 24, f"{sent} OSC messages for 1000 sets"
        x = engine.record(0.25)[:, 0]
        assert peak_hz(x) == pytest.approx(1234.0, abs=0.5)
        # a set after the drag, then a sync: the sync carries it even when held back
        osc.freq = 300.0
        osc.freq = 440.0
        engine.sync()
        assert peak_hz(engine.record(0.25)[:, 0]) == pytest.approx(440.0, abs=0.5)
        stop(osc, engine)
