"""The engine core applying OSC messages on its frame clock, in-process (no device, no socket).

The backbone: a patch and time-tagged changes give the same samples as
:func:`jupysynth.render`, wherever the block boundaries fall.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import jupysynth as js
from jupysynth.control.packets import ntp_from_unix
from jupysynth.engine.core import EngineCore, RecordJob
from jupysynth.errors import EngineError
from jupysynth.graph import Port

SR, BS = 48000, 128
T0 = 1_800_000_000.0


class Core:
    """An EngineCore with its replies collected."""

    def __init__(self) -> None:
        self.errors: list[tuple] = []
        self.replies: list[tuple] = []
        self.core = EngineCore(
            SR,
            BS,
            ntp_from_unix(T0),
            lambda *a: self.errors.append(a),
            lambda *a: self.replies.append(a),
        )
        self.buf = np.zeros((BS, 2), dtype=np.float32)

    def at(self, frame: int | None):
        return None if frame is None else ntp_from_unix(T0 + frame / SR)

    def send(self, address: str, *args, frame: int | None = None) -> None:
        self.core.submit(self.at(frame), address, args, ("test", 0))

    def block(self) -> np.ndarray:
        self.core.render_block(self.buf)
        return self.buf.copy()

    def run_until(self, job: RecordJob) -> np.ndarray:
        while not job.done.is_set():
            self.core.render_block(self.buf)
        assert job.error is None, job.error
        return job.buf


def spec(m: js.Module) -> str:
    vals = {k: [v.module.id, v.index] if isinstance(v, Port) else v for k, v in m._values.items()}
    return json.dumps({"values": vals, "options": m._opts})


def create(c: Core, mods: list[js.Module], out: js.Module, frame: int | None = None) -> None:
    for m in mods:
        c.send("/module/new", m.id, type(m).__name__, spec(m), frame=frame)
    c.send("/out/add", out.id, frame=frame)


@pytest.mark.parametrize("start", [384, 500, 1000 - 1])
def test_tagged_patch_and_changes_render_exactly_like_offline(start):
    c = Core()
    for _ in range(3):
        c.block()
    saw = js.Saw(freq=220, amp=0.5)
    lfo = js.Sine(freq=3.0)
    lp = js.LowPass(saw, cutoff=900 + 400 * lfo, q=2)
    cutoff = lp.cutoff  # the MulAdd arithmetic built
    create(c, [saw, lfo, cutoff, lp], lp, frame=start)
    events = [
        (0.01, saw, "freq", 330.0),
        (0.0123, lp, "q", 0.7),
        (0.05, lfo, "freq", 7.0),
        (0.0501, saw, "amp", 0.25),
    ]
    for t, m, k, v in events:
        c.send("/param/set", m.id, k, v, frame=start + int(round(t * SR)))
    job = RecordJob(start, int(0.1 * SR))
    c.core.record(job)
    live = c.run_until(job)
    offline = js.render(lp, 0.1, SR, BS, events=events)
    assert c.errors == []
    assert c.core.late == 0
    np.testing.assert_array_equal(live, offline)


def test_tagged_connection_splits_the_block_at_its_frame():
    c = Core()
    osc = js.Sine(freq=440, amp=0.5)
    lfo = js.Sine(freq=5.0, amp=100)
    create(c, [osc, lfo], osc, frame=0)
    c.send("/module/new", lfo.id, "Sine", spec(lfo))  # already there: refused
    c.block()
    assert "already exists" in c.errors[-1][2]
    mod = 440 + lfo
    c.send("/module/new", mod.id, "MulAdd", spec(mod), frame=200)
    c.send("/param/connect", osc.id, "freq", mod.id, 0, frame=200)
    job = RecordJob(0, 1024)
    c.core.record(job)  # starts at the next block: frame 128, and 0 is already rendered
    c.block()
    assert job.error is not None and "already rendered" in job.error
    job = RecordJob(None, 512)
    c.core.record(job)
    live = c.run_until(job)  # frames 256..767
    events = [(200 / SR, osc, "freq", mod)]
    offline = js.render(osc, 768 / SR, SR, BS, events=events)
    np.testing.assert_array_equal(live, offline[256:768])


def test_untagged_set_glides_across_the_next_block():
    c = Core()
    dc = js.MulAdd(0.0, 0.0, 1.0)  # outputs `add`, a constant
    create(c, [dc], dc)
    first = c.block()
    assert np.all(first == 1.0)
    c.send("/param/set", dc.id, "add", 0.0)
    glide = c.block()[:, 0]
    assert glide[0] < 1.0 and glide[-1] == pytest.approx(0.0, abs=1e-6)
    assert np.all(np.diff(glide) < 0)  # a ramp, not a step
    assert np.all(c.block() == 0.0)


def test_late_tag_applies_at_the_next_block_and_is_counted():
    c = Core()
    dc = js.MulAdd(0.0, 0.0, 1.0)
    create(c, [dc], dc, frame=0)
    for _ in range(4):
        c.block()
    c.send("/param/set", dc.id, "add", 0.5, frame=10)  # long past
    assert np.all(c.block() == 0.5)  # no glide: a tagged change is a step
    assert c.core.late == 1


def test_errors_at_apply_time_reply_and_the_clock_goes_on():
    c = Core()
    c.send("/param/set", 99, "freq", 440.0)
    c.send("/out/add", 99)
    c.send("/param/connect", 99, "freq", 98, 0)
    osc = js.Sine()
    create(c, [osc], osc)
    c.send("/param/set", osc.id, "freq", float("nan"))
    c.send("/param/set", osc.id, "freq", 1e30)
    c.send("/param/set", osc.id, "frq", 440.0)
    frame = c.core.frame
    c.block()
    assert c.core.frame == frame + BS
    messages = [e[2] for e in c.errors]
    assert len(messages) == 6, messages
    assert "no module #99" in messages[0]
    assert "finite" in messages[3] and "out of range" in messages[4]
    assert "unknown parameter 'frq'" in messages[5]
    assert all(e[0] == ("test", 0) for e in c.errors)


def test_sync_replies_after_what_came_before():
    c = Core()
    osc = js.Sine()
    create(c, [osc], osc)
    c.send("/sync", 42)
    assert c.replies == []
    c.block()
    assert c.replies == [(("test", 0), "/synced", (42,), "i")]
    assert c.core.playing


def test_panic_fades_then_forgets_what_was_sent_before_it():
    c = Core()
    dc = js.MulAdd(0.0, 0.0, 1.0)
    create(c, [dc], dc, frame=0)
    c.block()
    c.send("/param/set", dc.id, "add", 0.5, frame=10_000)  # scheduled: dropped by the panic
    c.send("/panic", frame=c.core.frame + 64)
    faded = c.block()[:, 0]
    assert np.all(faded[:64] == 1.0)
    assert faded[64] == 1.0 and faded[-1] == 0.0 and np.all(np.diff(faded[64:]) < 0)
    assert c.core.table.nodes == {} and not c.core.playing
    osc = js.Sine(freq=1000)
    create(c, [osc], osc)  # sent after the panic: kept
    c.block()
    assert np.abs(c.block()).max() > 0.5
    assert c.core.next_scheduled() is None


def test_a_module_producing_nan_is_muted_and_the_rest_plays_on():
    c = Core()
    good = js.Sine(freq=1000, amp=0.5)
    bad = js.MulAdd(js.MulAdd(js.Sine(freq=50), 1e30), 1e30)
    mods = [good, bad.input.input, bad.input, bad]
    for m in mods:
        c.send("/module/new", m.id, type(m).__name__, spec(m))
    c.send("/out/add", good.id)
    c.send("/out/add", bad.id)
    with pytest.warns(js.JupysynthWarning):
        for _ in range(40):
            c.block()
    out = c.block()
    assert np.isfinite(out).all() and 0.3 < np.abs(out).max() <= 0.5
    assert any("NaN or infinity" in msg for msg in c.core.faults().values())


def test_submit_refuses_tags_an_hour_ahead():
    c = Core()
    with pytest.raises(EngineError, match="ahead of the engine's clock"):
        c.send("/ping", frame=SR * 3601)


def test_skip_moves_the_clock_without_rendering_and_records_silence():
    c = Core()
    job = RecordJob(None, 1000)
    c.core.record(job)
    c.block()
    c.core.skip(2000)
    assert job.done.is_set() and not job.buf.any()
    assert c.core.frame == BS + 2000


def test_fade_crossfades_the_changes_at_its_frame_and_keeps_freed_modules_until_it_ends():
    c = Core()
    one, half = js.MulAdd(0.0, 0.0, 1.0), js.MulAdd(0.0, 0.0, 0.5)
    create(c, [one], one)
    c.send("/module/new", half.id, "MulAdd", spec(half))
    c.block()
    # one bundle: fade over 256 frames, swap the outputs, free the leaving module
    for address, *args in [
        ("/fade", 256 / SR),
        ("/out/remove", one.id),
        ("/module/free", one.id),
        ("/out/add", half.id),
    ]:
        c.send(address, *args, frame=c.core.frame)
    x = np.concatenate([c.block()[:, 0] for _ in range(3)])
    ramp = np.arange(1, 257) / 256
    np.testing.assert_allclose(x[:256], 1.0 - ramp + 0.5 * ramp, atol=1e-6)
    assert np.all(x[256:] == 0.5)
    assert one.id not in c.core.renderer.nodes  # dropped once faded
    c.send("/fade", 11.0)
    c.block()
    assert "out of range" in c.errors[-1][2]
