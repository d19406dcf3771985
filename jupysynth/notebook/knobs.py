"""Knob panels: one slider per parameter of a module, linked both ways.

Moving a slider sets the module's parameter, exactly as ``osc.freq = 330`` in
code would, so whatever observes the module (the engine client that sends
OSC, an offline scope) hears it.  Setting the parameter in code moves the
slider.  A parameter driven by another module shows as a read-only line.

Examples
--------
>>> import jupysynth as js
>>> from jupysynth.notebook import knobs
>>> osc = js.Sine(freq=440, amp=0.3)
>>> panel = knobs(osc)
>>> osc.freq = 330
>>> panel.sliders["freq"].value
330.0
>>> panel.close()
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable

import ipywidgets as w

from ..graph import Module, Param, Port

__all__ = ["KnobPanel", "knobs", "panels", "ui_range", "state_line"]

# Steps across a slider's travel: fine enough that a drag sounds continuous.
_STEPS = 1000
# Declared ranges wider than this (amplitudes of +-1e6, inputs of +-1e30) are
# bounds for the math, not for a hand on a knob.
_HUGE_SPAN = 1e4

#: Called as ``state_provider(module) -> str`` to fill the panel's state line;
#: the live-coding layer installs one that asks the engine.
state_provider: Callable[[Module], str] | None = None

#: Panels not yet closed; the live-coding layer refreshes their state lines after each
#: cell, and a module's panels when the engine pushes its fault.  Read it with :func:`panels`.
open_panels: weakref.WeakSet[KnobPanel] = weakref.WeakSet()
# a push arrives on the OSC client's thread while a cell may be opening a panel
_panels_lock = threading.Lock()


def panels(module_id: int | None = None) -> list[KnobPanel]:
    """The open panels (of the module ``module_id`` only, if given); safe from any thread."""
    with _panels_lock:
        found = list(open_panels)
    return [p for p in found if module_id is None or p.module.id == module_id]


def _decade_above(x: float) -> float:
    """The smallest power of ten >= ``|x|`` (and >= 1)."""
    x = abs(x)
    return 10.0 ** math.ceil(math.log10(x)) if x > 1.0 else 1.0


def ui_range(param: Param, value: float | None = None) -> tuple[float, float]:
    """The range a slider for ``param`` spans: the declared one, narrowed to what a hand uses.

    Parameters
    ----------
    param : Param
        The declaration (range, unit, scale).
    value : float, optional
        The current value; the range always includes it.

    Returns
    -------
    (lo, hi) : tuple of float
        ``lo < hi``; both > 0 for a log-scale parameter.

    Notes
    -----
    A log-scale parameter whose declared minimum is 0 starts at 0.01 Hz for
    frequencies below the audio band by default (an LFO), 1 Hz for audio
    frequencies, 1 ms for times, and a thousandth of its default otherwise.
    Frequencies stop at 20 kHz and times at 10 s unless the value is beyond.
    A linear range wider than 10 000 units (an amplitude of +-1e6) shrinks to
    the decade around the value: ``amp`` gets -1 to 1, a ``mul`` of 500 gets
    -1000 to 1000.

    Examples
    --------
    >>> from jupysynth import Sine, LFO
    >>> ui_range(Sine.spec()["freq"])
    (1.0, 20000.0)
    >>> ui_range(LFO.spec()["freq"])
    (0.01, 20000.0)
    >>> ui_range(Sine.spec()["amp"], 1.0)
    (-1.0, 1.0)
    """
    v = param.default if value is None else float(value)
    lo, hi = float(param.min), float(param.max)
    if param.scale == "log":
        if param.unit == "Hz":
            lo = max(lo, 0.01 if param.default < 20 else 1.0)
            hi = min(hi, 20000.0)
        elif param.unit == "s":
            lo = max(lo, 0.001)
            hi = min(hi, 10.0)
        elif lo <= 0:
            lo = max(abs(param.default) / 1000.0, 1e-6)
        if v > 0:
            lo, hi = min(lo, v), max(hi, v)
        return lo, hi
    if hi - lo > _HUGE_SPAN:
        mag = max(_decade_above(v), _decade_above(param.default))
        lo, hi = max(lo, -mag), min(hi, mag)
        if param.min >= 0:
            lo = max(param.min, 0.0)
    return min(lo, v), max(hi, v)


def _log_bounds(lo: float, hi: float) -> tuple[float, float]:
    """Exponents (base 10) whose powers include ``lo`` and ``hi`` despite rounding."""
    emin, emax = math.log10(lo), math.log10(hi)
    while 10.0**emin > lo:
        emin = math.nextafter(emin, -math.inf)
    while 10.0**emax < hi:
        emax = math.nextafter(emax, math.inf)
    return emin, emax


def _grid_min(lo: float, step: float, x: float) -> float:
    """A slider minimum at most one step below ``lo`` that puts ``x`` on the step grid.

    The front end snaps a slider's value to ``min + k * step`` and, while
    ``continuous_update`` is on, sends the snapped value back; a value set in
    code (330 Hz) must sit on the grid or it would come back as 331.4 Hz.
    """
    if step <= 0 or x <= lo:
        return min(lo, x)
    return x - math.ceil((x - lo) / step - 1e-9) * step


def _is_echo(slider: w.FloatSlider | w.FloatLogSlider, new: float, current: object) -> bool:
    """Whether ``new`` from the front end is only its rounding of the module's value."""
    if not isinstance(current, float):
        return False
    tolerance = 0.5 * slider.step
    if isinstance(slider, w.FloatLogSlider):
        if current <= 0:
            return new <= 10.0 ** (slider.min + tolerance)
        return new > 0 and abs(math.log10(new) - math.log10(current)) <= tolerance
    return abs(new - current) <= tolerance


