"""Scope taps: the engine copies a module's output into a kernel's shared-memory ring."""

from __future__ import annotations

import importlib
import os
import time
from pathlib import Path

import numpy as np
import pytest

import jupysynth as js
from jupysynth.control.tap import Tap
from jupysynth.errors import EngineError
from jupysynth.player import Engine, play, stop

SR = 48000


def peak_hz(x: np.ndarray, fs: float = SR) -> float:
    """Frequency of the largest spectral peak, refined between bins (Hann window, parabola)."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-30)
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * fs / len(x)


def my_segments() -> set[str]:
    """The tap segments of this user's engines in /dev/shm (other engines' too, if any run)."""
    return {p.name for p in Path("/dev/shm").glob(f"jupysynth-{os.getuid()}-tap-*")}


def wait_for(pred, timeout: float = 3.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def engine():
    with Engine(headless=True) as e:
        yield e
    assert not e.running


def test_tap_reads_the_engines_sine_live_and_leaves_no_segment(engine):
    osc = js.Sine(freq=1000, amp=0.5)
    play(osc, engine)
    try:
        with Tap(engine, osc.id) as tap:
            assert tap.name in my_segments()
            wait_for(lambda: tap.written >= 8192)
            x = tap()
            assert x.shape == (8192,) and x.dtype == np.float32
            assert peak_hz(x) == pytest.approx(1000.0, abs=0.5)
            assert np.abs(x).max() == pytest.approx(0.5, abs=1e-3)
            # the engine keeps writing, block after block, in real time
            n1 = tap.written
            time.sleep(0.1)
            n2 = tap.written
            assert 0.05 * SR < n2 - n1 < 0.3 * SR
            assert (n2 - n1) % engine.status()["blocksize"] == 0
            # and a knob change shows up in the tap
            osc.freq = 2000
            wait_for(lambda: tap.written >= n2 + 2 * 8192)
            assert peak_hz(tap()) == pytest.approx(2000.0, abs=0.5)
        assert tap.name not in my_segments()
        assert tap.written == 0
        with pytest.raises(EngineError, match="closed"):
            tap()
    finally:
        stop(osc, engine)


def test_tap_of_a_modulator_not_on_the_output(engine):
    lfo = js.Sine(freq=3000, amp=1.0)
    carrier = js.Sine(freq=lfo * 10 + 500, amp=0.1)
    play(carrier, engine)
    try:
        with Tap(engine, lfo.id) as tap:
            wait_for(lambda: tap.written >= 8192)
            assert peak_hz(tap()) == pytest.approx(3000.0, abs=0.5)
    finally:
        stop(carrier, engine)
    assert tap.name not in my_segments()


def test_tap_of_an_unknown_module_is_refused_and_makes_no_segment(engine):
    before = my_segments()
    with pytest.raises(EngineError, match="no module #987654"):
        Tap(engine, 987654)
    assert my_segments() == before


def test_engine_stop_unlinks_the_taps_left_open():
    with Engine(headless=True) as e:
        osc = js.Sine(freq=440)
        play(osc, e)
        tap = Tap(e, osc.id)
        wait_for(lambda: tap.written > 0)
        assert tap.name in my_segments()
    # the engine unlinked it on its way out; the kernel side lets go without complaint
    assert tap.name not in my_segments()
    written = tap.written
    tap.close()
    assert written > 0 and tap.written == 0


def test_taps_read_modules_rendered_by_workers_even_in_a_split_voice_bank():
    """With workers, the tapped output is copied to the shared bus by its worker."""
    lfo = js.Sine(freq=2.0)
    voices = [
        js.LowPass(js.Saw(freq=100 + 7 * i, amp=0.01), cutoff=900 + 400 * lfo) for i in range(48)
    ]
    mix = js.Mix(*voices)
    probe = js.Sine(freq=1500, amp=0.25)  # a light part of its own
    with Engine(headless=True, workers=2) as e:
        play([mix, probe], e)
        with Tap(e, probe.id) as t_probe, Tap(e, lfo.id) as t_lfo, Tap(e, voices[30].id) as t_v:
            wait_for(lambda: min(t.written for t in (t_probe, t_lfo, t_v)) >= 8192)
            assert peak_hz(t_probe()) == pytest.approx(1500.0, abs=0.5)
            x = t_lfo()
            # the LFO every worker copies: 2 Hz, full scale, steps of one sample
            assert np.abs(x).max() == pytest.approx(1.0, abs=1e-3)
            assert np.abs(np.diff(x)).max() < 2 * np.pi * 2.0 / SR * 1.01
            v = t_v()
            assert 0.001 < np.abs(v).max() < 0.05
            assert peak_hz(v) == pytest.approx(310.0, abs=1.0)
        assert e.status()["faults"] == {}
    assert not {t_probe.name, t_lfo.name, t_v.name} & my_segments()


def test_scope_of_a_playing_module_reads_the_engine_and_closes_its_tap(engine, monkeypatch):
    from jupysynth.notebook.live import Session

    # the package re-exports the function scope() under the module's name
    scope_mod = importlib.import_module("jupysynth.notebook.scope")

    monkeypatch.setattr(scope_mod, "tap_provider", Session(engine=engine).scope_tap)
    osc = js.Sine(freq=1000, amp=0.5)
    play(osc, engine)
    try:
        view = scope_mod.spectrum(osc)
        assert isinstance(view.source, Tap)
        assert view.source.name in my_segments()
        wait_for(lambda: view.source.written >= 8192)
        view.update()
        assert view.peak == pytest.approx(1000.0, abs=SR / 4096)
        view.close()
        assert view.source.name not in my_segments()
    finally:
        stop(osc, engine)
    # a module the engine does not hold is rendered in the kernel, as before
    view = scope_mod.scope(js.Sine(freq=440))
    assert isinstance(view.source, scope_mod.OfflineSource)
    view.close()
