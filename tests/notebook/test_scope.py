"""Scopes: a stable trigger, a calibrated spectrum, offline sources, the refresh thread."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import jupysynth as js
from jupysynth.notebook.scope import (
    SOURCE_FRAMES,
    OfflineSource,
    Oscilloscope,
    Spectrum,
    scope,
    spectrum,
    spectrum_db,
    trigger,
)

SR = 48000


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def sine(freq: float, n: int, start: int = 0, amp: float = 1.0) -> np.ndarray:
    t = (np.arange(n) + start) / SR
    return amp * np.sin(2 * np.pi * freq * t)


@pytest.mark.parametrize("freq", [100.0, 441.3, 1234.5])
def test_trigger_holds_a_sine_still_across_frames(freq):
    # two frames taken at unrelated moments: a free-running view would differ by up to 2
    a, ok_a = trigger(sine(freq, 6000, start=0), 960)
    b, ok_b = trigger(sine(freq, 6000, start=3371), 960)
    assert ok_a and ok_b
    assert np.max(np.abs(a - b)) < 2e-3
    # it starts at the rising zero crossing
    assert abs(a[0]) < 2e-3 and a[1] > a[0]


def test_trigger_frames_of_a_rendered_oscillator_match():
    x = js.render(js.Sine(freq=330, amp=0.8), 0.5)[:, 0]
    a, _ = trigger(x[:8192], 960)
    b, _ = trigger(x[10000 : 10000 + 8192], 960)
    assert np.max(np.abs(a - b)) < 2e-3


def test_trigger_ignores_noise_on_a_slow_edge():
    rng = np.random.default_rng(1)
    x = sine(50.0, 8000) + 0.005 * rng.standard_normal(8000)
    a, ok = trigger(x, 480)
    assert ok
    # fired on the real rising edge: the frame climbs (a retrigger would start anywhere)
    assert np.polyfit(np.arange(48), a[:48], 1)[0] > 0
    assert a[100] > 0.5


def test_trigger_free_runs_without_a_crossing():
    frame, ok = trigger(np.full(3000, 0.25), 480)
    assert not ok and frame.shape == (480,) and np.all(frame == 0.25)
    short, ok = trigger(np.ones(100), 480)
    assert not ok and short.shape == (480,)


def test_spectrum_peak_is_at_the_sine_bin_and_calibrated():
    nfft = 4096
    k = 100
    f = k * SR / nfft  # exactly on a bin
    freqs, db = spectrum_db(sine(f, nfft, amp=0.5), SR, nfft)
    assert freqs[np.argmax(db)] == pytest.approx(f)
    assert db.max() == pytest.approx(20 * np.log10(0.5), abs=0.01)
    assert freqs[0] == pytest.approx(SR / nfft)  # no DC bin on a log axis
    assert freqs.size == db.size == nfft // 2


def test_spectrum_of_silence_sits_on_the_floor():
    _, db = spectrum_db(np.zeros(4096), SR, floor=-120.0)
    assert np.all(db == -120.0)


def test_offline_source_renders_the_patch_paced_by_the_clock():
    clock = FakeClock()
    osc = js.Sine(freq=375, amp=0.5)  # 128 samples per period
    src = OfflineSource(osc, samplerate=SR, clock=clock)
    x = src()
    assert x.shape == (SOURCE_FRAMES,) and x.dtype == np.float32
    expected = js.render(osc, SOURCE_FRAMES / SR)[:, 0]
    np.testing.assert_allclose(x, expected, atol=1e-6)
    # nothing new until time passes; then exactly the frames that played
    assert np.array_equal(src(), x)
    clock.t += 1024 / SR
    y = src()
    np.testing.assert_array_equal(y[:-1024], x[1024:])
    longer = js.render(osc, (SOURCE_FRAMES + 1024) / SR)[:, 0]
    np.testing.assert_allclose(y, longer[1024:], atol=1e-6)


def test_offline_source_follows_parameter_changes():
    clock = FakeClock()
    osc = js.Sine(freq=440, amp=0.5)
    src = OfflineSource(osc, clock=clock)
    src()
    osc.amp = 0.1
    clock.t += 0.1
    x = src()
    assert np.max(np.abs(x[-2000:])) == pytest.approx(0.1, abs=1e-3)
    # connecting a new module takes a new snapshot of the patch
    osc.amp = 0.2 * js.LFO(freq=0.0, offset=1.0)
    clock.t += 0.1
    assert np.max(np.abs(src()[-2000:])) == pytest.approx(0.2, abs=1e-3)
    src.close()
    assert src._on_change not in osc._listeners


def test_scope_view_draws_a_stable_frame_from_an_offline_render():
    view = scope(js.Sine(freq=500, amp=0.5), window=0.01)
    assert view.triggered and view.frames_drawn == 1
    y = view.line.y
    assert isinstance(y, np.ndarray) and y.shape == (480,)
    assert view.line.x[-1] == pytest.approx(1000 * 479 / SR)
    first = y.copy()
    view.update()
    assert np.max(np.abs(view.line.y - first)) < 2e-3
    view.close()


def test_spectrum_view_finds_the_oscillator():
    view = spectrum(js.Sine(freq=2000, amp=0.5))
    assert abs(view.peak - 2000) <= SR / 4096
    assert view.line.y.dtype == np.float32
    view.close()


def test_the_refresh_thread_runs_only_while_displayed_and_stops_on_close():
    calls = []

    def source():
        calls.append(time.monotonic())
        return sine(440, 8192)

    view = Oscilloscope(source, SR, fps=50)
    assert not view.running and len(calls) == 1  # the first frame, drawn once
    view._view_count = 1  # the front end displayed it
    deadline = time.monotonic() + 5
    while len(calls) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert view.running and len(calls) >= 6
    view._view_count = 0  # the output was cleared
    assert not view.running
    n = len(calls)
    time.sleep(0.1)
    assert len(calls) == n
    view._view_count = 2
    assert view.running
    view.close()
    assert not view.running
    view._view_count = 1  # a closed view never starts again
    assert not view.running
    assert not any(t.name == "jupysynth-scope" for t in threading.enumerate())


def test_a_failing_source_stops_the_view_and_says_why():
    def source():
        raise RuntimeError("tap gone")

    view = Spectrum(source, SR)
    assert view.error == "RuntimeError: tap gone"
    assert "stopped: RuntimeError: tap gone" in view.figure.title
    view.close()


def test_scope_rejects_a_window_it_cannot_show():
    with pytest.raises(ValueError, match="window=0.5 s is out of range"):
        Oscilloscope(lambda: np.zeros(8192), SR, window=0.5)
