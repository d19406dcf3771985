"""Faults are pushed: the creator of a raising module hears ``/fault`` without asking.

A headless engine runs a module written in Python whose ``process`` raises,
beside a sine.  Its creator (the kernel's client) gets ``/fault`` within a
fraction of a second, never calling ``/status``; a stock OSC client that sent
``/notify`` gets it too (a python-osc UDP server, and liblo's ``oscdump``);
redefining the class pushes ``/fault/cleared``; the sine plays on throughout.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import jupysynth as js
from jupysynth.control.client import Client, Fault
from jupysynth.graph import type_name
from jupysynth.player import Engine, play, stop

SR = 48000
SIGNAL = js.Param("input", 0.0, -1e30, 1e30)
#: A deadline, not a measurement: the engine looks every 30 ms.
PUSH_DEADLINE = 2.0


class Raiser(js.Module):
    params = (SIGNAL,)
    positional = ("input",)

    def process(self, input):
        raise ValueError(f"cannot fold {input.size} samples")


def redefine(cls, **body):
    """The class as a cell run again with a new body: same module, same qualified name."""
    namespace = {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}
    namespace.update(body, __module__=cls.__module__, __qualname__=cls.__qualname__)
    return type(cls.__name__, (js.Module,), namespace)


def peak_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-30)
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * SR / len(x)


class Heard:
    """What a client's ``on_fault`` heard, waitable."""

    def __init__(self) -> None:
        self.events: list[tuple[int, Fault | None]] = []
        self._cond = threading.Condition()

    def __call__(self, module_id: int, fault: Fault | None) -> None:
        with self._cond:
            self.events.append((module_id, fault))
            self._cond.notify_all()

    def wait(self, module_id: int, cleared: bool = False) -> Fault | None:
        deadline = time.monotonic() + PUSH_DEADLINE
        with self._cond:
            while True:
                for i, f in self.events:
                    if i == module_id and (f is None) == cleared:
                        return f
                left = deadline - time.monotonic()
                assert left > 0, f"no push for #{module_id} within {PUSH_DEADLINE} s: {self.events}"
                self._cond.wait(left)


@pytest.fixture(scope="module")
def engine():
    with Engine(headless=True) as e:
        yield e
    assert not e.running


@pytest.fixture
def heard(engine):
    heard = Heard()
    engine.client.on_fault = heard
    yield heard
    engine.client.on_fault = None
    js.panic(engine)
    engine.client.sync()
    js.Module._registry[type_name(Raiser)] = Raiser


def no_status(engine, monkeypatch):
    """Make asking for the status an error: the push must come unasked."""

    def refuse(*args, **kwargs):
        raise AssertionError("the test must not ask /status")

    monkeypatch.setattr(engine.client, "status", refuse)


def test_the_creator_hears_the_fault_unasked_and_the_rest_plays_on(engine, heard, monkeypatch):
    no_status(engine, monkeypatch)
    sine = js.Sine(freq=1000, amp=0.3)
    bad = Raiser(js.Saw(freq=220))
    t = time.monotonic()
    play([sine, bad], engine)
    fault = heard.wait(bad.id)
    took = time.monotonic() - t
    print(f"\n[push] /fault reached the creator {took * 1000:.0f} ms after play() was called")
    assert fault.label == f"{type_name(Raiser)}#{bad.id}"  # as the engine names it
    assert fault.last_line == "ValueError: cannot fold 128 samples"
    assert "Traceback (most recent call last)" in fault.message
    assert 'raise ValueError(f"cannot fold {input.size} samples")' in fault.tail(3)
    assert engine.client.faults == {bad.id: fault}
    x = engine.record(0.25)[:, 0]
    assert peak_hz(x) == pytest.approx(1000, abs=0.5)
    np.testing.assert_allclose(np.abs(x).max(), 0.3, rtol=1e-3)  # the sine alone plays on
    assert [i for i, _ in heard.events] == [bad.id]  # one push, not one per block

    redefine(Raiser, process=lambda self, input: 0.5 * input)  # the cell re-run with a fix
    heard.wait(bad.id, cleared=True)
    assert engine.client.faults == {}
    assert np.abs(engine.record(0.2)[:, 0]).max() > 0.4  # the fixed module plays beside the sine


def test_a_second_client_of_the_owner_subscribes_and_hears_faults_it_did_not_cause(engine, heard):
    got: list[tuple[int, Fault | None]] = []
    with Client(path=engine.socket_path) as watcher:
        watcher.on_fault = lambda i, f: got.append((i, f))
        watcher.send("/notify", 1)
        watcher.sync()
        bad = Raiser(js.Saw(freq=220))
        play(bad, engine)
        deadline = time.monotonic() + PUSH_DEADLINE
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        assert got, "the subscriber heard no /fault"
        module_id, fault = got[0]
        assert (module_id, fault.label) == (bad.id, f"{type_name(Raiser)}#{bad.id}")
        assert fault.last_line == "ValueError: cannot fold 128 samples"
        heard.wait(bad.id)  # the creator heard it as well

        stop(bad, engine)  # freed: no longer muted, for everyone who was told
        deadline = time.monotonic() + PUSH_DEADLINE
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert got[1] == (bad.id, None)
        heard.wait(bad.id, cleared=True)
        watcher.send("/notify", 0)
        assert watcher.sync() == []
    assert engine.client.sync() == []
