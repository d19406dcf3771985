"""JupyterLab in headless Chromium: a module that faults says so in the cell that made it.

The engine pushes ``/fault`` to the kernel; the kernel writes the error into
the output of the cell that created the module, after that cell has finished
and while another one runs, and redraws the module's knob panel.  The server,
the browser and the cell helper are those of ``test_lab.py``; a screenshot of
the cell is saved in ``build/test-artifacts/browser/fault.png``.
"""

from __future__ import annotations

import time

from .test_lab import (  # noqa: F401 - lab: a fixture
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    lab,
    run_new_cell,
)

TURNED = """import jupysynth as js
from jupysynth.notebook import knobs, play

class Turned(js.Module):
    params = (js.Param("input", 0.0, -1e30, 1e30), js.Param("amount", 0.5, 0.0, 2.0))
    positional = ("input",)

    def process(self, input, amount):
        if amount[0] > 1: raise ValueError(f"cannot fold {input.size} samples")
        return input * amount"""


def wait_for(locator, text: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        found = locator.inner_text()
        if text in found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_a_fault_shows_in_the_cell_that_made_the_module_and_on_its_panel(lab):  # noqa: F811
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pg = browser.new_page(viewport={"width": 1400, "height": 1000})
            pg.goto(lab["url"])
            pg.wait_for_selector(".jp-Notebook", timeout=120_000)
            pg.wait_for_selector("#jp-main-statusbar >> text=Idle", timeout=120_000)
            run_new_cell(pg, "%load_ext jupysynth")
            run_new_cell(pg, TURNED)
            first = pg.locator(".jp-CodeCell").count()
            run_new_cell(pg, "bad = Turned(js.Saw(freq=220))\nplay(bad)\nknobs(bad)")
            maker = pg.locator(".jp-CodeCell").nth(first)
            state = maker.locator(".jupysynth-knobs .widget-html").first
            assert "playing" in wait_for(state, "playing")
            assert "ValueError" not in maker.locator(".jp-Cell-outputArea").inner_text()

            turner_out = run_new_cell(pg, "bad.amount = 1.5")  # raises in the engine, later
            # the knob panel in the same output area may show the fault first: wait for
            # the printed report itself
            text = wait_for(maker.locator(".jp-Cell-outputArea"), "raised and is muted", 60.0)
            if "raised and is muted" not in text:
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                pg.screenshot(path=str(ARTIFACTS / "fault-missing.png"), full_page=True)
                cells = pg.locator(".jp-CodeCell")
                where = [cells.nth(k).inner_text()[-300:] for k in range(cells.count())]
                print("cells:", *where, sep="\n---\n")  # where did the report go?
            assert "raised and is muted, the rest plays on" in text, text
            assert 'raise ValueError(f"cannot fold {input.size} samples")' in text, text
            assert "ValueError: cannot fold 128 samples" in text
            assert not any("ValueError" in t for t in turner_out)  # not in the cell that ran
            line = wait_for(state, "faulted")
            assert "faulted: ValueError: cannot fold 128 samples" in line, line
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            maker.screenshot(path=str(ARTIFACTS / "fault.png"))
            # stop the engine while the kernel lives: the fixture's teardown gives the
            # server's descendants 1 s to go, and once in a full run one outlived it
            run_new_cell(pg, "%unload_ext jupysynth")
        finally:
            browser.close()
