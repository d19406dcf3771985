"""Renderer.prepare / Renderer.apply: a patch built off the block thread, installed between blocks.

The reference for every test is :meth:`Renderer.update` called at the moment
the plan is applied: whatever happened between prepare and apply (blocks
rendered, numbers set, the patch replaced, a module muted), apply must sound
exactly like an update made then.
"""

from __future__ import annotations

import json
import math
import threading
import time

import numpy as np
import pytest

import jupysynth as js
from jupysynth import compile as compile_mod
from jupysynth import renderer as renderer_mod
from jupysynth.graph import snapshot, type_name
from jupysynth.renderer import Plan, Renderer

from .dsp import SR

BS = 64
SIGNAL = js.Param("input", 0.0, -1e30, 1e30)


class Drift(js.Module):
    """A process module whose memory is an attribute: a counter of the blocks it rendered."""

    params = (SIGNAL,)
    positional = ("input",)

    def setup(self):
        self.blocks = 0

    def process(self, input):
        self.blocks += 1
        return input * 0.0 + 0.001 * self.blocks


class Crush(js.Module):
    """A per-sample module with a state slot (numba compiles it in prepare)."""

    params = (SIGNAL, js.Param("amount", 0.5, 0.0, 1.0))
    positional = ("input",)
    sample_state = 1

    @staticmethod
    def sample(s, x, amount):
        s[0] = 0.9 * s[0] + 0.1 * x
        return math.tanh(s[0] * (1.0 + 8.0 * amount))


def blocks(r: Renderer, n: int) -> np.ndarray:
    return np.concatenate([r.process(BS).copy() for _ in range(n)])


def pair(patch) -> tuple[Renderer, Renderer]:
    """Two renderers playing the same patch (each with its own specs)."""
    return Renderer(*snapshot(patch), SR, BS), Renderer(*snapshot(patch), SR, BS)


def patches():
    """A playing patch and a new one sharing modules with it (their state must carry)."""
    saw = js.Saw(freq=110, amp=0.5)
    lfo = js.Sine(freq=2.0)
    lp = js.LowPass(saw, cutoff=800 + 400 * lfo, q=2)
    delay = js.Delay(lp, time=0.003, max_time=0.01, feedback=0.4, mix=0.5)
    drift = Drift(saw)
    old = [delay, js.Pan(drift, pos=0.5)]
    new = [
        delay,
        js.Pan(drift, pos=0.5),
        js.Pan(Crush(saw, amount=0.7), pos=-0.3),
        js.Sine(freq=330),
    ]
    return old, new


def test_prepare_then_apply_sounds_exactly_like_update():
    old, new = patches()
    a, b = pair(old)
    np.testing.assert_array_equal(blocks(a, 5), blocks(b, 5))
    a.update(*snapshot(new))
    plan = b.prepare(*snapshot(new))
    assert isinstance(plan, Plan)
    assert b.apply(plan) is True
    x, y = blocks(a, 20), blocks(b, 20)
    assert np.abs(y).max() > 0.1
    np.testing.assert_array_equal(x, y)
    assert a.faults == b.faults == {}


def test_prepare_leaves_the_running_patch_alone():
    old, new = patches()
    a, b = pair(old)
    blocks(a, 3), blocks(b, 3)
    b.prepare(*snapshot(new))  # never applied
    np.testing.assert_array_equal(blocks(a, 10), blocks(b, 10))


def test_state_is_carried_as_it_is_when_applied_not_when_prepared():
    old, new = patches()
    a, b = pair(old)
    blocks(a, 4), blocks(b, 4)
    plan = b.prepare(*snapshot(new))
    # the patch keeps playing between prepare and apply: phases, filter, delay line
    # and the Python object's counter move on, and must not be rewound by apply
    np.testing.assert_array_equal(blocks(a, 7), blocks(b, 7))
    a.update(*snapshot(new))
    b.apply(plan)
    np.testing.assert_array_equal(blocks(a, 20), blocks(b, 20))


