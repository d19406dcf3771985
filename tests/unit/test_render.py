"""The block loop: faults, bad events, live-style changes, WAV files, the demo."""

from __future__ import annotations

import subprocess
import sys
import wave

import numpy as np
import pytest

import jupysynth as js
from jupysynth import kernels
from jupysynth.graph import Module, snapshot
from jupysynth.renderer import Renderer

from .dsp import SR


def test_nan_is_caught_named_and_muted_while_the_rest_plays():
    good = js.Sine(freq=440, amp=0.5)
    # 1e6 * 1e30 * 1e30 overflows float32 to infinity
    bad = js.MulAdd(js.MulAdd(js.Sine(freq=3, amp=1e6), mul=1e30), mul=1e30)
    with pytest.warns(js.JupysynthWarning, match=rf"MulAdd#{bad.id} produced NaN or infinity"):
        x = js.render([good, bad], 0.2)
    assert np.isfinite(x).all()
    alone = js.render(good, 0.2)
    # after the faulty block the good sine is heard exactly as alone
    np.testing.assert_array_equal(x[64:], alone[64:])


class _Broken(Module):
    """A module whose kernel raises (it is called with the wrong arguments)."""

    params = ()
    kernel = "bus.scrub"


def test_a_kernel_that_raises_is_muted_and_reported():
    good = js.Saw(freq=110, amp=0.3)
    broken = _Broken()
    nodes, outs = snapshot([good, broken])
    r = Renderer(nodes, outs, SR, 64)
    with pytest.warns(js.JupysynthWarning, match=f"_Broken#{broken.id}"):
        x = r.process(64).copy()
    assert "Traceback" in r.faults[broken.id]
    np.testing.assert_array_equal(x, js.render(good, 64 / SR))


def test_bad_events_are_refused_with_what_to_do():
    osc = js.Sine()
    other = js.Saw()
    with pytest.raises(js.ParamError, match="unknown parameter 'frq'.*valid: freq, amp, phase"):
        js.render(osc, 0.1, events=[(0.0, osc, "frq", 1)])
    with pytest.raises(js.PatchError, match="not part of the rendered patch"):
        js.render(osc, 0.1, events=[(0.0, other, "freq", 1)])
    with pytest.raises(js.ParamError, match="seconds >= 0"):
        js.render(osc, 0.1, events=[(-1.0, osc, "freq", 1)])
    with pytest.raises(js.ParamError, match="out of range"):
        js.render(osc, 0.1, events=[(0.0, osc, "freq", 1e30)])
    with pytest.raises(js.ParamError, match=r"\(time_seconds, module, param_name, value\)"):
        js.render(osc, 0.1, events=[(0.0, osc)])
    with pytest.raises(js.ParamError, match="seconds must be"):
        js.render(osc, float("nan"))


def test_events_can_patch_a_signal_in():
    lfo = js.Sine(freq=2, amp=400)
    f = js.LowPass(js.Saw(freq=110), cutoff=1000)
    x = js.render(f, 0.5, events=[(0.25, f, "cutoff", lfo + 1200)])
    ref = js.render(f, 0.25)
    np.testing.assert_array_equal(x[: ref.shape[0]], ref)
    assert np.isfinite(x).all()


def test_untagged_change_ramps_across_the_next_block():
    src = js.MulAdd(add=0.0)
    nodes, outs = snapshot(src)
    r = Renderer(nodes, outs, SR, 64)
    r.process(64)
    r.set(src.id, "add", 1.0, ramp=True)
    x = r.process(64)[:, 0].copy()
    np.testing.assert_allclose(x, np.arange(1, 65) / 64, rtol=1e-6)
    assert np.all(r.process(64)[:, 0] == 1.0)


def test_update_keeps_the_state_of_modules_that_stay():
    osc = js.Saw(freq=100)
    nodes, outs = snapshot(osc)
    r = Renderer(nodes, outs, SR, 64)
    first = np.concatenate([r.process(64)[:, 0].copy() for _ in range(3)])
    extra = js.Sine(freq=1000, amp=0.0)
    nodes2, outs2 = snapshot([osc, extra])
    r.update(nodes2, outs2)
    after = r.process(64)[:, 0].copy()
    whole = js.render(osc, 4 * 64 / SR)[:, 0]
    np.testing.assert_array_equal(np.concatenate([first, after]), whole)


