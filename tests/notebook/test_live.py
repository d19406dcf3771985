"""Cell ownership bookkeeping against a recording stand-in for the engine's play/stop."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import jupysynth as js
import jupysynth.player as engine_api
from jupysynth.errors import JupysynthError
from jupysynth.notebook.live import FADE, Session


class FakePlayer:
    def __init__(self) -> None:
        self.roots: dict[int, list] = {}
        self.modules: dict[int, object] = {}


class FakeEngine:
    running = True
    client = None

    def __init__(self) -> None:
        self.player = FakePlayer()
        self.calls: list[tuple] = []

    def status(self) -> dict:
        return {"faults": {}}


@pytest.fixture
def fake(monkeypatch):
    """An engine whose play/stop accept ``fade``, as the engine will once it can crossfade."""
    eng = FakeEngine()

    def play(ports, engine, fade=0.0):
        eng.calls.append(("play", [p.module.id for p in ports], fade))
        for p in ports:
            engine.player.roots.setdefault(p.module.id, []).append(p)

    def stop(ports, engine, fade=0.0):
        eng.calls.append(("stop", [p.module.id for p in ports], fade))
        for p in ports:
            engine.player.roots.pop(p.module.id, None)

    monkeypatch.setattr(engine_api, "play", play)
    monkeypatch.setattr(engine_api, "stop", stop)
    return eng


def cell(session, body, cell_id="c1", error=None):
    session.pre_run_cell(SimpleNamespace(cell_id=cell_id))
    body()
    session.post_run_cell(SimpleNamespace(error_before_exec=None, error_in_exec=error))


def test_replacing_a_cells_sound_crossfades_when_the_engine_can(fake):
    session = Session(fake)
    a, b = js.Sine(freq=220), js.Sine(freq=330)
    cell(session, lambda: session.play(a))
    cell(session, lambda: session.play(b))
    assert fake.calls == [
        ("play", [a.id], FADE),
        ("play", [b.id], FADE),
        ("stop", [a.id], FADE),
    ]
    assert session.playing_ids() == {b.id}


def test_without_a_cell_id_nothing_is_owned_and_sounds_stack(fake):
    session = Session(fake)
    a, b = js.Sine(freq=220), js.Sine(freq=330)
    cell(session, lambda: session.play(a), cell_id=None)
    cell(session, lambda: session.play(b), cell_id=None)
    assert session.playing_ids() == {a.id, b.id}
    assert session.owners == {}


def test_replaying_the_same_module_does_not_stop_it(fake):
    session = Session(fake)
    a = js.Saw(freq=110)
    cell(session, lambda: session.play(a, name="bass"))
    cell(session, lambda: session.play(a, name="bass"))
    assert session.playing_ids() == {a.id}
    assert [c[0] for c in fake.calls] == ["play", "play"]


def test_a_named_sound_swaps_at_once_outside_cells(fake):
    session = Session(fake)
    a, b = js.Saw(freq=110), js.Saw(freq=220)
    session.play(a, name="lead")
    session.play(b, name="lead")
    assert session.playing_ids() == {b.id}
    session.stop("lead")
    assert session.playing_ids() == set() and session.owners == {}


def test_stopping_a_patch_removes_it_from_its_owner(fake):
    session = Session(fake)
    a, b = js.Saw(freq=110), js.Saw(freq=220)
    session.play([a, b], name="pair")
    session.stop(a)
    assert [p.module for p in session.owners["pair"]] == [b]
    session.stop()
    assert session.playing_ids() == set() and session.owners == {}


def test_an_unknown_name_says_which_names_play(fake):
    session = Session(fake)
    session.play(js.Sine(), name="drone")
    with pytest.raises(
        JupysynthError, match="nothing plays under the name 'drums'; names playing: drone"
    ):
        session.stop("drums")


def test_the_module_state_line_follows_the_engine(fake):
    session = Session(fake)
    osc = js.Sine()
    assert session.state_of(osc) == "not playing"
    session.play(osc)
    fake.player.modules[osc.id] = osc
    fake.status = lambda: {"faults": {}}
    assert session.state_of(osc) == "playing"
    fake.status = lambda: {"faults": {osc.id: "Sine#1 produced NaN"}}
    assert session.state_of(osc) == "faulted: Sine#1 produced NaN"
    fake.running = False
    assert session.state_of(osc) == "engine stopped: %synth restart"
    assert Session(None, reason="no device").state_of(osc) == "offline mode (no device): not played"