def test_a_number_set_between_prepare_and_apply_is_kept():
    saw = js.Saw(freq=110, amp=0.5)
    lp = js.LowPass(saw, cutoff=800, q=2)
    a, b = pair(lp)
    blocks(a, 2), blocks(b, 2)
    added = [lp, js.Sine(freq=440, amp=0.1)]
    plan = b.prepare(*snapshot(added))
    b.set(saw.id, "freq", 220.0)
    b.set(lp.id, "cutoff", 2000.0)
    b.process(BS, [(10, lp.id, "q", 0.7)])  # an in-block event lands through set() too
    b.apply(plan)
    assert b.nodes[saw.id].values["freq"] == 220.0 and b.nodes[lp.id].values["q"] == 0.7
    # the reference: the same changes, then an update with the values they left
    a.set(saw.id, "freq", 220.0)
    a.set(lp.id, "cutoff", 2000.0)
    a.process(BS, [(10, lp.id, "q", 0.7)])
    nodes, outputs = snapshot(added)
    nodes[saw.id].values["freq"] = 220.0
    nodes[lp.id].values.update(cutoff=2000.0, q=0.7)
    a.update(nodes, outputs)
    np.testing.assert_array_equal(blocks(a, 10), blocks(b, 10))


def test_a_plan_made_stale_by_another_update_is_prepared_again():
    one, two = js.Sine(freq=220, amp=0.3), js.Saw(freq=330, amp=0.2)
    a, b = pair(one)
    blocks(a, 2), blocks(b, 2)
    plan = b.prepare(*snapshot([one, two]))
    for r in (a, b):
        r.update(*snapshot([one, js.Square(freq=55, amp=0.1)]))  # the structure moved on
    blocks(a, 3), blocks(b, 3)
    assert b.apply(plan, redo=False) is False  # nothing installed
    np.testing.assert_array_equal(blocks(a, 2), blocks(b, 2))
    assert b.apply(plan) is True  # prepared again against what plays now
    a.update(*snapshot([one, two]))
    np.testing.assert_array_equal(blocks(a, 10), blocks(b, 10))


def test_a_plan_made_stale_by_a_fault_keeps_the_culprit_muted():
    good = js.Sine(freq=1000, amp=0.5)
    bad = js.MulAdd(js.MulAdd(js.Sine(freq=50), 1e30), 1e30)
    r = Renderer(*snapshot([good, bad]), SR, BS)
    plan = r.prepare(*snapshot([good, bad, js.Saw(freq=110, amp=0.1)]))
    with pytest.warns(js.JupysynthWarning, match="NaN or infinity"):
        blocks(r, 40)  # the overflow mutes `bad` and rebuilds: the plan is stale now
    assert bad.id in r.disabled
    assert r.apply(plan) is True
    assert bad.id in r.disabled
    x = blocks(r, 10)
    assert np.isfinite(x).all() and np.abs(x).max() > 0.5


def test_a_redefined_process_class_takes_the_old_objects_attributes_at_apply():
    saw = js.Saw(freq=110)
    drift = Drift(saw)
    r = Renderer(*snapshot(drift), SR, BS)
    blocks(r, 3)
    redefined = type(
        "Drift",
        (js.Module,),
        {
            "params": Drift.params,
            "positional": Drift.positional,
            "setup": Drift.setup,
            "process": lambda self, input: 2 * Drift.process(self, input),
            "__module__": Drift.__module__,
            "__qualname__": Drift.__qualname__,
        },
    )
    try:
        assert js.Module._registry[type_name(Drift)] is redefined
        nodes, outputs = snapshot(drift)
        plan = r.prepare(nodes, outputs)
        blocks(r, 4)  # the old object counts on: 7 blocks
        r.apply(plan)
        y = r.process(BS)[:, 0]
    finally:
        js.Module._registry[type_name(Drift)] = Drift
    np.testing.assert_allclose(y, 2 * 0.001 * 8, rtol=1e-6)  # counted on from 7, doubled


