"""Faults are pushed: the creator of a raising module hears ``/fault`` without asking.

A headless engine runs a module written in Python whose ``process`` raises,
beside a sine.  Its creator (the kernel's client) gets ``/fault`` within a
fraction of a second, never calling ``/status``; a stock OSC client that sent
``/notify`` gets it too (a python-osc UDP server, and liblo's ``oscdump``);
redefining the class pushes ``/fault/cleared``; the sine plays on throughout.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time

import numpy as np
import pytest
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import BlockingOSCUDPServer
from pythonosc.udp_client import SimpleUDPClient

import jupysynth as js
from jupysynth.control.client import Fault
from jupysynth.engine import Engine, play, stop
from jupysynth.graph import type_name

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


def test_a_stock_osc_client_subscribes_and_hears_faults_it_did_not_cause(engine, heard):
    got: list[tuple] = []
    dispatcher = Dispatcher()
    dispatcher.map("/fault*", lambda address, *args: got.append((address, *args)))
    listener = BlockingOSCUDPServer(("127.0.0.1", 0), dispatcher)
    listener.timeout = 0.1
    port = listener.server_address[1]
    sender = SimpleUDPClient("127.0.0.1", engine.port)  # sends from another port than it hears
    try:
        sender.send_message("/notify", [1, port])
        bad = Raiser(js.Saw(freq=220))
        play(bad, engine)
        deadline = time.monotonic() + PUSH_DEADLINE
        while not got and time.monotonic() < deadline:
            listener.handle_request()
        assert got, "the subscriber heard no /fault"
        address, module_id, label, message = got[0]
        assert (address, module_id, label) == ("/fault", bad.id, f"{type_name(Raiser)}#{bad.id}")
        assert message.splitlines()[-1] == "ValueError: cannot fold 128 samples"
        heard.wait(bad.id)  # the creator heard it as well

        stop(bad, engine)  # freed: no longer muted, for everyone who was told
        deadline = time.monotonic() + PUSH_DEADLINE
        while len(got) < 2 and time.monotonic() < deadline:
            listener.handle_request()
        assert got[1] == ("/fault/cleared", bad.id)
        heard.wait(bad.id, cleared=True)
    finally:
        sender.send_message("/notify", [0, port])
        sender._sock.close()
        listener.server_close()
    assert engine.client.sync() == []


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_oscdump_subscribed_by_oscsend_prints_the_fault(engine, heard):
    """liblo's tools, nothing of ours: oscsend subscribes an oscdump's port."""
    if shutil.which("oscdump") is None or shutil.which("oscsend") is None:
        if os.environ.get("CI"):
            pytest.fail("oscdump/oscsend missing; CI must run scripts/install-system-deps.sh")
        pytest.skip("liblo-tools not installed (scripts/install-system-deps.sh)")
    port = str(_free_udp_port())
    dump = subprocess.Popen(
        ["oscdump", "-L", port], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(dump.stdout), daemon=True)
    reader.start()
    notify = ["oscsend", "localhost", str(engine.port), "/notify", "ii"]
    try:
        time.sleep(0.2)  # oscdump binds its port
        subprocess.run([*notify, "1", port], check=True, timeout=10)
        bad = Raiser(js.Saw(freq=220))
        play(bad, engine)
        heard.wait(bad.id)
        deadline = time.monotonic() + PUSH_DEADLINE
        while not any("samples" in ln for ln in lines) and time.monotonic() < deadline:
            time.sleep(0.02)
        subprocess.run([*notify, "0", port], check=True, timeout=10)
    finally:
        dump.terminate()
        dump.wait(5)
        reader.join(5)
    # "<time tag> /fault iss 7 "<label>" "<message>"", the message over several lines
    text = "".join(lines)
    assert f' /fault iss {bad.id} "{type_name(Raiser)}#{bad.id}" "Traceback' in text, text
    assert text.rstrip().endswith('ValueError: cannot fold 128 samples"')
