"""The IPython extension in a real in-process shell: loading, magics, cell ownership."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from IPython.core.interactiveshell import InteractiveShell
from scipy.io import wavfile

import jupysynth as js
from jupysynth.errors import EngineError
from jupysynth.notebook import extension, live

EXT = "jupysynth.notebook.extension"
LOAD_LINE = re.compile(
    r"^jupysynth: engine pid (\d+) on (headless|device) .*, 48000 Hz, block 128, "
    r"latency \d+\.\d ms, 0 workers, private \(no public OSC port\)$"
)


@pytest.fixture
def shell():
    ip = InteractiveShell.instance()
    yield ip
    ip.run_line_magic("unload_ext", EXT)
    assert live.current() is None


def run(ip, capsys, code: str, cell_id: str | None = None) -> str:
    capsys.readouterr()
    ip.run_cell(code, cell_id=cell_id)
    return capsys.readouterr().out


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = open(f"/proc/{pid}/stat").read()
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.fixture
def headless(monkeypatch):
    monkeypatch.setenv("JUPYSYNTH_HEADLESS", "1")
    monkeypatch.delenv("JUPYSYNTH_OFFLINE", raising=False)


def test_load_prints_one_line_and_a_second_load_starts_no_second_engine(shell, capsys, headless):
    out = run(shell, capsys, f"%load_ext {EXT}")
    line = out.strip()
    assert LOAD_LINE.match(line), line
    pid = int(LOAD_LINE.match(line).group(1))
    session = live.current()
    assert session.engine.pid == pid and session.started
    # IPython refuses a second %load_ext; calling the hook again attaches, no new engine
    run(shell, capsys, f"%load_ext {EXT}")
    again = capsys.readouterr().out
    extension.load_ipython_extension(shell)
    again = capsys.readouterr().out
    assert again.strip().endswith("(already loaded)")
    assert live.current() is session and session.engine.pid == pid
    from jupysynth.player import running_engines

    assert [e.pid for e in running_engines()] == [pid]
    # unloading stops the engine it started: no process left
    shell.run_line_magic("unload_ext", EXT)
    assert not pid_alive(pid)
    assert running_engines() == []
    shell.run_line_magic("load_ext", EXT)  # the fixture unloads once more


def test_status_record_panic_stop_restart_magics(shell, capsys, headless, tmp_path):
    run(shell, capsys, f"%load_ext {EXT}")
    session = live.current()
    out = run(shell, capsys, "%synth status")
    assert re.search(r"^engine    pid \d+ on headless \(no audio device\)", out, re.M), out
    assert "audio     48000 Hz, block 128" in out
    assert re.search(r"^load      DSP \d+\.\d % \(peak \d+\.\d %\), xruns 0", out, re.M)
    assert "patch     0 modules, 0 output channels, 0 owners (none)" in out

    run(shell, capsys, "import jupysynth as js\nfrom jupysynth.notebook import live")
    out = run(shell, capsys, "osc = js.Sine(freq=1000, amp=0.5)\nlive.play(osc, name='tone')")
    assert out == ""
    take = tmp_path / "take.wav"
    out = run(shell, capsys, f"%synth record 0.25 {take}")
    assert out.strip() == f"jupysynth: recorded 0.25 s to {take} (peak -6.0 dBFS)"
    rate, data = wavfile.read(take)
    assert rate == 48000 and data.shape == (12000, 2)
    assert np.max(np.abs(data)) == pytest.approx(0.5, abs=1e-3)

    out = run(shell, capsys, "%synth status")
    assert "1 owners (tone)" in out and "patch     1 modules, 1 output channels" in out

    assert run(shell, capsys, "%synth panic").strip() == "jupysynth: panic: everything silenced"
    assert session.owners == {} and session.playing_ids() == set()
    x = session.engine.record(0.2)
    assert np.max(np.abs(x[-4800:])) == 0.0  # silent (after any fade-out the engine applies)

    pid = session.engine.pid
    out = run(shell, capsys, "%synth stop")
    assert out.strip() == f"jupysynth: engine pid {pid} stopped; %synth restart starts a new one"
    assert not pid_alive(pid)
    out = run(shell, capsys, "%synth status")
    assert "engine stopped" in out and "%synth restart" in out
    assert "offline mode: no engine to record" in run(shell, capsys, "%synth record 1 x.wav")

    out = run(shell, capsys, "%synth restart")
    assert LOAD_LINE.match(out.strip()), out
    assert session.engine.running and session.engine.pid != pid


def test_bad_magic_input_prints_usage(shell, capsys, headless):
    run(shell, capsys, f"%load_ext {EXT}")
    out = run(shell, capsys, "%synth bogus")
    assert out.startswith("jupysynth: unknown command 'bogus'\nusage: %synth status")
    assert run(shell, capsys, "%synth").startswith("usage: %synth status | stop | panic")
    out = run(shell, capsys, "%synth record ten take.wav")
    assert out.strip() == "jupysynth: record: 'ten' is not a number of seconds"
    assert "record takes SECONDS and a file name" in run(shell, capsys, "%synth record 1")


def test_devices_lists_outputs_or_says_there_are_none(shell, capsys, headless):
    run(shell, capsys, f"%load_ext {EXT}")
    out = run(shell, capsys, "%synth devices")
    # the same query, in a fresh process as the magic does it (PortAudio lists devices once)
    listing = subprocess.run(
        [sys.executable, "-c", extension._DEVICES_SCRIPT], capture_output=True, text=True
    )
    outs = json.loads(listing.stdout)["outputs"]
    if outs:
        assert len(out.strip().splitlines()) == len(outs)
        for line, d in zip(out.splitlines(), outs):
            assert re.match(r"^[ *] +\d+ .+ \(.+, \d+ out, \d+ Hz\)$", line)
            assert d["name"] in line
    else:
        assert out.strip() == (
            "jupysynth: no audio output device (PortAudio found none); offline mode"
        )


def test_rerunning_a_cell_replaces_its_sound(shell, capsys, headless):
    run(shell, capsys, f"%load_ext {EXT}")
    session = live.current()
    run(shell, capsys, "import jupysynth as js\nfrom jupysynth.player import play")
    cell = "osc = js.Sine(freq={f}, amp=0.2)\nplay(osc)"
    run(shell, capsys, cell.format(f=440), cell_id="cell-a")
    first = shell.user_ns["osc"]
    assert session.playing_ids() == {first.id}
    run(shell, capsys, cell.format(f=550), cell_id="cell-a")
    second = shell.user_ns["osc"]
    assert session.playing_ids() == {second.id}  # replaced, not stacked
    assert [p.module for p in session.owners["cell:cell-a"]] == [second]
    # another cell adds its own sound; re-running the first leaves it alone
    run(shell, capsys, "other = js.Saw(freq=97, amp=0.1)\nplay(other)", cell_id="cell-b")
    run(shell, capsys, cell.format(f=661), cell_id="cell-a")
    third, other = shell.user_ns["osc"], shell.user_ns["other"]
    assert session.playing_ids() == {third.id, other.id}
    # what the engine plays is what the kernel says: the 661 Hz sine and the saw, nothing else
    x = session.engine.record(0.4)[9600:, 0]  # past any crossfade the engine applies
    w = np.hanning(x.size)
    level = np.abs(np.fft.rfft(x * w)) * 2 / w.sum()  # 5 Hz per bin
    assert level[661 // 5] == pytest.approx(0.2, abs=0.03)  # 661 Hz lies between bins
    assert level[97 // 5 + 1] > 0.03  # the saw's fundamental
    assert level[440 // 5] < 1e-3 and level[550 // 5] < 1e-3  # the replaced sines are gone


def test_a_cell_that_raises_keeps_the_old_sound(shell, capsys, headless):
    run(shell, capsys, f"%load_ext {EXT}")
    session = live.current()
    run(shell, capsys, "import jupysynth as js\nfrom jupysynth.player import play")
    run(shell, capsys, "osc = js.Sine(freq=440, amp=0.2)\nplay(osc)", cell_id="c")
    old = shell.user_ns["osc"]
    out = run(
        shell, capsys, "osc = js.Sine(freq=880, amp=0.2)\nplay(osc)\nraise ValueError('oops')", "c"
    )
    assert "jupysynth: the cell raised; stopped what it started (Sine#" in out
    assert session.playing_ids() == {old.id}
    assert [p.module for p in session.owners["cell:c"]] == [old]
    # a wrong parameter name fails before anything plays; the old sound goes on
    out = run(shell, capsys, "osc = js.Sine(frq=220)\nplay(osc)", "c")
    assert session.playing_ids() == {old.id}


def test_a_name_owns_its_sound_across_cells(shell, capsys, headless):
    run(shell, capsys, f"%load_ext {EXT}")
    session = live.current()
    run(shell, capsys, "import jupysynth as js\nfrom jupysynth.notebook import live")
    run(shell, capsys, "a = js.Saw(freq=55, amp=0.2)\nlive.play(a, name='bass')", "x")
    run(shell, capsys, "b = js.Square(freq=55, amp=0.2)\nlive.play(b, name='bass')", "y")
    a, b = shell.user_ns["a"], shell.user_ns["b"]
    assert session.playing_ids() == {b.id}
    assert list(session.owners) == ["bass"]
    # a failing cell does not swap the name either
    run(shell, capsys, "c = js.Pulse(freq=55)\nlive.play(c, name='bass')\n1/0", "z")
    assert session.playing_ids() == {b.id}
    run(shell, capsys, "live.stop('bass')")
    assert session.playing_ids() == set() and session.owners == {}
    out = run(shell, capsys, "live.stop('lead')")
    assert "nothing plays under the name 'lead'; names playing: none" in out
    assert a.id not in session.playing_ids()


def test_knob_panels_show_the_engine_state(shell, capsys, headless):
    run(shell, capsys, f"%load_ext {EXT}")
    from jupysynth.notebook import knobs

    osc = js.Sine(freq=440, amp=0.2)
    lp = js.LowPass(osc, cutoff=500)
    panel = knobs(osc)
    assert "not playing" in panel.state.value
    shell.user_ns.update(lp=lp, live=live)
    run(shell, capsys, "live.play(lp)")  # every open panel's state line is redrawn after a cell
    assert "in the engine, feeding another module" in panel.state.value
    lp_panel = knobs(lp)
    assert lp_panel.state.value.endswith("\u00b7 playing</b>")
    run(shell, capsys, "live.stop(lp)")
    assert "not playing" in lp_panel.state.value and "not playing" in panel.state.value
    panel.close()
    lp_panel.close()


def test_knob_moves_reach_the_engine(shell, capsys, headless):
    run(shell, capsys, f"%load_ext {EXT}")
    session = live.current()
    from jupysynth.notebook import knobs

    osc = js.Sine(freq=1000, amp=0.5)
    live.play(osc)
    panel = knobs(osc)
    panel.sliders["amp"].value = 0.125
    session.engine.sync()
    x = session.engine.record(0.1)
    # applied once sync() returns: it glides over the block after (no zipper noise),
    # which the recording may start with, then holds
    bs = session.engine.blocksize
    assert np.max(np.abs(x[bs:])) == pytest.approx(0.125, abs=1e-3)


def test_offline_mode_when_asked_or_when_the_engine_cannot_start(shell, capsys, monkeypatch):
    monkeypatch.setenv("JUPYSYNTH_OFFLINE", "1")
    out = run(shell, capsys, f"%load_ext {EXT}")
    assert out.strip() == (
        "jupysynth: offline mode: no audio device (JUPYSYNTH_OFFLINE is set); "
        "render with jupysynth.render(patch, seconds) and listen with Audio(...)"
    )
    out = run(
        shell,
        capsys,
        "from jupysynth.notebook import live\nimport jupysynth as js\n"
        "live.play(js.Sine(), name='a')",
    )
    assert out.startswith("offline mode: a is not played (JUPYSYNTH_OFFLINE is set)")
    assert run(shell, capsys, "%synth panic").strip() == (
        "jupysynth: nothing plays (no engine running)"
    )
    shell.run_line_magic("unload_ext", EXT)

    monkeypatch.delenv("JUPYSYNTH_OFFLINE")
    from jupysynth.player import Engine

    def refuse(self):
        raise EngineError("cannot open device 7: no such device")

    monkeypatch.setattr(Engine, "start", refuse)
    out = run(shell, capsys, f"%load_ext {EXT}")
    assert out.strip() == (
        "jupysynth: offline mode: no audio device (the engine could not start: cannot open "
        "device 7: no such device); render with jupysynth.render(patch, seconds) and listen "
        "with Audio(...)"
    )
    assert live.current().engine is None


def test_a_crashed_engine_is_reported_in_the_next_cell(shell, capsys, headless):
    run(shell, capsys, f"%load_ext {EXT}")
    session = live.current()
    proc = session.engine._proc
    proc.kill()
    proc.wait()
    out = run(shell, capsys, "x = 1 + 1")
    assert "jupysynth: the engine stopped (exit code -9); nothing plays." in out
    assert run(shell, capsys, "x = 2 + 2") == ""  # said once
    out = run(shell, capsys, "%synth restart")
    assert LOAD_LINE.match(out.strip())


def test_the_display_hook_shows_knobs_and_a_scope(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    osc = js.Saw(freq=220, amp=0.3)
    extension._display_module(osc)
    (box,) = shown
    panel, view = box.children
    assert list(panel.sliders) == ["freq", "amp", "phase"]
    assert view.triggered
    view.close()
    panel.close()


def test_engine_errors_are_printed_in_the_cell_that_caused_them(shell, capsys, headless):
    run(shell, capsys, f"%load_ext {EXT}")
    run(shell, capsys, "from jupysynth.notebook import live")
    out = run(shell, capsys, "live.current().engine.send('/param/set', 987654, 'freq', 440.0)")
    assert out.startswith("jupysynth engine error: /param/set: no module #987654 in the engine")
    assert run(shell, capsys, "x = 1") == ""  # reported once, in that cell


def test_percent_load_ext_jupysynth_finds_the_extension():
    # `%load_ext jupysynth` looks these up on the package itself
    assert getattr(js, "load_ipython_extension", None) is extension.load_ipython_extension, (
        "jupysynth/__init__.py must re-export load_ipython_extension and "
        "unload_ipython_extension from jupysynth.notebook.extension"
    )
    assert js.unload_ipython_extension is extension.unload_ipython_extension
