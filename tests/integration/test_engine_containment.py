"""No user code or message takes the engine down; what reaches the device stays within full scale.

Each misbehaving module plays beside an innocent 1 kHz sine: the module is
muted and named, with its own reason, and the sine plays on, in a live engine
(``workers=0``: the cell's code runs on the engine's block thread).
"""

from __future__ import annotations

import math
import os
import sys
import time

import numpy as np
import pytest

import jupysynth as js
from jupysynth.errors import EngineError, ParamError
from jupysynth.graph import Module, Param
from jupysynth.player import Engine, play, stop


class Sleeper(Module):
    params = (Param("input", 0.0, -1e30, 1e30),)

    def process(self, input):
        time.sleep(5)
        return input


class Spinner(Module):
    """An endless loop that even swallows the first interruption."""

    params = (Param("input", 0.0, -1e30, 1e30),)

    def process(self, input):
        try:
            while True:
                pass
        except:  # noqa: E722 - what careless user code does
            pass
        while True:  # the timer fires again
            pass


class Quitter(Module):
    params = (Param("input", 0.0, -1e30, 1e30),)

    def process(self, input):
        sys.exit(1)


class HardQuitter(Module):
    params = (Param("input", 0.0, -1e30, 1e30),)

    def process(self, input):
        os._exit(3)


class Interrupted(Module):
    params = (Param("input", 0.0, -1e30, 1e30),)

    def process(self, input):
        raise KeyboardInterrupt


class BadSetup(Module):
    params = (Param("input", 0.0, -1e30, 1e30),)

    def setup(self):
        raise RuntimeError("no wavetable")

    def process(self, input):
        return input


class Segfault(Module):
    params = (Param("input", 0.0, -1e30, 1e30),)

    def process(self, input):
        import ctypes

        ctypes.string_at(0)  # reads address 0: SIGSEGV


class Forever(Module):
    """A per-sample function compiled by numba that never returns: no Python to interrupt."""

    params = (Param("input", 0.0, -1e30, 1e30),)

    @staticmethod
    def sample(x):
        y = abs(x) + 1.0
        while y > 0.5:
            y = y * 1.0
        return y


class Half(Module):
    """A well-behaved cell module, playing beside the bad ones."""

    params = (Param("input", 0.0, -1e30, 1e30),)

    def process(self, input):
        return 0.5 * input


class Huge(Module):
    params = (Param("input", 0.0, -1e30, 1e30),)

    def process(self, input):
        return input * 1e30


@pytest.fixture(scope="module")
def engine():
    with Engine(headless=True) as e:
        sine = js.Sine(freq=1000, amp=0.3, name="innocent")
        good = Half(input=js.Sine(freq=3000, amp=0.2), name="good cell code")
        play([sine, good], e)
        e.sync()
        yield e
    assert not e.running


def sine_alone(engine) -> np.ndarray:
    """The innocent sine and the good cell module, both playing: nothing else."""

    def heard() -> tuple[np.ndarray, float, float, float]:
        x = engine.record(0.2)[:, 0]
        spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
        hz = 48000 / len(x)
        k1, k3 = round(1000 / hz), round(3000 / hz)
        level1 = spectrum[k1 - 2 : k1 + 3].max()
        level3 = spectrum[k3 - 2 : k3 + 3].max()
        for k in (k1, k3):
            spectrum[k - 3 : k + 4] = 0
        return x, level1, level3, spectrum.max()

    # after a crash the sandbox, and the good module's sound, are back within a second
    deadline = time.monotonic() + 5.0
    x, level1, level3, other = heard()
    while time.monotonic() < deadline and (
        abs(level3 - level1 / 3) > 0.05 * level1 / 3 or abs(np.abs(x).max() - 0.2828) > 0.002
    ):
        time.sleep(0.1)
        x, level1, level3, other = heard()
    assert level3 == pytest.approx(level1 / 3, rel=0.05)  # 0.1 against 0.3
    # 0.3 sin(x) + 0.1 sin(3x), in phase: peaks at 0.6 s - 0.4 s^3 for s = 1/sqrt(2)
    assert np.abs(x).max() == pytest.approx(0.2828, rel=0.01)
    assert other < 1e-3 * level1
    return x


