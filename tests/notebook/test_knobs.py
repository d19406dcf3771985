"""Knob panels: a slider per number, a label per signal, both directions linked."""

from __future__ import annotations

import importlib
import math

import ipywidgets as w
import pytest

import jupysynth as js
from jupysynth.notebook import knobs
from jupysynth.notebook.knobs import ui_range

knobs_module = importlib.import_module("jupysynth.notebook.knobs")


def test_one_slider_per_numeric_parameter_with_its_value_and_unit():
    osc = js.Pulse(freq=220, amp=0.4, width=0.3)
    panel = knobs(osc)
    assert list(panel.sliders) == ["freq", "amp", "phase", "width"]
    assert panel.sliders["freq"].value == pytest.approx(220.0)
    assert panel.sliders["amp"].value == pytest.approx(0.4)
    assert panel.sliders["width"].value == pytest.approx(0.3)
    assert panel.sliders["freq"].description == "freq (Hz)"
    assert panel.sliders["phase"].description == "phase (cycles)"
    assert panel.sliders["amp"].description == "amp"
    panel.close()


def test_log_parameters_get_log_sliders_and_linear_ones_linear():
    panel = knobs(js.LowPass(js.Saw(), cutoff=800, q=2))
    assert isinstance(panel.sliders["cutoff"], w.FloatLogSlider)
    assert isinstance(panel.sliders["q"], w.FloatLogSlider)
    lin = knobs(js.Pan(js.Saw(), pos=0.25))
    assert type(lin.sliders["pos"]) is w.FloatSlider
    assert (lin.sliders["pos"].min, lin.sliders["pos"].max) == (-1.0, 1.0)
    panel.close()
    lin.close()


def test_log_slider_spans_decades_of_the_ui_range():
    s = knobs(js.Sine(freq=440)).sliders["freq"]
    assert s.base == 10.0
    # from 1 Hz (less at most one step, so that 440 sits on the step grid) to 20 kHz
    assert -s.step < s.min <= 0.0
    assert 10.0**s.max == pytest.approx(20000.0)
    assert s.step == pytest.approx(math.log10(20000.0) / 1000)
    # the exponent travel is linear: the middle of the slider is the geometric mean
    mid = 10.0 ** ((s.min + s.max) / 2)
    assert mid == pytest.approx(math.sqrt(1.0 * 20000.0), rel=s.step * 2.31)
    s.close()


def on_grid(slider, value):
    x = math.log10(value) if isinstance(slider, w.FloatLogSlider) else value
    k = (x - slider.min) / slider.step
    return abs(k - round(k)) < 1e-6


def test_values_set_in_code_sit_on_the_slider_grid():
    # the front end snaps to min + k * step and sends that back: 330 must be a grid point
    osc = js.Sine(freq=440, amp=0.2)
    panel = knobs(osc)
    assert on_grid(panel.sliders["freq"], 440.0) and on_grid(panel.sliders["amp"], 0.2)
    osc.freq = 330
    osc.amp = 0.3
    assert on_grid(panel.sliders["freq"], 330.0) and on_grid(panel.sliders["amp"], 0.3)
    panel.close()


def test_the_front_end_rounding_a_value_back_does_not_change_the_module():
    osc = js.Sine(freq=440)
    panel = knobs(osc)
    osc.freq = 330
    s = panel.sliders["freq"]
    # what the browser sends back after snapping, with its own float rounding
    s.value = 10.0 ** (math.log10(330.0) + 0.3 * s.step)
    assert osc.freq == 330.0
    # a real move, one step along, does reach the module
    one_up = 10.0 ** (math.log10(330.0) + s.step)
    s.value = one_up
    assert osc.freq == pytest.approx(one_up)
    amp = panel.sliders["amp"]
    amp.value = 1.0 + 1e-12
    assert osc.amp == 1.0
    panel.close()


def test_a_slider_never_sets_a_value_outside_the_declared_range():
    lp = js.LowPass(js.Saw(), q=0.05)  # at the very bottom of q's range
    panel = knobs(lp)
    s = panel.sliders["q"]
    s.value = 10.0**s.min  # the grid may reach a fraction of a step lower
    assert lp.q >= 0.05
    panel.close()