def test_more_instances_reuse_the_compiled_kernel():
    js.render([js.Sine(freq=100 * k) for k in range(1, 3)], 0.01)
    fn = kernels.load("oscillators.sine_fixed")  # numbers for freq and phase pick it
    before = len(fn.signatures)
    js.render([js.Sine(freq=100 * k) for k in range(1, 300)], 0.01)
    assert len(fn.signatures) == before == 1


def test_write_wav_int16_and_float32(tmp_path):
    x = js.render(js.Pan(js.Sine(freq=440, amp=0.5), pos=-0.3), 0.1)
    p = js.write_wav(tmp_path / "a.wav", x)
    with wave.open(str(p)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, SR, 2)
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    np.testing.assert_allclose(pcm / 32767.0, x, atol=1 / 32767)
    scipy_io = pytest.importorskip("scipy.io.wavfile")
    sr, y = scipy_io.read(js.write_wav(tmp_path / "b.wav", x, format="float32"))
    assert sr == SR and y.dtype == np.float32
    np.testing.assert_array_equal(y, x)
    with pytest.raises(js.ParamError, match="'int16' or 'float32'"):
        js.write_wav(tmp_path / "c.wav", x, format="mp3")


def test_demo_command_writes_a_wav_and_a_png(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupysynth",
            "demo",
            "--offline",
            "--out",
            str(tmp_path),
            "--bars",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "demo.wav" in out.stdout and "demo.png" in out.stdout
    with wave.open(str(tmp_path / "demo.wav")) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    assert np.abs(pcm).max() > 3000  # it plays, not silence
    png = (tmp_path / "demo.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20000


def test_update_with_fade_crossfades_then_drops_the_old_modules():
    old, new = js.Sine(freq=440, amp=0.5), js.Saw(freq=110, amp=0.5)
    nodes, outs = snapshot(old)
    r = Renderer(nodes, outs, SR, 64)
    r.process(64)
    r.update(*snapshot(new), fade=480)
    x = np.concatenate([r.process(64)[:, 0].copy() for _ in range(10)])
    a = js.render(old, 11 * 64 / SR)[64:, 0].astype(np.float64)
    b = js.render(new, 10 * 64 / SR)[:, 0].astype(np.float64)
    g = np.minimum(np.arange(1, 641) / 480, 1.0)
    np.testing.assert_allclose(x, (1 - g) * a + g * b, atol=2e-6)
    assert old.id not in r.nodes and new.id in r.nodes


def test_update_with_fade_keeps_a_module_that_stays_steady():
    keep, extra = js.Sine(freq=440, amp=0.5), js.Saw(freq=110, amp=0.5)
    r = Renderer(*snapshot(keep), SR, 64)
    r.process(64)
    r.update(*snapshot([keep, extra]), fade=128)
    x = np.concatenate([r.process(64)[:, 0].copy() for _ in range(4)])
    a = js.render(keep, 5 * 64 / SR)[64:, 0].astype(np.float64)
    b = js.render(extra, 4 * 64 / SR)[:, 0].astype(np.float64)
    g = np.minimum(np.arange(1, 257) / 128, 1.0)
    np.testing.assert_allclose(x, a + g * b, atol=2e-6)


def test_a_freed_module_takes_its_fault_along():
    """An id used again after /module/free is a new module, not the faulted one."""
    import warnings

    from jupysynth.errors import JupysynthWarning
    from jupysynth.graph import snapshot

    class Raises(js.Module):
        params = (js.Param("x", 0.0, -1.0, 1.0),)

        def process(self, x):
            raise RuntimeError("broken on purpose")

    bad, good = Raises(), js.Sine(freq=440, amp=0.1)
    r = js.Renderer(*snapshot([bad, good]), 48000, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", JupysynthWarning)
        r.process(64)
    assert list(r.faults) == [bad.id]
    r.update(*snapshot(good))
    assert r.faults == {}
