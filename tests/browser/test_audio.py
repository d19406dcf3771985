"""The engine's sound in the page: JupyterLab and Notebook 7 in Chromium, no sound card.

The kernel's engine plays in the browser (``JUPYSYNTH_OUTPUT=browser``): its
output reaches the page over the kernel's comm and plays through the jupysynth
extension's AudioWorklet, which feeds an ``AnalyserNode`` the test reads
(``window.jupysynth.peakHz()``, ``level()``).  The status bar item follows the
engine; Ctrl+. silences everything.  Nothing is left running afterwards.
"""

from __future__ import annotations

import re
import time

import pytest
from labserver import CHROMIUM, CHROMIUM_ARGS, LabServer, idle, notebook, poll

from .test_lab import ARTIFACTS

CELLS = [
    "%load_ext jupysynth",
    "import jupysynth as js\nosc = js.Sine(freq=440, amp=0.3)\nosc.play()",
]


def run_cell(pg, code: str, app: str) -> None:
    """Type ``code`` into a new last cell and run it (JupyterLab and Notebook 7 alike)."""
    pg.locator(".jp-Cell").last.click()
    pg.keyboard.press("Escape")
    pg.keyboard.press("b")
    pg.locator(".jp-Cell.jp-mod-active .cm-content").click()
    pg.keyboard.insert_text(code)
    pg.keyboard.press("Shift+Enter")
    idle(pg)


def open_and_run(pg, srv: LabServer) -> list[str]:
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(srv.url("sound.ipynb"))
    pg.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    pg.wait_for_function("window.jupysynth !== undefined", timeout=60_000)
    time.sleep(2.0)  # the kernel starts
    for k in range(len(CELLS)):
        pg.locator(".jp-CodeCell").nth(k).click()
        pg.keyboard.press("Shift+Enter")
        idle(pg, 120)
    return errors