def _label(param: Param) -> str:
    return f"{param.name} ({param.unit})" if param.unit else param.name


def _driven_text(param: Param, port: Port) -> str:
    src = port.module._short() if port.module.channels == 1 else repr(port)
    return f"{_label(param)} \u2190 {src}"


def state_line(module: Module) -> str:
    """One line saying what the module is and how it is doing (playing, faulted, offline).

    Uses :data:`state_provider` when the live-coding layer has installed one.
    """
    kind = f"{type(module).__name__}#{module.id}"
    head = f"{module.name} ({kind})" if module.name else kind
    if state_provider is None:
        return f"{head} \u00b7 not playing (offline)"
    try:
        return f"{head} \u00b7 {state_provider(module)}"
    except Exception as exc:  # noqa: BLE001 - a panel must draw even if the engine is gone
        return f"{head} \u00b7 state unknown ({exc})"


class KnobPanel(w.VBox):
    """A module's knob panel: title/state line, then one row per parameter.

    Build it with :func:`knobs`.  Closing it (``panel.close()``) stops it
    following the module and closes its sliders.

    Attributes
    ----------
    module : Module
        The module the panel controls.
    sliders : dict
        ``{name: slider}`` for parameters set to numbers.
    labels : dict
        ``{name: Label}`` for parameters driven by another module.
    state : ipywidgets.HTML
        The state line.
    """

    def __init__(self, module: Module, continuous_update: bool = True) -> None:
        if not isinstance(module, Module):
            super().__init__()
            super().close()
            raise TypeError(
                f"knobs() takes a module (Sine, LowPass, ...), not {type(module).__name__}"
            )
        self.module = module
        self.continuous_update = continuous_update
        self.sliders: dict[str, w.FloatSlider | w.FloatLogSlider] = {}
        self.labels: dict[str, w.Label] = {}
        self._rows: dict[str, w.Box] = {}
        self._updating: set[str] = set()
        self.state = w.HTML(layout=w.Layout(margin="0 0 4px 0"))
        rows = []
        for name, param in module.spec().items():
            row = w.HBox()
            self._rows[name] = row
            self._fill_row(name, param, module._values[name])
            rows.append(row)
        super().__init__(children=[self.state, *rows])
        self.add_class("jupysynth-knobs")
        self.refresh_state()
        module.observe(self._on_module)
        with _panels_lock:
            open_panels.add(self)

    # -- rows ------------------------------------------------------------------------------

    def _fill_row(self, name: str, param: Param, value: float | Port) -> None:
        old = self.sliders.pop(name, None) or self.labels.pop(name, None)
        if old is not None:
            old.close()
        if isinstance(value, Port):
            label = w.Label(_driven_text(param, value), tooltip=param.doc)
            label.add_class("jupysynth-driven")
            self.labels[name] = label
            self._rows[name].children = [label]
            return
        slider = self._make_slider(param, float(value))
        slider.observe(self._on_slider, names="value")
        self.sliders[name] = slider
        self._rows[name].children = [slider]

    def _make_slider(self, param: Param, value: float) -> w.FloatSlider | w.FloatLogSlider:
        lo, hi = ui_range(param, value)
        common = dict(
            description=_label(param),
            tooltip=param.doc,
            continuous_update=self.continuous_update,
            style={"description_width": "8em"},
            layout=w.Layout(width="32em"),
        )
        if param.scale == "log":
            emin, emax = _log_bounds(lo, hi)
            step = (emax - emin) / _STEPS
            slider: w.FloatSlider | w.FloatLogSlider = w.FloatLogSlider(
                value=max(value, lo),
                base=10.0,
                min=_grid_min(emin, step, math.log10(max(value, lo))),
                max=emax,
                step=step,
                readout_format=".4g",
                **common,
            )
        else:
            step = (hi - lo) / _STEPS
            slider = w.FloatSlider(
                value=value,
                min=_grid_min(lo, step, value),
                max=hi,
                step=step,
                readout_format=".4g",
                **common,
            )
        slider.param_name = param.name
        return slider

    # -- both directions -------------------------------------------------------------------

    def _on_slider(self, change: dict) -> None:
        slider = change["owner"]
        name = slider.param_name
        if name in self._updating:
            return  # the module moved the slider: do not set it back
        if _is_echo(slider, change["new"], self.module._values[name]):
            return
        param = self.module.spec()[name]
        self._updating.add(name)
        try:
            setattr(self.module, name, min(max(change["new"], param.min), param.max))
        finally:
            self._updating.discard(name)

    def _on_module(self, module: Module, name: str, value: float | Port) -> None:
        if name in self._updating:
            return  # the slider set the module: it already shows the value
        param = module.spec()[name]
        slider = self.sliders.get(name)
        if isinstance(value, Port) or slider is None:
            self._fill_row(name, param, value)
            return
        v = float(value)
        self._updating.add(name)
        try:
            with self.hold_sync(), slider.hold_sync():
                if isinstance(slider, w.FloatLogSlider):
                    if v > 0 and not 10.0**slider.min <= v <= 10.0**slider.max:
                        lo, hi = ui_range(param, v)
                        slider.min, slider.max = _log_bounds(lo, hi)
                    if v > 0:
                        slider.min = _grid_min(slider.min, slider.step, math.log10(v))
                        slider.value = v
                    else:  # a log slider cannot show 0 or less: it rests at its bottom
                        slider.value = 10.0**slider.min
                else:
                    if not slider.min <= v <= slider.max:
                        lo, hi = ui_range(param, v)
                        slider.min, slider.max = min(lo, slider.min), max(hi, slider.max)
                    slider.min = _grid_min(slider.min, slider.step, v)
                    slider.value = v
        finally:
            self._updating.discard(name)

    # -- state and lifetime ----------------------------------------------------------------

    def refresh_state(self) -> None:
        """Redraw the state line (playing, faulted with the error, offline)."""
        self.state.value = f"<b>{_escape(state_line(self.module))}</b>"

    def close(self) -> None:
        """Stop following the module and close the panel and its sliders."""
        module = self.__dict__.get("module")
        if module is None:  # refused in __init__: nothing was built
            return
        module.unobserve(self._on_module)
        with _panels_lock:
            open_panels.discard(self)
        for widget in [*self.sliders.values(), *self.labels.values(), self.state]:
            widget.close()
        for row in self._rows.values():
            row.close()
        self.sliders.clear()
        self.labels.clear()
        super().close()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def knobs(module: Module, continuous_update: bool = True) -> KnobPanel:
    """A panel of sliders for every parameter of ``module``, linked both ways.

    Parameters
    ----------
    module : Module
        Any module (``Sine``, ``LowPass``, ``ADSR``...).
    continuous_update : bool, default True
        Send values while dragging (the engine client throttles what goes
        over OSC and always delivers the last value), or only on release.

    Returns
    -------
    KnobPanel
        An ipywidgets ``VBox``; display it, or let the notebook display it.

    Examples
    --------
    >>> import jupysynth as js
    >>> from jupysynth.notebook import knobs
    >>> lp = js.LowPass(js.Saw(freq=110), cutoff=800)
    >>> panel = knobs(lp)
    >>> panel.sliders["cutoff"].value = 1200.0
    >>> lp.cutoff
    1200.0
    >>> sorted(panel.labels)
    ['input']
    >>> panel.close()
    """
    return KnobPanel(module, continuous_update=continuous_update)