def wait_fault(engine, module_id: int, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        faults = engine.status()["faults"]
        if module_id in faults:
            return faults[module_id]
        time.sleep(0.02)
    raise AssertionError(f"module {module_id} was not muted")


@pytest.mark.parametrize(
    "cls, reason",
    [
        (Sleeper, "took longer than 5 ms, its budget per block"),
        (Spinner, "took longer than 5 ms, its budget per block"),
        (Quitter, "SystemExit: 1"),
        (HardQuitter, "os._exit(3) was called; a module may not end the engine"),
        (Interrupted, "KeyboardInterrupt"),
        (BadSetup, "RuntimeError: no wavetable"),
        (Huge, "more than 10000 (+80 dBFS): 1.0 is full scale"),
        (Segfault, "crashed the sandbox process its code runs in"),
        (Forever, "without returning (a loop that Python cannot interrupt"),
    ],
)
def test_a_misbehaving_module_is_muted_and_named_and_the_rest_plays_on(engine, cls, reason):
    frame = engine.status()["frame"]
    bad = cls(input=js.Saw(freq=100, amp=0.5))
    play(bad, engine)
    text = wait_fault(engine, bad.id)
    assert text.startswith(f"{js.graph.type_name(cls)}#{bad.id} ")
    assert reason in text
    if cls is BadSetup:
        assert "setup() failed" in text
    status = engine.status()
    assert engine.running and status["running"]
    assert status["modules"] == 5  # the sine, the good one and its input, the bad one, its saw
    assert status["frame"] > frame
    sine_alone(engine)
    stop(bad, engine)


def test_an_output_far_too_loud_is_muted_and_a_loud_one_is_limited_to_full_scale(engine):
    loud = js.Sine(freq=300, amp=4.0)  # 12 dB over: a mistake, but a sound
    before = engine.status()["limited"]
    play(loud, engine)
    x = engine.record(0.3)
    assert np.abs(x).max() <= 1.0
    assert np.abs(x).max() > 0.9
    assert engine.status()["limited"] > before
    stop(loud, engine)
    absurd = js.Sine(freq=300, amp=1e6)
    play(absurd, engine)
    assert "produced 1e+06" in wait_fault(engine, absurd.id)
    stop(absurd, engine)
    engine.record(0.2)  # the limiter's gain comes back within its release
    sine_alone(engine)


def test_a_patch_without_cell_code_starts_no_sandbox():
    from tests.procs import children_of

    with Engine(headless=True) as e:
        play(js.LowPass(js.Saw(freq=110), cutoff=800), e)
        e.sync()
        assert children_of(e.pid) == []
        play(Half(input=js.Sine(freq=300, amp=0.2)), e)
        e.sync()
        assert len(children_of(e.pid)) == 1  # the sandbox, for the cell's code


def test_without_the_limiter_the_recording_is_as_rendered():
    with Engine(headless=True, limiter=False) as e:
        loud = js.Sine(freq=300, amp=4.0)
        play(loud, e)
        assert np.abs(e.record(0.2)).max() == pytest.approx(4.0, rel=1e-3)
        assert e.status()["limited"] == 0


def test_a_hostile_spec_is_that_messages_error_and_the_bundle_goes_on(engine):
    c = engine.client
    deep = '{"values": {"freq": ' + "[" * 20000 + "]" * 20000 + "}}"
    digits = '{"values": {"freq": 1' + "0" * 400 + "}}"
    c.send_bundle(
        [
            c.message("/module/new", 2_000_000_001, "Sine", deep),
            c.message("/module/new", 2_000_000_002, "Sine", digits),
            c.message("/module/new", 2_000_000_003, "Sine", '{"values": {"freq": 500}}'),
        ]
    )
    errors = c.sync()
    assert [a for a, _ in errors] == ["/module/new", "/module/new"]
    assert "nests 20002 deep, more than 6" in errors[0][1]
    assert "a number of 401 digits" in errors[1][1]
    assert engine.status()["modules"] == 4  # the fixture's three and the valid one
    c.send("/module/free", 2_000_000_003)
    assert c.sync() == []


def test_ten_thousand_voices_play_in_parts_and_too_many_are_refused_with_the_limit(engine):
    # each voice a constant 1e-5 (a sine at 0 Hz, a quarter cycle on): together 0.1
    mix = js.Mix(*[js.Sine(freq=0, phase=0.25, amp=1e-5) for k in range(10_000)])
    play(mix, engine)
    assert engine.status()["modules"] == 10_004
    # the rest (1 and 3 kHz) has no mean over 0.1 s: what is left is every voice's part
    assert abs(engine.record(0.1)[:, 0].mean() - 0.1) < 0.002
    stop(mix, engine)
    assert engine.status()["modules"] == 3
    with pytest.raises(EngineError, match="more than the 65536 an engine holds"):
        play(js.Mix(*[js.Sine() for _ in range(65_536)]), engine)
    assert engine.status()["modules"] == 3
    sine_alone(engine)


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda e: play(js.Sine(), e, at=math.nan), "at=nan must be a Unix time"),
        (lambda e: play(js.Sine(), e, at=1e12), "within 3600 s of time.time()"),
        (lambda e: play(js.Sine(), e, fade=-1), "fade=-1 must be a number of seconds"),
        (lambda e: e.record(1e-9), "from one frame"),
        (lambda e: e.record(0.1, at=math.nan), "at=nan must be a Unix time"),
        (lambda e: e.send_bundle([("/ping",)], at=math.inf), "at=inf must be a Unix time"),
    ],
)
def test_bad_arguments_fail_in_the_kernel_before_anything_is_sent(engine, call, fragment):
    before = engine.status()
    with pytest.raises(ParamError, match=fragment):
        call(engine)
    after = engine.status()
    assert after["messages"] - before["messages"] == 1  # only the second /status
    assert after["modules"] == before["modules"]
