"""The engine playing through a real PortAudio device: the virtual JACK sound card.

The engine process is one JACK client (``PortAudio-01``: this test process
holds ``PortAudio``); its output ports are wired to this process's input
ports, so what the engine played to the card is captured and analysed here.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import jupysynth as js
from jupysynth.player import Engine, play, stop

SR, BS = 48000, 128


def peak_hz(x: np.ndarray, fs: float = SR) -> float:
    """Frequency of the largest spectral peak, refined between bins (Hann window, parabola)."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-30)
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * fs / len(x)


def capture(card, engine: Engine, seconds: float) -> np.ndarray:
    """Record what ``engine`` plays, through JACK, in this process."""
    return card.capture(engine.info["jack_client"], seconds, SR)


@pytest.fixture(scope="module")
def engine(sound_card):
    with Engine(device=sound_card.device_index()) as e:
        yield e


def test_engine_plays_on_the_device(engine):
    status = engine.status()
    assert not status["headless"] and status["running"]
    assert "JACK" in status["device"]
    assert engine.info["jack_client"] is not None
    # lead (2 blocks) + PortAudio's output latency on JACK (one period here)
    assert 2 * BS / SR < status["latency"] < 0.05


def test_a_1khz_sine_reaches_the_card(engine, sound_card):
    osc = js.Sine(freq=1000, amp=0.5)
    play(osc, engine)
    try:
        x = capture(sound_card, engine, 1.2)
    finally:
        stop(osc, engine)
    for ch in range(2):
        seg = x[int(0.1 * SR) : int(1.1 * SR), ch]  # exactly 1 s: 1 Hz bins
        assert peak_hz(seg) == pytest.approx(1000.0, abs=0.5)
        rms_db = 20 * np.log10(np.sqrt(np.mean(seg.astype(np.float64) ** 2)))
        assert rms_db == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.5)
    status = engine.status()
    print(
        f"\n[audio] xruns {status['xruns']}, device underflows {status['device_underflows']}, "
        f"dsp load {status['dsp_load']:.4f} (peak {status['dsp_peak']:.3f}), "
        f"latency {status['latency'] * 1e3:.2f} ms"
    )


def test_a_knob_change_is_heard(engine, sound_card):
    osc = js.Sine(freq=600, amp=0.5)
    play(osc, engine)
    try:
        osc.freq = 1500
        engine.sync()
        x = capture(sound_card, engine, 0.6)
    finally:
        stop(osc, engine)
    assert peak_hz(x[int(0.05 * SR) : int(0.55 * SR), 0]) == pytest.approx(1500, abs=1)


def test_panic_silences_the_card(engine, sound_card):
    play(js.Saw(freq=220, amp=0.3), engine)
    js_panic = __import__("jupysynth.engine", fromlist=["panic"]).panic
    js_panic(engine)
    engine.sync()
    x = capture(sound_card, engine, 0.3)
    assert np.abs(x).max() < 1e-6
    assert engine.status()["modules"] == 0


def test_record_of_tagged_bundles_equals_offline_render_on_the_device(engine):
    """Recorded before the device, clocked by it: the same samples as jupysynth.render."""

    def patch():
        noise = js.Noise(amp=0.2, color="pink", seed=5)
        lfo = js.LFO(freq=3, amp=400, offset=1000, shape="triangle")
        voice = js.BandPass(noise + js.Square(freq=110, amp=0.2), cutoff=lfo, q=4)
        events = [(0.1, lfo, "freq", 6.0), (0.25, voice, "q", 1.5), (0.2501, lfo, "offset", 700.0)]
        return voice, events

    voice, events = patch()
    offline = js.render(voice, 0.5, SR, BS, events=events)
    # The engine re-anchors its clock to the card (drivers.FrameClock): a message sent
    # after a correction maps its tag to another frame than one sent before it, so
    # such a trial says nothing about determinism.  On this machine's JACK dummy card
    # t0 moves every few seconds while something plays (the driver loses time), and
    # re-anchors when the device starts anew after idling.  A silent module keeps the
    # device busy between trials, and a trial counts only if t0 is the same from before
    # its first message to after its record request was mapped (the request is sent
    # from a thread, and t0 read again 50 ms later, while the recording goes on: a
    # correction during the recording moves nothing already mapped).  Each trial has
    # a fresh patch: the last one's events changed its parameters.
    keep = js.Sine(freq=50, amp=0.0)
    play(keep, engine)
    engine.sync()
    time.sleep(0.3)  # the re-anchor of the start is past
    moves = []
    for _ in range(8):
        voice, events = patch()
        t0 = engine.status()["t0"]
        t = engine.time_of(engine.frame_at(time.time() + 0.3))
        play(voice, engine, at=t)
        for when, module, name, value in events:
            engine.send_bundle([("/param/set", module.id, name, value)], at=t + when)
        box: dict = {}
        recorder = threading.Thread(
            target=lambda box=box, t=t: box.update(x=engine.record(0.5, at=t))
        )
        recorder.start()
        time.sleep(0.05)
        mapped_t0 = engine.status()["t0"]
        recorder.join(30)
        live = box["x"]
        stop(voice, engine)
        status = engine.status()
        if mapped_t0 == t0:
            break
        moves.append(round((status["t0"] - t0) * 1e3, 2))
    else:
        pytest.fail(f"the engine's clock moved during each of 8 trials (ms: {moves})")
    stop(keep, engine)
    assert status["late"] == 0
    assert np.array_equal(live, offline)
