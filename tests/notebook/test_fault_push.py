"""A module that raises in the engine shows in the cell that made it and on its knob panel.

An in-process IPython shell with the extension loaded and a headless engine.
The fault is pushed by the engine (``/fault``): no later cell and no status
request is needed for the cell's output and the panel's state line to say it.
"""

from __future__ import annotations

import time

import ipywidgets
import pytest
from IPython.core.interactiveshell import InteractiveShell

from jupysynth.notebook import knobs, live

EXT = "jupysynth.notebook.extension"
DEADLINE = 2.0  # seconds: the engine looks for faults every 30 ms

RAISER = """
import numpy as np
import jupysynth as js
from jupysynth.notebook import live

class Raiser(js.Module):
    params = (js.Param("input", 0.0, -1e30, 1e30),)
    positional = ("input",)

    def process(self, input):
        raise ValueError(f"cannot fold {input.size} samples")
"""

# raises only once its amount is turned up; {body} is the line that does
TURNED = """
class Turned(js.Module):
    params = (js.Param("input", 0.0, -1e30, 1e30), js.Param("amount", 0.5, 0.0, 2.0))
    positional = ("input",)

    def process(self, input, amount):
        {body}
        return input * amount
"""
RAISES = 'if amount[0] > 1: raise ValueError(f"cannot fold {input.size} samples")'


@pytest.fixture
def shell(monkeypatch):
    monkeypatch.setenv("JUPYSYNTH_HEADLESS", "1")
    monkeypatch.delenv("JUPYSYNTH_OFFLINE", raising=False)
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", EXT)
    ip.run_cell(RAISER)
    yield ip
    ip.run_line_magic("unload_ext", EXT)
    assert live.current() is None


def until(predicate, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        assert time.monotonic() < deadline, f"{what} within {DEADLINE} s"
        time.sleep(0.01)


def no_status(session, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the notebook must not ask /status for faults")

    monkeypatch.setattr(session.engine, "status", refuse)
    monkeypatch.setattr(session.engine.client, "status", refuse)


def test_the_fault_prints_once_in_the_cell_that_made_the_module(shell, capsys, monkeypatch):
    session = live.current()
    no_status(session, monkeypatch)
    capsys.readouterr()
    shell.run_cell(
        "sine = js.Sine(freq=1000, amp=0.3)\nbad = Raiser(js.Saw(freq=220))\n"
        "live.play([sine, bad])",
        cell_id="maker",
    )
    bad = shell.user_ns["bad"]
    # printed when the cell ends if the push came first, else by the client's thread
    out = ""

    def printed() -> bool:
        nonlocal out
        out += capsys.readouterr().out
        return "ValueError" in out

    until(printed, "the fault printed")
    assert out.startswith(f"jupysynth: Raiser#{bad.id} raised and is muted, the rest plays on:\n")
    assert out.rstrip().endswith("  ValueError: cannot fold 128 samples")
    assert 'raise ValueError(f"cannot fold {input.size} samples")' in out
    time.sleep(0.1)
    shell.run_cell("x = 1")
    assert capsys.readouterr().out == ""  # once, not again in the next cell
    x = session.engine.record(0.2)[:, 0]
    assert abs(x).max() == pytest.approx(0.3, rel=1e-3)  # the sine plays on


def test_a_later_fault_goes_to_the_output_of_the_cell_that_made_it(shell, capsys, monkeypatch):
    """With widgets, the text lands in the maker cell's Output, whichever cell runs then."""
    session = live.current()
    no_status(session, monkeypatch)
    session.widgets = True
    shown, made = [], []

    class Output(ipywidgets.Output):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            made.append(self)

    monkeypatch.setattr(ipywidgets, "Output", Output)
    monkeypatch.setattr("IPython.display.display", lambda obj, **kw: shown.append((obj, kw)))
    shell.run_cell(TURNED.format(body=RAISES))
    shell.run_cell("bad = Turned(js.Saw(freq=220))\nlive.play(bad)", cell_id="maker")
    bad = shell.user_ns["bad"]
    # the maker cell shows one Output, empty, and no text for a front end without widgets
    (out,) = made
    assert out.outputs == ()
    assert shown == [
        (
            {
                "application/vnd.jupyter.widget-view+json": out._repr_mimebundle_()[
                    "application/vnd.jupyter.widget-view+json"
                ]
            },
            {"raw": True},
        )
    ]
    panel = knobs(bad)
    assert panel.state.value.endswith("\u00b7 playing</b>")
    capsys.readouterr()
    shell.run_cell("bad.amount = 1.5", cell_id="knob-turner")
    until(lambda: out.outputs, "the fault written into the maker cell's Output")
    (entry,) = out.outputs
    assert entry["name"] == "stdout"
    assert entry["text"].startswith(f"jupysynth: Turned#{bad.id} raised and is muted")
    assert entry["text"].rstrip().endswith("ValueError: cannot fold 128 samples")
    assert "ValueError" not in capsys.readouterr().out  # not in the cell that turned the knob
    # the panel's state line was redrawn by the push, no cell needed
    until(lambda: "faulted" in panel.state.value, "the panel redrawn")
    assert panel.state.value.endswith("\u00b7 faulted: ValueError: cannot fold 128 samples</b>")
    # fixing the class clears it: the panel says so
    shell.run_cell(TURNED.format(body="pass"))
    until(lambda: "faulted" not in panel.state.value, "the panel redrawn after the fix")
    assert panel.state.value.endswith("\u00b7 playing</b>")
    panel.close()
