"""The worker pool's protocol under ordinary use and under attack from outside.

What must hold whatever the machine's load: a worker is replaced only when it
really died or hung, never because the engine confused its own messages; a
module is muted as a culprit only for crashes and hangs of the workers holding
it, never for kills from outside.  Timing figures (block times, load) are in
benchmarks/soak.py, not here.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
from procs import children_of

import jupysynth as js
from jupysynth.engine import Engine, play, stop

SR = 48000


def level_at(x: np.ndarray, hz: float) -> float:
    n = len(x)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(n))) / (n / 4)
    return float(spectrum[int(round(hz * n / SR))])


def rendering_worker(engine: Engine) -> int:
    """The pid of the worker rendering (workers=1): it wakes every block, the spare never."""
    deadline = time.monotonic() + 30
    while len(children_of(engine.pid)) < 2:  # the warm spare starts after a death
        assert time.monotonic() < deadline, "no spare worker started"
        time.sleep(0.05)

    def wakes(pid: int) -> int:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("voluntary_ctxt_switches"):
                return int(line.split()[1])
        return 0

    pids = children_of(engine.pid)
    before = {p: wakes(p) for p in pids}
    time.sleep(0.3)  # about 110 blocks
    woke = {p: wakes(p) - before[p] for p in pids}
    busy = max(woke, key=woke.get)
    assert woke[busy] > 20 and sorted(woke.values())[0] < woke[busy] / 4, woke
    return busy


def test_plays_in_a_row_keep_every_worker_and_every_sine(capfd):
    """Four plays with no wait between them: each prepares while the last switches."""
    freqs = (220.0, 330.0, 440.0, 550.0)
    with Engine(headless=True, workers=2) as engine:
        workers = children_of(engine.pid)
        for f in freqs:
            play(js.Sine(freq=f, amp=0.1), engine)
        engine.sync()
        x = engine.record(1.0)[:, 0]
        status = engine.status()
        survivors = children_of(engine.pid)
    err = capfd.readouterr().err
    assert "told to switch" not in err and "exited with code" not in err, err
    assert status["faults"] == {}
    for f in freqs:
        assert level_at(x, f) == pytest.approx(0.1, rel=0.05), f
    if status["worker_restarts"] == 0:
        assert survivors == workers


def test_cell_reruns_with_crossfades_keep_every_worker(capfd):
    """A cell's patch replaced ten times with a crossfade, the next before the last ends."""
    with Engine(headless=True, workers=2) as engine:
        old = None
        for k in range(10):
            new = js.Mix(
                *[js.LowPass(js.Saw(freq=100.0 + 10 * k + i), cutoff=2000) for i in range(8)]
            )
            if old is not None:
                stop(old, engine, fade=0.05)
            old = new * 0.05
            play(old, engine, fade=0.05)
            time.sleep(0.03)
        engine.sync()
        time.sleep(0.2)
        x = engine.record(0.5)[:, 0]
        status = engine.status()
    err = capfd.readouterr().err
    assert "told to switch" not in err and "exited with code" not in err, err
    assert status["faults"] == {}
    # only the last patch plays: its lowest voice, and none of the ones before
    assert level_at(x, 190.0) > 0.005
    assert level_at(x, 100.0) < 1e-4


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_kills_from_outside_never_mute_a_module(sig):
    with Engine(headless=True, workers=1) as engine:
        osc = js.Sine(freq=440, amp=0.3)
        play(osc, engine)
        for _ in range(3):
            os.kill(rendering_worker(engine), sig)
            time.sleep(0.2)
        deadline = time.monotonic() + 30
        while engine.status()["workers"] < 1:
            assert time.monotonic() < deadline, "no worker took over"
            time.sleep(0.05)
        status = engine.status()
        assert status["worker_restarts"] >= 3
        assert status["faults"] == {}
        assert level_at(engine.record(0.5)[:, 0], 440) == pytest.approx(0.3, rel=0.05)


def test_a_module_on_two_workers_that_crashed_is_muted_and_the_rest_plays():
    """SIGSEGV stands in for a crash in a module's code: the worker dies of it."""
    with Engine(headless=True, workers=1) as engine:
        osc = js.Sine(freq=440, amp=0.3)
        play(osc, engine)
        for _ in range(2):
            os.kill(rendering_worker(engine), signal.SIGSEGV)
            time.sleep(0.3)
        status = engine.status()
        assert osc.id in status["faults"]
        assert "two workers that died" in status["faults"][osc.id]
        assert "SIGSEGV" in status["faults"][osc.id]
        assert not engine.record(0.1).any()
        deadline = time.monotonic() + 30
        while engine.status()["workers"] < 1:  # until a new spare took the empty slot
            assert time.monotonic() < deadline, "no worker took over"
            time.sleep(0.05)
        other = js.Sine(freq=1000, amp=0.2)
        play(other, engine)
        assert level_at(engine.record(0.5)[:, 0], 1000) == pytest.approx(0.2, rel=0.05)