@pytest.mark.parametrize("server", ["lab"], indirect=True)
def test_a_sine_arrives_in_the_page_follows_its_knob_and_ctrl_dot_silences_it(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pg = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors = open_and_run(pg, server)
            hz = poll(pg, "window.jupysynth.peakHz()", lambda v: v and abs(v - 440) < 3)
            assert abs(hz - 440) < 3, f"the page hears {hz} Hz"
            assert pg.evaluate("window.jupysynth.level()") > 0.1
            item = pg.locator(".jupysynth-status")
            assert item.get_attribute("data-state") == "playing"
            assert re.search(r"playing.*browser", item.inner_text()), item.inner_text()
            # the stream keeps up with the page's clock (underruns on a loaded machine
            # are what the jitter buffer absorbs: benchmarks/browser.py counts them)
            before = pg.evaluate("window.jupysynth.stats()")
            time.sleep(3.0)
            after = pg.evaluate("window.jupysynth.stats()")
            assert len(before) == len(after) == 1, after
            got = (after[0]["framesReceived"] - before[0]["framesReceived"]) / 3.0
            assert abs(got / after[0]["rate"] - 1) < 0.15, (got, after)
            assert after[0]["playing"] and after[0]["target"] <= 0.5 * after[0]["rate"], after
            pg.screenshot(path=str(ARTIFACTS / "audio-playing.png"))
            # its knobs and scope work as with a sound card: the same engine blocks
            run_cell(pg, "osc", "lab")
            view = pg.locator(".jupysynth-scope").first
            view.wait_for(timeout=30_000)
            line = view.locator("path.line").first
            line.wait_for(timeout=30_000)
            time.sleep(0.5)
            before = line.get_attribute("d") or ""
            assert len(before) > 100, "the scope draws no curve"
            assert pg.locator(".jupysynth-knobs").first.locator(".widget-slider").count() == 3
            # a knob turned from Python moves what the page hears, and the scope
            run_cell(pg, "osc.freq = 660", "lab")
            hz = poll(pg, "window.jupysynth.peakHz()", lambda v: v and abs(v - 660) < 3)
            assert abs(hz - 660) < 3, f"the page hears {hz} Hz after osc.freq = 660"
            assert (line.get_attribute("d") or "") != before, "the scope did not move"
            # Ctrl+. silences the page at once and the engine with it
            pg.locator(".jp-Notebook").click()
            pg.keyboard.press("Control+.")
            level = poll(pg, "window.jupysynth.level()", lambda v: v < 1e-4, timeout=5)
            assert level < 1e-4, level
            run_cell(
                pg,
                "import numpy as np\nfrom jupysynth.notebook import live\n"
                "print('peak', np.abs(live.current().engine.record(0.2)).max())",
                "lab",
            )
            # Shift+Enter on the last cell adds an empty one below: the output is the one before
            cell = pg.locator(".jp-CodeCell").filter(has_text="live.current()")
            out = cell.locator(".jp-OutputArea-output").inner_text()
            assert "peak 0.0" in out, out
            # the status item follows a fault and a stop
            run_cell(
                pg,
                "class Broken(js.Module):\n"
                "    params = (js.Param('input', 0.0, -1e30, 1e30),)\n"
                "    positional = ('input',)\n"
                "    def process(self, input):\n"
                "        raise ValueError('broken on purpose')\n"
                "Broken(js.Sine()).play()",
                "lab",
            )
            state = poll(
                pg,
                "document.querySelector('.jupysynth-status').dataset.state",
                lambda v: v == "faulted",
                timeout=10,
            )
            assert state == "faulted"
            # a click gives the details: /status's fields and the fault, by module name
            pg.locator(".jupysynth-status").click()
            details = pg.locator(".jupysynth-details")
            details.wait_for(timeout=10_000)
            text = details.inner_text()
            assert "Broken" in text and "broken on purpose" in text, text
            assert re.search(r"dsp_load", text) and "page buffer" in text, text
            pg.locator(".jp-Dialog .jp-mod-accept").click()
            run_cell(pg, "%synth stop", "lab")
            state = poll(
                pg,
                "document.querySelector('.jupysynth-status').dataset.state",
                lambda v: v == "stopped",
                timeout=10,
            )
            assert state == "stopped"
            assert not [e for e in errors if "jupysynth" in e.lower()], errors
            # the installed config enabled the server extension: no Nagle delay on the stream
            assert "jupysynth: kernel websockets send at once" in server.read_log()
        finally:
            browser.close()


@pytest.mark.parametrize("server", ["notebook"], indirect=True)
def test_notebook_7_plays_the_sine_too(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pg = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors = open_and_run(pg, server)
            hz = poll(pg, "window.jupysynth.peakHz()", lambda v: v and abs(v - 440) < 3)
            assert abs(hz - 440) < 3, f"Notebook 7 hears {hz} Hz"
            assert pg.evaluate("window.jupysynth.level()") > 0.1
            assert not [e for e in errors if "jupysynth" in e.lower()], errors
        finally:
            browser.close()


@pytest.mark.parametrize("server", ["lab"], indirect=True)
def test_a_page_whose_audio_is_held_back_says_so_and_a_click_plays(server):
    """The autoplay policy's case: the page's AudioContext suspended.

    Headless Chromium lets every page play (it applies no autoplay policy, whatever
    ``--autoplay-policy`` says), so the test suspends the context itself, as the
    policy does to a page nobody has touched; the item and the click are the same.
    """
    from playwright.sync_api import sync_playwright

    (server.work / "held.ipynb").write_text(notebook(CELLS))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pg = browser.new_page(viewport={"width": 1400, "height": 1000})
            pg.goto(server.url("held.ipynb") + "&reset")  # not the workspace of the last test
            pg.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            pg.wait_for_function("window.jupysynth !== undefined", timeout=60_000)
            time.sleep(2.0)
            for k in range(len(CELLS)):
                pg.locator(".jp-CodeCell").nth(k).click()
                pg.keyboard.press("Shift+Enter")
                idle(pg, 120)
            assert abs(poll(pg, "window.jupysynth.peakHz()", lambda v: v and abs(v - 440) < 3)
                       - 440) < 3  # fmt: skip
            pg.evaluate("window.jupysynth.analysers()[0].context.suspend()")
            state = poll(
                pg,
                "document.querySelector('.jupysynth-status')?.dataset.state",
                lambda v: v == "suspended",
                timeout=10,
            )
            assert state == "suspended", state
            item = pg.locator(".jupysynth-status")
            assert "click to enable sound" in item.inner_text(), item.inner_text()
            assert pg.evaluate("window.jupysynth.contexts()") == [
                {"rate": 48000, "state": "suspended"}
            ]
            item.click()
            hz = poll(pg, "window.jupysynth.peakHz()", lambda v: v and abs(v - 440) < 3)
            assert abs(hz - 440) < 3, f"after the click the page hears {hz} Hz"
            assert pg.evaluate("window.jupysynth.contexts()")[0]["state"] == "running"
            state = poll(
                pg,
                "document.querySelector('.jupysynth-status')?.dataset.state",
                lambda v: v == "playing",
                timeout=10,
            )
            assert state == "playing", state
        finally:
            browser.close()
