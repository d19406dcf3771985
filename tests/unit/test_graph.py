"""Describing patches: parameters, errors, arithmetic, introspection (no rendering)."""

from __future__ import annotations

import pytest

import jupysynth as js
from jupysynth.compile import compile_schedule, find_cycle
from jupysynth.graph import snapshot


def test_parameters_default_keyword_and_positional():
    osc = js.Sine(330, amp=0.5)
    assert osc.freq == 330.0 and osc.amp == 0.5 and osc.phase == 0.0
    assert js.LowPass(js.Saw(), 800, 2).cutoff == 800.0


def test_modules_list_their_parameters_with_specs():
    spec = js.LowPass.spec()
    assert list(spec) == ["input", "cutoff", "q"]
    cutoff = spec["cutoff"]
    assert (cutoff.unit, cutoff.scale, cutoff.default) == ("Hz", "log", 1000.0)
    assert cutoff.min > 0 and cutoff.max >= 20000


def test_unknown_parameter_names_the_valid_ones():
    with pytest.raises(
        js.ParamError, match=r"unknown parameter 'frq' for Sine.*'freq'.*valid: freq, amp, phase"
    ):
        js.Sine(frq=440)
    osc = js.Sine()
    with pytest.raises(js.ParamError, match="valid: freq, amp, phase"):
        osc.frq = 3


def test_out_of_range_value_says_the_range():
    with pytest.raises(js.ParamError, match=r"q=0 is out of range; use a value from 0.05 to 100"):
        js.LowPass(js.Saw(), q=0)
    with pytest.raises(js.ParamError, match="out of range"):
        js.Sine(freq=1e30)


def test_wrong_type_and_non_finite_values_are_refused():
    with pytest.raises(js.ParamError, match="takes a number or a module, not str"):
        js.Sine(freq="440")
    with pytest.raises(js.ParamError, match="finite"):
        js.Sine(freq=float("nan"))
    with pytest.raises(js.ParamError, match="choose one of sine, triangle, saw, square, sh"):
        js.LFO(shape="wobble")


def test_setting_a_parameter_notifies_observers():
    osc = js.Sine()
    seen = []
    osc.observe(lambda m, k, v: seen.append((m.id, k, v)))
    osc.freq = 220
    osc.set(amp=0.25)
    assert seen == [(osc.id, "freq", 220.0), (osc.id, "amp", 0.25)]


def test_arithmetic_folds_into_one_muladd():
    lfo = js.Sine(0.5)
    cutoff = 1000 + 500 * lfo
    assert isinstance(cutoff, js.MulAdd)
    assert cutoff.input is lfo and cutoff.mul == 500.0 and cutoff.add == 1000.0
    neg = -(lfo * 2) + 1
    assert isinstance(neg, js.MulAdd) and neg.input is lfo and (neg.mul, neg.add) == (-2.0, 1.0)


def test_sum_of_modules_is_one_flat_mix():
    voices = [js.Sine(100 * k) for k in range(1, 6)]
    total = sum(voices)
    assert isinstance(total, js.Mix)
    assert [p.module for p in total.inputs] == voices


def test_signal_times_signal_and_difference():
    a, b = js.Sine(3), js.Saw(2)
    prod = a * b
    assert prod.input is a and prod.mul is b
    diff = a - b
    assert isinstance(diff, js.MulAdd) and diff.input is b and diff.mul == -1.0 and diff.add is a


def test_stereo_module_cannot_feed_a_mono_input():
    pan = js.Pan(js.Sine())
    with pytest.raises(js.PatchError, match="stereo; use .*left or .right"):
        js.LowPass(pan)
    assert js.LowPass(pan.left).input is not None


def test_cycle_is_an_error_naming_its_modules():
    a = js.LowPass(js.Saw(), name="filter")
    b = js.Gain(a, name="amp")
    a.input = b
    nodes, outs = snapshot(b)
    cycle = find_cycle(nodes)
    assert set(cycle) == {a.id, b.id}
    with pytest.raises(
        js.PatchError, match=r"cycle: (filter -> amp -> filter|amp -> filter -> amp).*Feedback"
    ):
        compile_schedule(nodes, outs)


def test_feedback_breaks_a_cycle():
    fb = js.Feedback()
    loop = js.LowPass(js.Saw() + 0.5 * fb)
    fb.input = loop
    nodes, outs = snapshot(loop)
    assert find_cycle(nodes) is None
    sched = compile_schedule(nodes, outs)
    assert sched.has_feedback


def test_same_type_same_level_is_one_group_with_contiguous_inputs():
    voices = [js.LowPass(js.Saw(110 * k), cutoff=1000 + 500 * js.Sine(0.5)) for k in range(1, 9)]
    nodes, outs = snapshot(js.Mix(*voices))
    sched = compile_schedule(nodes, outs)
    kinds = {g.kernel: g for g in sched.groups}
    assert kinds["filters.lowpass"].size == 8 and kinds["oscillators.saw"].size == 8
    lp = kinds["filters.lowpass"]
    assert lp.bindings["input"].kind == "bus"
    assert lp.bindings["cutoff"].kind == "bus"
    assert lp.bindings["q"].kind == "const"
    levels = {g.kernel: g.level for g in sched.groups}
    assert levels["oscillators.sine"] < levels["arith.muladd"] < levels["filters.lowpass"]


def test_mixed_numbers_and_signals_gather():
    lfo = js.LFO(freq=1, amp=100, offset=600)
    f1 = js.LowPass(js.Saw(), cutoff=500)
    f2 = js.LowPass(js.Saw(), cutoff=lfo)  # same level as f1: one group
    nodes, outs = snapshot([f1, f2])
    sched = compile_schedule(nodes, outs)
    lp = next(g for g in sched.groups if g.kernel == "filters.lowpass")
    assert lp.bindings["cutoff"].kind == "gather"
    assert sorted(s for s in lp.bindings["cutoff"].slots)[0] == -1
