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
import threading
import time

import numpy as np
import pytest
from procs import children_of

import jupysynth as js
from jupysynth.player import Engine, play, stop

SR = 48000


def level_at(x: np.ndarray, hz: float) -> float:
    n = len(x)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(n))) / (n / 4)
    return float(spectrum[int(round(hz * n / SR))])


def rendering_worker(engine: Engine) -> int:
    """The pid of the worker rendering (workers=1): it wakes every block, the spare never."""
    return rendering_workers(engine, 1)[0]


def rendering_workers(engine: Engine, n: int) -> list[int]:
    """The pids of the ``n`` workers rendering: they wake every block, the spare never."""
    deadline = time.monotonic() + 30
    while len(children_of(engine.pid)) < 2:  # the warm spare starts after a death
        assert time.monotonic() < deadline, "no spare worker started"
        time.sleep(0.05)

    def wakes(pid: int) -> int:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("voluntary_ctxt_switches"):
                return int(line.split()[1])
        return 0

    while len(children_of(engine.pid)) < n + 1:
        assert time.monotonic() < deadline, "no spare worker started"
        time.sleep(0.05)
    pids = children_of(engine.pid)
    before = {p: wakes(p) for p in pids}
    time.sleep(0.3)  # about 110 blocks
    woke = {p: wakes(p) - before[p] for p in pids}
    busy = sorted(woke, key=woke.get, reverse=True)[:n]
    assert woke[busy[-1]] > 20 and sorted(woke.values())[0] < woke[busy[-1]] / 4, woke
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
        # the last death is noticed at the next block: wait for it, and for a worker again
        deadline = time.monotonic() + 30
        while (status := engine.status())["workers"] < 1 or status["worker_restarts"] < 3:
            assert time.monotonic() < deadline, ("no worker took over", status)
            time.sleep(0.05)
        assert status["faults"] == {}
        # and the sine plays again (soon; later on a loaded machine)
        deadline = time.monotonic() + 20
        while level_at(x := engine.record(0.5)[:, 0], 440) < 0.28:
            assert time.monotonic() < deadline, "the sine did not come back"
        assert level_at(x, 440) == pytest.approx(0.3, rel=0.05)


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


def tone_windows(x: np.ndarray, hz: float, width: int = 480) -> np.ndarray:
    """Complex amplitude of ``hz`` in each ``width``-frame window, on one time base:
    its modulus is the tone's level there, its angle the tone's phase at frame 0."""
    n = len(x) // width
    t = np.arange(n * width) / SR
    z = x[: n * width] * np.exp(-2j * np.pi * hz * t)
    return 2 * z.reshape(n, width).mean(axis=1)


def test_a_late_worker_plays_silence_and_the_rest_keeps_time(sound_card):
    """A worker stopped for 120 ms (as a loaded machine may stall one) is late for the
    device: its tone drops out while the other worker's tone plays on, and comes back
    in phase, as if it had played all along (it rendered every block it was sent)."""
    tones = (1000.0, 1500.0)  # whole cycles in a 10 ms window: each window sees one tone
    with Engine(device=sound_card.device_index(), workers=2) as engine:
        for hz in tones:  # two parts: the pool gives each worker one
            play(js.Sine(freq=hz, amp=0.3), engine)
        engine.sync()
        stopped = rendering_workers(engine, 2)[0]
        before = engine.status()["worker_late"]

        def stall() -> None:
            time.sleep(0.4)  # once the recording runs
            os.kill(stopped, signal.SIGSTOP)
            time.sleep(0.12)
            os.kill(stopped, signal.SIGCONT)

        staller = threading.Thread(target=stall)
        staller.start()
        try:
            # what the engine sent the card (a device that ran dry meanwhile, on a
            # loaded machine, loses time in what it plays, not in this)
            x = engine.record(1.0)[:, 0]
        finally:
            staller.join()
            os.kill(stopped, signal.SIGCONT)
        status = engine.status()
    levels = [tone_windows(x, hz) for hz in tones]
    a, b = (np.abs(z) for z in levels)
    alone = [((a < 0.03) & (b > 0.27)), ((b < 0.03) & (a > 0.27))]
    # the stopped worker's tone is missing while the other plays: the engine did not wait
    gone = int(np.argmax([m.sum() for m in alone]))
    assert alone[gone].sum() >= 3, (np.round(a, 2), np.round(b, 2))
    # and it comes back in phase: the windows just before and after its gap agree
    # (from windows where both tones are whole: a block dropped in part of one moves
    # the phase measured there)
    hole = np.flatnonzero(alone[gone])
    z = levels[gone]
    whole = np.flatnonzero((a > 0.29) & (b > 0.29))
    pre, post = whole[whole < hole[0]], whole[whole > hole[-1]]
    assert len(pre) and len(post), "the gap fell at the edge of the recording"
    turned = np.angle(z[post[0]] / z[pre[-1]])
    assert abs(turned) < 0.2, (turned, np.round(a, 2), np.round(b, 2))
    assert status["worker_late"] > before
    # faded out and in, not cut: no step larger than the two tones' own steepest slope
    # (0.3 * 2 pi * 2500 / 48000 = 0.098 a sample) plus a fade's (0.3 / 128 a sample);
    # a cut steps by up to 0.3
    assert np.abs(np.diff(x)).max() < 0.12, np.abs(np.diff(x)).max()


def test_a_worker_dying_as_a_prepared_patch_switches_costs_only_that_worker(capfd):
    """Two sines on two workers, then a patch joining them: one sine's state must cross to
    the other worker.  Its worker is killed before the switch: the switch is declined (its
    state is gone), the patch is built again, and the surviving worker keeps rendering."""
    from jupysynth.engine.workers import PoolRenderer
    from jupysynth.graph import snapshot

    bs = 128
    a, b = js.Sine(freq=330.0, amp=0.2), js.Sine(freq=550.0, amp=0.2)
    nodes_a, outs_a = snapshot([a, b])
    nodes_b, outs_b = snapshot(js.Mix(a, b))
    pool = PoolRenderer(SR, bs, 2)
    try:
        pool.update(nodes_a, outs_a)
        for _ in range(10):
            pool.process(bs)
        assert sorted(pool._holders[a.id] + pool._holders[b.id]) == [0, 1]
        box = {}
        thread = threading.Thread(
            target=lambda: box.setdefault("plan", pool.prepare(nodes_b, outs_b))
        )
        thread.start()
        while thread.is_alive():
            pool.process(bs)
        plan = box["plan"]
        assert plan.ready
        moving = [i for i in (a.id, b.id) if plan.holders[i] != pool._holders[i]]
        assert len(moving) == 1
        source = pool._holders[moving[0]][0]
        (survivor,) = {0, 1} - {source}
        victim = pool._slots[source].proc
        survivor_pid = pool._slots[survivor].proc.pid
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        if not pool.apply(plan, redo=False):  # as the engine does: then it asks again
            pool.update(nodes_b, outs_b)
        out = np.concatenate([pool.process(bs).copy() for _ in range(int(SR / bs))])
        assert pool.restarts == 1
        assert pool._slots[survivor] is not None
        assert pool._slots[survivor].proc.pid == survivor_pid
        assert pool._slots[survivor].proc.poll() is None
        x = out[-SR // 2 :, 0]
        assert level_at(x, 330.0) == pytest.approx(0.2, rel=0.05)
        assert level_at(x, 550.0) == pytest.approx(0.2, rel=0.05)
    finally:
        pool.close()
    assert "told to switch" not in capfd.readouterr().err