def test_a_plan_is_stale_once_a_class_it_compiled_is_redefined():
    drift = Drift(js.Saw(freq=110))
    r = Renderer(*snapshot(js.Sine()), SR, BS)
    nodes, outputs = snapshot(drift)
    plan = r.prepare(nodes, outputs)  # compiled with Drift
    redefined = type(
        "Drift",
        (js.Module,),
        {
            "params": Drift.params,
            "positional": Drift.positional,
            "process": lambda self, input: input * 0.0 + 0.25,
            "__module__": Drift.__module__,
            "__qualname__": Drift.__qualname__,
        },
    )
    try:
        assert r.apply(plan, redo=False) is False  # it would run the old code
        assert r.apply(plan) is True
        assert type(r._processors[drift.id]) is redefined
        np.testing.assert_allclose(r.process(BS)[:, 0], 0.25)
    finally:
        js.Module._registry[type_name(Drift)] = Drift


def test_prepare_on_another_thread_while_blocks_render():
    """The engine's way: numba compiles the per-sample module on a thread, blocks go on."""
    old, new = patches()
    a, b = pair(old)
    box: dict = {}
    worker = threading.Thread(target=lambda: box.update(plan=b.prepare(*snapshot(new))))
    worker.start()
    played = 0
    while worker.is_alive():
        np.testing.assert_array_equal(a.process(BS), b.process(BS))
        played += 1
    worker.join()
    a.update(*snapshot(new))
    b.apply(box["plan"])
    np.testing.assert_array_equal(blocks(a, 20), blocks(b, 20))