def test_ui_ranges_narrow_huge_declared_ranges():
    spec = js.Sine.spec()
    assert spec["amp"].max == 1e6  # declared for the math...
    assert ui_range(spec["amp"], 1.0) == (-1.0, 1.0)  # ...a hand gets -1..1
    assert ui_range(spec["amp"], 300.0) == (-1000.0, 1000.0)
    assert ui_range(js.LFO.spec()["freq"]) == (0.01, 20000.0)
    assert ui_range(js.ADSR.spec()["attack"]) == (0.001, 10.0)
    # the range always includes the value, even beyond the usual travel
    assert ui_range(spec["freq"], 50000.0) == (1.0, 50000.0)
    assert ui_range(js.ADSR.spec()["release"], 30.0)[1] == 30.0


def test_moving_a_slider_sets_the_parameter_and_notifies_observers():
    osc = js.Sine(freq=440)
    seen = []
    osc.observe(lambda m, name, value: seen.append((name, value)))
    panel = knobs(osc)
    panel.sliders["freq"].value = 660.0
    panel.sliders["amp"].value = 0.25
    assert osc.freq == pytest.approx(660.0)
    assert osc.amp == pytest.approx(0.25)
    assert seen == [("freq", pytest.approx(660.0)), ("amp", pytest.approx(0.25))]
    panel.close()


def test_setting_the_parameter_in_code_moves_the_slider():
    osc = js.Sine(freq=440)
    panel = knobs(osc)
    osc.freq = 330
    assert panel.sliders["freq"].value == pytest.approx(330.0)
    osc.set(amp=0.1)
    assert panel.sliders["amp"].value == pytest.approx(0.1)
    panel.close()


def test_a_value_beyond_the_ui_range_widens_the_slider():
    osc = js.Sine(freq=440)
    panel = knobs(osc)
    osc.freq = 40000
    s = panel.sliders["freq"]
    assert s.value == pytest.approx(40000.0)
    assert 10.0**s.max >= 40000.0
    osc.amp = 5.0
    assert panel.sliders["amp"].value == 5.0 and panel.sliders["amp"].max >= 5.0
    panel.close()


def test_a_parameter_driven_by_a_module_is_a_read_only_label():
    lfo = js.LFO(freq=0.5, name="wobble")
    lp = js.LowPass(js.Saw(freq=110), cutoff=1000 + 500 * lfo)
    panel = knobs(lp)
    assert set(panel.labels) == {"input", "cutoff"}
    assert "q" in panel.sliders and "cutoff" not in panel.sliders
    assert panel.labels["input"].value.startswith("input \u2190 Saw#")
    assert panel.labels["cutoff"].value.startswith("cutoff (Hz) \u2190 MulAdd#")
    # patching a number back gives the slider back, and a signal takes it away
    lp.cutoff = 1200
    assert panel.sliders["cutoff"].value == pytest.approx(1200.0)
    assert "cutoff" not in panel.labels
    lp.q = lfo
    assert panel.labels["q"].value == "q \u2190 wobble"
    assert "q" not in panel.sliders
    panel.close()


def test_closing_the_panel_stops_following_the_module():
    osc = js.Sine(freq=440)
    panel = knobs(osc)
    slider = panel.sliders["freq"]
    assert panel._on_module in osc._listeners
    panel.close()
    assert panel._on_module not in osc._listeners
    assert slider.comm is None  # the slider itself was closed too
    osc.freq = 220  # no widget to update, and no error
    assert osc.freq == 220.0


def test_state_line_names_the_module_and_asks_the_state_provider(monkeypatch):
    named = js.Saw(freq=110, name="bass")
    panel = knobs(named)
    assert f"bass (Saw#{named.id})" in panel.state.value
    assert "not playing (offline)" in panel.state.value
    monkeypatch.setattr(knobs_module, "state_provider", lambda m: "faulted: <boom>")
    panel.refresh_state()
    assert "faulted: &lt;boom&gt;" in panel.state.value
    panel.close()


def test_knobs_refuses_what_is_not_a_module():
    with pytest.raises(TypeError, match="knobs\\(\\) takes a module"):
        knobs(440)