def test_the_end_of_a_crossfade_installs_what_was_prepared_with_it(monkeypatch):
    one, two = js.MulAdd(0.0, 0.0, 1.0), js.MulAdd(0.0, 0.0, 0.5)
    r = Renderer(*snapshot(one), SR, BS)
    r.apply(r.prepare(*snapshot(two), fade=100))
    calls = []
    real = compile_mod.compile_schedule
    monkeypatch.setattr(
        renderer_mod, "compile_schedule", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    x = blocks(r, 3)[:, 0]
    ramp = np.arange(1, 101) / 100
    np.testing.assert_allclose(x[:100], 1.0 - ramp + 0.5 * ramp, atol=1e-6)
    assert np.all(x[100:] == 0.5)
    assert one.id not in r.nodes  # dropped once faded...
    assert calls == []  # ...without compiling on the block that ended the fade


def test_a_per_sample_function_that_does_not_compile_is_muted_at_its_first_block():
    class Broken(js.Module):
        params = (SIGNAL,)
        positional = ("input",)

        @staticmethod
        def sample(x):
            return {"not": "a number"}[x]

    good = js.Sine(freq=300)
    r = Renderer(*snapshot(good), SR, BS)
    bad = Broken(js.Saw())
    plan = r.prepare(*snapshot([good, bad]))  # compiles here and keeps the error
    r.apply(plan)
    with pytest.warns(js.JupysynthWarning, match="Broken.sample does not compile with numba"):
        x = r.process(BS).copy()
    assert bad.id in r.faults and "TypingError" in r.faults[bad.id]
    np.testing.assert_array_equal(x, js.render(good, BS / SR, SR, BS))


# -- the engine core's use of it: prepared on its worker thread while something plays --------


class GatedCore:
    """An EngineCore whose worker holds each plan it prepared until :attr:`gate` opens."""

    def __init__(self) -> None:
        from jupysynth.control.packets import ntp_from_unix
        from jupysynth.engine.core import EngineCore

        self.replies: list[tuple] = []
        self.errors: list[tuple] = []
        self.core = EngineCore(
            SR,
            BS,
            ntp_from_unix(0.0),
            lambda *a: self.errors.append(a),
            lambda *a: self.replies.append(a),
            limiter=False,  # levels are measured right after a module blew up
        )
        self.buf = np.zeros((BS, 2), dtype=np.float32)
        self.gate = threading.Event()
        self.gate.set()
        self.built = threading.Event()  # set once the worker has a plan, before the gate
        self.prepared = 0
        real = self.core.renderer.prepare

        def gated(*args, **kwargs):
            plan = real(*args, **kwargs)
            if threading.current_thread() is not threading.main_thread():  # update() calls it too
                self.built.set()
                self.gate.wait(10)  # built: now the renderer may move on under it
                self.prepared += 1
            return plan

        self.core.renderer.prepare = gated

    def send(self, address: str, *args) -> None:
        self.core.submit(None, address, args, ("test", 0))

    def new(self, m: js.Module, out: bool = True) -> None:
        values = {
            k: [v.module.id, v.index] if isinstance(v, js.Port) else v for k, v in m._values.items()
        }
        self.send("/module/new", m.id, type(m).__name__, json.dumps({"values": values}))
        if out:
            self.send("/out/add", m.id)

    def block(self) -> np.ndarray:
        self.core.render_block(self.buf)
        return self.buf.copy()

    def settle(self) -> None:
        """Let the worker finish; the next block installs what it prepared.

        The gate closes again before that block: a prepare it starts (a stale plan's
        second try) waits for the next settle, however fast the machine.
        """
        self.gate.set()
        preparer = self.core._preparer
        for _ in range(10_000):
            if self.core._job is None or preparer.result is not None:
                break
            time.sleep(0.001)
        self.gate.clear()
        self.block()

    def close(self) -> None:
        self.gate.set()
        self.core.close()


@pytest.fixture
def gated():
    g = GatedCore()
    yield g
    g.close()


def test_edits_while_something_plays_are_prepared_off_the_block_and_coalesce(gated):
    sine = js.Sine(freq=1000, amp=0.5)
    gated.new(sine)
    gated.block()  # nothing played: applied at once, on the block
    assert gated.prepared == 0 and sine.id in gated.core.renderer.nodes
    gated.gate.clear()
    saws = [js.Saw(freq=110 * (k + 1), amp=0.1) for k in range(3)]
    gated.new(saws[0])
    gated.send("/sync", 1)
    gated.block()  # asks; the worker starts after the block and waits at the gate
    for saw in saws[1:]:
        gated.new(saw)
    gated.send("/sync", 2)
    for _ in range(3):
        x = gated.block()  # the sine plays on alone, and nothing is answered yet
        np.testing.assert_allclose(np.abs(x).max(), 0.5, rtol=1e-3)
    assert gated.replies == [] and saws[0].id not in gated.core.renderer.nodes
    gated.settle()  # the first prepare lands; the two later edits wait for one more
    assert [r[2] for r in gated.replies] == [(1,)]
    assert saws[0].id in gated.core.renderer.nodes and saws[2].id not in gated.core.renderer.nodes
    gated.settle()
    assert [r[2] for r in gated.replies] == [(1,), (2,)]
    assert gated.prepared == 2  # three edits in two prepares
    assert all(s.id in gated.core.renderer.nodes for s in saws) and gated.errors == []


def test_a_number_set_on_a_module_being_prepared_lands_once_it_plays(gated):
    gated.new(js.Sine(freq=1000, amp=0.5))
    gated.block()
    gated.gate.clear()
    dc = js.MulAdd(0.0, 0.0, 0.25)
    gated.new(dc)
    gated.block()
    assert gated.built.wait(10)  # the worker's plan holds add = 0.25
    gated.send("/param/set", dc.id, "add", 0.125)  # the renderer has no such module yet
    gated.block()
    gated.settle()
    assert gated.core.renderer.nodes[dc.id].values["add"] == 0.125
    x = gated.block()[:, 0]
    sine = js.render(js.Sine(freq=1000, amp=0.5), 1.0, SR, BS)[:, 0]
    start = gated.core.frame - BS
    np.testing.assert_allclose(x - sine[start : start + BS], 0.125, atol=1e-6)


def test_a_panic_while_a_prepare_runs_wins(gated):
    gated.new(js.Sine(freq=1000, amp=0.5))
    gated.block()
    gated.gate.clear()
    gated.new(js.Saw(freq=110))
    gated.block()
    gated.send("/panic")
    gated.block()
    assert not gated.core.renderer.nodes and not gated.core.table.nodes
    gated.settle()  # the plan for the old table is dropped
    assert not gated.core.renderer.nodes and not gated.block().any()


def test_a_plan_gone_stale_on_the_worker_is_prepared_again(gated):
    good = js.Sine(freq=1000, amp=0.5)
    bad = js.MulAdd(js.MulAdd(js.Sine(freq=50), 1.0), 1.0)
    for m in (bad.input.input, bad.input):
        gated.new(m, out=False)
    gated.new(bad)
    gated.new(good)
    gated.block()
    gated.gate.clear()
    saw = js.Saw(freq=110, amp=0.1)
    gated.new(saw)
    gated.block()
    assert gated.built.wait(10)  # prepared with `bad` sounding...
    gated.send("/param/set", bad.input.id, "mul", 1e30)
    gated.send("/param/set", bad.id, "mul", 1e30)
    with pytest.warns(js.JupysynthWarning, match="NaN or infinity"):
        gated.block()  # ...which is muted now: the renderer rebuilt itself
    assert bad.id in gated.core.renderer.disabled
    gated.settle()  # the plan is stale: prepared again
    assert saw.id not in gated.core.renderer.nodes and gated.prepared == 1
    gated.settle()
    assert saw.id in gated.core.renderer.nodes and gated.prepared == 2
    assert bad.id in gated.core.renderer.disabled
    x = gated.block()
    assert np.isfinite(x).all() and 0.5 < np.abs(x).max() <= 0.6


def test_service_between_blocks_prepares_installs_and_answers_without_a_block(gated):
    """A playing clock calls service() when a graph change or a /sync arrives, and when a
    prepare is done: the edit is heard from the next block and /sync answered before it."""
    sine = js.Sine(freq=1000, amp=0.5)
    gated.new(sine)
    gated.block()
    frame = gated.core.frame
    assert gated.core.urgent.is_set()  # /module/new wakes a napping clock
    gated.core.urgent.clear()
    gated.send("/param/set", sine.id, "amp", 0.25)
    assert not gated.core.urgent.is_set()  # a knob waits for the block
    saw = js.Saw(freq=220, amp=0.1)
    gated.new(saw)
    gated.send("/sync", 7)
    assert gated.core.urgent.is_set()
    gated.core.service()  # applied to the table, prepared on the worker at once
    assert saw.id in gated.core.table.nodes and gated.core._job is not None
    assert gated.built.wait(10)
    for _ in range(10_000):  # the worker's result wakes the clock too
        if gated.core.urgent.is_set() and gated.core._preparer.result is not None:
            break
        time.sleep(0.001)
    gated.core.service()
    assert saw.id in gated.core.renderer.nodes and [r[2] for r in gated.replies] == [(7,)]
    assert gated.core.frame == frame and gated.prepared == 1  # no block rendered meanwhile
    # the next block sounds as the same changes applied at its start would
    x = gated.block()[:, 0]
    ref = js.Renderer(*snapshot(sine), SR, BS)
    ref.process(BS)
    ref.update(*snapshot([sine, saw]))
    ref.set(sine.id, "amp", 0.25, ramp=True)
    ref_x = ref.process(BS)[:, 0]
    np.testing.assert_allclose(x, ref_x, atol=1e-6)
    assert gated.errors == []


def test_service_leaves_a_panic_and_a_tagged_message_due_now_to_the_block(gated):
    sine = js.Sine(freq=1000, amp=0.5)
    gated.new(sine)
    gated.block()
    gated.send("/panic")
    gated.core.service()
    assert sine.id in gated.core.table.nodes  # the block applies it, at its first frame
    gated.block()
    assert not gated.core.table.nodes
