"""The worker pool: the same samples for any worker count, and workers that die or hang.

Headless engines (no device needed); workers are real processes, found as the
engine process's children.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from procs import children_of

import jupysynth as js
from jupysynth.player import Engine, play

SR, BS = 48000, 128
_PR_SET_CHILD_SUBREAPER = 36


def peak_hz(x: np.ndarray, fs: float = SR) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-30)
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * fs / len(x)


def level_at(x: np.ndarray, hz: float, fs: float = SR) -> float:
    """Amplitude of the component at ``hz`` (a 1 Hz-resolution window of exactly 1 s or less)."""
    n = len(x)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(n))) / (n / 4)
    return float(spectrum[int(round(hz * n / fs))])


def spec(m: js.Module) -> str:
    values = {
        k: [v.module.id, v.index] if isinstance(v, js.Port) else v for k, v in m._values.items()
    }
    return json.dumps({"values": values, "options": m._opts})


def voices() -> tuple[list[js.Module], js.Module, js.Module, js.MulAdd]:
    """Two voices (two parts of the patch) and a modulation that will join them."""
    lfo_a = js.Sine(freq=1.5)
    a = js.Pan(js.LowPass(js.Saw(freq=110, amp=0.2), cutoff=900 + 500 * lfo_a, q=2), pos=-0.5)
    b_filter = js.LowPass(js.Square(freq=165, amp=0.2), cutoff=1200, q=3)
    b = js.Pan(b_filter, pos=0.5)
    link = 700 + 300 * lfo_a  # will drive voice b's cutoff: the parts join
    return [a, b], b_filter, lfo_a, link


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_same_samples_for_any_worker_count_even_when_parts_join(workers):
    """Live with N workers == offline render, bit for bit, across a join of two parts."""
    outs, b_filter, lfo_a, link = voices()
    events = [(0.05, b_filter, "q", 1.0), (0.15, b_filter, "cutoff", link)]
    offline = js.render(outs, 0.3, SR, BS, events=events)
    with Engine(headless=True, workers=workers) as engine:
        assert engine.status()["workers"] == workers
        t = engine.time_of(engine.frame_at(time.time() + 0.4))
        play(outs, engine, at=t)
        # the modulator exists from the start offline (render adds an event's source),
        # so it is created with the patch here, unconnected
        engine.send_bundle([("/module/new", link.id, "MulAdd", spec(link))], at=t)
        engine.send_bundle([("/param/set", b_filter.id, "q", 1.0)], at=t + 0.05)
        engine.send_bundle([("/param/connect", b_filter.id, "cutoff", link.id, 0)], at=t + 0.15)
        live = engine.record(0.3, at=t)
        status = engine.status()
        assert engine.client.take_errors() == []
    assert status["late"] == 0 and status["worker_restarts"] == 0
    assert np.array_equal(live, offline)


def voice_bank(n: int):
    """``n`` voices under one LFO, summed and filtered: a patch the pool splits by voice."""
    lfo = js.Sine(freq=2.0)
    voices = [
        js.LowPass(js.Saw(freq=110 * 2 ** (i / n), amp=0.5 / n), cutoff=900 + 400 * lfo, q=2)
        for i in range(n)
    ]
    mix = js.Mix(*voices)
    master = js.Pan(js.LowPass(mix, cutoff=3000 + 500 * lfo), pos=0.2)
    return lfo, voices, mix, master


@pytest.mark.parametrize("workers, n", [(2, 48), (3, 48), (2, 160), (3, 300)])
def test_a_split_voice_bank_plays_the_same_samples_as_offline(workers, n):
    """Voices on every worker, the LFO copied, the Mix in a second phase: bit for bit.

    48 voices are copied to the tail's worker whole; a Mix of 160 or 300 is summed
    by chunks of 64 where their voices render (a chunk across two workers' ranges on
    the tail's worker, from copies).
    """
    lfo, voices, mix, master = voice_bank(n)
    events = [
        (0.04, voices[5], "q", 4.0),  # a voice
        (0.09, lfo, "freq", 7.0),  # the head every worker renders
        (0.13, mix, "amp", 0.5),  # the tail
        (0.17, voices[40].input, "freq", 1234.5),
    ]
    offline = js.render(master, 0.25, SR, BS, events=events)
    with Engine(headless=True, workers=workers) as engine:
        t = engine.time_of(engine.frame_at(time.time() + 0.5))
        play(master, engine, at=t)
        for at, module, name, value in events:
            engine.send_bundle([("/param/set", module.id, name, value)], at=t + at)
        live = engine.record(0.25, at=t)
        status = engine.status()
        assert engine.client.take_errors() == []
        pids = children_of(engine.pid)
    assert status["late"] == 0 and status["worker_restarts"] == 0
    assert len(pids) == workers + 1
    assert np.abs(offline).max() > 0.05
    assert np.array_equal(live, offline)


def test_the_pool_splits_a_voice_bank_between_its_workers():
    from jupysynth.engine.workers import PoolRenderer
    from jupysynth.graph import snapshot

    lfo, voices, mix, master = voice_bank(64)
    nodes, outputs = snapshot(master)
    offline = js.render(master, 40 * BS / SR, SR, BS)
    pool = PoolRenderer(SR, BS, 2)
    try:
        pool.update(nodes, outputs)
        shares = [w.ids for w in pool._slots]
        live = np.concatenate([pool.process(BS).copy() for _ in range(40)])
    finally:
        pool.close()
    assert all(len(ids) > len(nodes) // 3 for ids in shares)  # both workers carry voices
    assert all(lfo.id in ids for ids in shares)  # the LFO is rendered on both
    assert sum(mix.id in ids for ids in shares) == 1
    assert np.array_equal(live, offline)


class Drone(js.Module):
    """A module written in a cell: numba compiles its sample() when a patch first uses it."""

    params = (js.Param("freq", 220.0, 1.0, 20000.0), js.Param("amp", 0.1, 0.0, 1.0))
    sample_state = 1

    @staticmethod
    def sample(s, freq, amp):
        s[0] = (s[0] + freq / 48000.0) % 1.0
        return amp * (2.0 * s[0] - 1.0)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_patch_prepared_while_the_pool_plays_switches_at_one_block_with_state_kept(workers):
    """prepare() on a thread while blocks go on, apply() between two: the same samples as a
    renderer updated at that block, and the blocks never wait for the compile."""
    import threading

    from jupysynth.engine.workers import PoolRenderer
    from jupysynth.graph import snapshot

    lfo, voices, mix, master = voice_bank(48)
    drone = Drone(freq=330.0 + 0.1 * (workers + time.time() % 1), amp=0.2)  # a fresh compile
    nodes_a, outs_a = snapshot(master)
    nodes_b, outs_b = snapshot([master, drone])
    ref = js.Renderer(nodes_a, outs_a, SR, BS)
    pool = PoolRenderer(SR, BS, workers)
    got, want = [], []
    try:
        from jupysynth.control.typedefs import dump_type
        from jupysynth.graph import type_name

        pool.define_type(type_name(Drone), dump_type(Drone))  # as /type/define does
        pool.update(nodes_a, outs_a)
        for _ in range(10):
            got.append(pool.process(BS).copy())
            want.append(ref.process(BS).copy())
        box = {}
        thread = threading.Thread(
            target=lambda: box.setdefault("plan", pool.prepare(nodes_b, outs_b))
        )
        thread.start()
        during = 0
        while thread.is_alive():
            if during == 3:  # a knob turned while the workers prepare
                pool.set(voices[7].id, "q", 3.0)
                ref.set(voices[7].id, "q", 3.0)
            got.append(pool.process(BS).copy())
            want.append(ref.process(BS).copy())
            during += 1
        assert pool.apply(box["plan"], redo=False)
        ref.update(nodes_b, outs_b)
        ref.set(voices[7].id, "q", 3.0)  # the knob outlives the edit prepared before it
        for _ in range(20):
            got.append(pool.process(BS).copy())
            want.append(ref.process(BS).copy())
    finally:
        pool.close()
    # numba compiled Drone for most of a second on the workers' threads; blocks went on
    assert during >= 20
    assert np.array_equal(np.concatenate(got), np.concatenate(want))
    assert np.abs(np.concatenate(got)[-20 * BS :]).max() > 0.15  # the drone plays


class Blowup(js.Module):
    """A module written in a cell that turns NaN after a tenth of a second."""

    params = (js.Param("input", 0.0, -1e30, 1e30),)
    positional = ("input",)
    sample_state = 1

    @staticmethod
    def sample(s, x):
        s[0] += 1.0
        return x if s[0] < 4800.0 else math.nan


@pytest.mark.parametrize("n", [48, 160])
def test_a_voice_turning_nan_in_a_split_patch_is_muted_and_named_and_the_rest_plays(n):
    """Caught by the tail (a voice copied whole) or where its chunk is summed (160)."""
    from jupysynth.control.typedefs import dump_type
    from jupysynth.engine.workers import PoolRenderer
    from jupysynth.graph import snapshot, type_name

    lfo = js.Sine(freq=2.0)
    voices = [
        js.LowPass(js.Saw(freq=110 + 3 * (i % 48), amp=0.02), cutoff=900 + 400 * lfo)
        for i in range(n)
    ]
    bad = Blowup(voices[20], name="blowup")
    voices[20] = bad
    nodes, outputs = snapshot(js.Mix(*voices))
    pool = PoolRenderer(SR, BS, 2)
    try:
        pool.define_type(type_name(Blowup), dump_type(Blowup))
        pool.update(nodes, outputs)
        x = np.concatenate([pool.process(BS).copy() for _ in range(80)])
        faults = dict(pool.faults)
    finally:
        pool.close()
    assert np.isfinite(x).all()
    assert list(faults) == [bad.id] and "blowup" in faults[bad.id] and "NaN" in faults[bad.id]
    assert np.abs(x[-20 * BS :]).max() > 0.05  # the other voices play on


def until_heard(engine: Engine, heard, seconds: float = 0.5, timeout: float = 20.0):
    """Record ``seconds`` until ``heard(x)``, for up to ``timeout`` s; the last recording.

    A dead worker's modules come back once a division without it, prepared off
    the block thread, switches in: soon, but later on a loaded machine.
    """
    deadline = time.monotonic() + timeout
    while True:
        x = engine.record(seconds)
        if heard(x) or time.monotonic() > deadline:
            return x


def until_workers(engine: Engine, n: int, restarts: int = 1, timeout: float = 30.0) -> dict:
    """The status once the pool replaced ``restarts`` workers and has ``n`` again."""
    deadline = time.monotonic() + timeout
    while (s := engine.status())["workers"] < n or s["worker_restarts"] < restarts:
        assert time.monotonic() < deadline, "no spare took the dead worker's place"
        time.sleep(0.05)
    return s


def test_a_killed_worker_of_a_split_patch_is_replaced_and_the_voices_play_again():
    _, _, _, master = voice_bank(48)
    expected = js.render(master, 1.0, SR, BS)
    level = np.sqrt(np.mean(expected**2))
    with Engine(headless=True, workers=2) as engine:
        play(master, engine)
        time.sleep(0.3)
        os.kill(children_of(engine.pid)[1], signal.SIGKILL)
        status = until_workers(engine, 2)
        assert status["worker_restarts"] == 1
        assert status["faults"] == {}

        def back(x):
            return np.sqrt(np.mean(x**2)) == pytest.approx(level, rel=0.15)

        x = until_heard(engine, back, 1.0)
    # the voices restarted from silence with fresh state: the level is back, not the phase
    assert np.sqrt(np.mean(x**2)) == pytest.approx(level, rel=0.15)


def _two_sines(engine: Engine) -> None:
    play([js.Sine(freq=440, amp=0.3), js.Sine(freq=660, amp=0.3)], engine)


def both_sines(x: np.ndarray) -> bool:
    return min(level_at(x[:, 0], 440), level_at(x[:, 0], 660)) > 0.28


def test_a_killed_worker_is_replaced_and_every_module_plays_again():
    with Engine(headless=True, workers=2) as engine:
        _two_sines(engine)
        workers = children_of(engine.pid)
        assert len(workers) == 3  # two rendering, one warm spare
        os.kill(workers[0], signal.SIGKILL)
        status = until_workers(engine, 2)
        assert status["worker_restarts"] == 1
        assert status["faults"] == {} and status["running"]
        x = until_heard(engine, both_sines, 1.0)[:, 0]
        assert level_at(x, 440) == pytest.approx(0.3, rel=0.05)
        assert level_at(x, 660) == pytest.approx(0.3, rel=0.05)
        assert workers[0] not in children_of(engine.pid)


def test_a_hung_worker_is_killed_at_its_deadline_and_the_rest_plays_on():
    with Engine(headless=True, workers=2) as engine:
        _two_sines(engine)
        victim = children_of(engine.pid)[0]
        os.kill(victim, signal.SIGSTOP)
        try:
            engine.record(0.5)  # the clock goes on past the deadline
        finally:
            if Path(f"/proc/{victim}").exists():
                os.kill(victim, signal.SIGKILL)
        status = until_workers(engine, 2)
        assert status["worker_restarts"] == 1
        tail = until_heard(engine, both_sines, 1.0)[:, 0]
        assert level_at(tail, 440) == pytest.approx(0.3, rel=0.05)
        assert level_at(tail, 660) == pytest.approx(0.3, rel=0.05)


def test_workers_die_with_a_sigkilled_engine_and_leave_nothing():
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0  # so we can reap orphans
    # jack* entries belong to the JACK server of the session's sound card
    shm = {n for n in os.listdir("/dev/shm") if not n.startswith("jack")}
    kids = children_of(os.getpid())  # jackd, when the session's sound card runs
    try:
        engine = Engine(headless=True, workers=2).start()
        workers = children_of(engine.pid)
        assert len(workers) == 3
        os.kill(engine.pid, signal.SIGKILL)
        engine.stop()
        deadline = time.monotonic() + 10
        left = set(workers)
        while left and time.monotonic() < deadline:
            for pid in list(left):
                try:
                    reaped, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    reaped = pid  # reaped by someone else: gone
                if reaped:
                    left.discard(pid)
            time.sleep(0.02)
        assert not left, f"workers {left} outlived their engine"
    finally:
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
    assert {n for n in os.listdir("/dev/shm") if not n.startswith("jack")} == shm
    assert children_of(os.getpid()) == kids


def test_a_crossfade_sounds_the_same_with_and_without_workers():
    takes = []
    for workers in (0, 2):
        a, b = js.Saw(freq=220, amp=0.3), js.Triangle(freq=330, amp=0.3)
        with Engine(headless=True, workers=workers) as engine:
            t = engine.time_of(engine.frame_at(time.time() + 0.3))
            play(a, engine, at=t)
            engine.send_bundle([("/module/new", b.id, "Triangle", spec(b))], at=t)
            engine.send_bundle(
                [
                    ("/fade", 0.05),
                    ("/out/remove", a.id),
                    ("/module/free", a.id),
                    ("/out/add", b.id),
                ],
                at=t + 0.1,
            )
            takes.append(engine.record(0.2, at=t))
            status = engine.status()
            assert (status["modules"], status["outputs"], status["late"]) == (1, 1, 0)
    assert np.array_equal(takes[0], takes[1])
    offline_a = js.render(a, 0.2, SR, BS)
    np.testing.assert_array_equal(takes[0][: int(0.1 * SR)], offline_a[: int(0.1 * SR)])


class Partials(js.Module):
    """A cell module that costs about 600 built-in kernel instances (16 sines a sample)."""

    params = (js.Param("freq", 110.0, 1.0, 20000.0), js.Param("amp", 0.1, 0.0, 1.0))
    sample_state = 1

    @staticmethod
    def sample(s, freq, amp):
        s[0] = (s[0] + freq / 48000.0) % 1.0
        acc = 0.0
        for k in range(1, 17):
            acc += math.sin(2.0 * math.pi * k * s[0]) / k
        return amp * acc


def partials_bank() -> js.Module:
    # weighed by kind, 48 of them (and the Mix) stay under split.SPLIT_WEIGHT: whole
    return js.Mix(*[Partials(freq=55 + 7 * i, amp=0.01) for i in range(48)])


def partials_pool(mix: js.Module):
    """``(nodes, outputs, reference renderer, 2-worker pool playing mix)``."""
    from jupysynth.control.typedefs import dump_type
    from jupysynth.engine.workers import PoolRenderer
    from jupysynth.graph import snapshot, type_name

    nodes, outputs = snapshot(mix)
    pool = PoolRenderer(SR, BS, 2)
    try:
        pool.define_type(type_name(Partials), dump_type(Partials))
        pool.update(nodes, outputs)
    except BaseException:
        pool.close()
        raise
    return nodes, outputs, js.Renderer(nodes, outputs, SR, BS), pool


def test_measured_costs_divide_a_heavy_cell_module_bank_again_with_the_same_samples():
    """The workers time their kernels; a bank far heavier than guessed is split, bit for bit."""
    import threading

    from jupysynth.engine.split import SPLIT_WEIGHT
    from jupysynth.graph import type_name

    mix = partials_bank()
    nodes, outputs, ref, pool = partials_pool(mix)
    got, want = [], []
    try:
        before = {tuple(s) for s in pool._holders.values()}
        box: dict = {}
        for k in range(1200):
            got.append(pool.process(BS).copy())
            want.append(ref.process(BS).copy())
            if pool.rebalance_wanted and "thread" not in box:
                pool.rebalance_wanted = False  # as the engine's block loop does
                box["asked"] = k
                box["thread"] = threading.Thread(
                    target=lambda: box.setdefault("plan", pool.prepare(nodes, outputs))
                )
                box["thread"].start()
            if "plan" in box and "applied" not in box:
                assert pool.apply(box["plan"], redo=False)
                box["applied"] = k
        after = [s for i, s in pool._holders.items() if i in nodes and i != mix.id]
        costs = dict(pool.costs)
    finally:
        pool.close()
    assert len(before) == 1  # guessed light: on one worker
    assert box["asked"] < 2 * SR / BS  # measured within a second or two
    assert costs[type_name(Partials)] > 50  # each weighs more than 50 built-in instances
    assert SPLIT_WEIGHT > 48 * 2 + 4  # what the guess made of it
    per_slot = [sum(1 for s in after if s == [slot]) for slot in (0, 1)]
    assert min(per_slot) >= 12, per_slot  # the voices on both workers
    assert np.array_equal(np.concatenate(got), np.concatenate(want))
    assert np.abs(np.concatenate(got)).max() > 0.05


def _cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_the_engine_divides_a_bank_again_for_measured_costs_and_records_the_same_samples():
    mix = partials_bank()
    offline = js.render(mix, 2.0, SR, BS)
    with Engine(headless=True, workers=2) as engine:
        t = engine.time_of(engine.frame_at(time.time() + 0.5))
        play(mix, engine, at=t)
        live = engine.record(2.0, at=t)  # the division changes within it
        pids = children_of(engine.pid)
        used = {p: _cpu_seconds(p) for p in pids}
        time.sleep(1.0)
        used = sorted(_cpu_seconds(p) - used[p] for p in pids)
        status = engine.status()
    assert status["late"] == 0 and status["worker_restarts"] == 0
    assert np.array_equal(live, offline)
    # both workers render voices now (the spare idles): about 0.2 s of CPU each per second
    assert used[-2] > 0.06, used


def test_a_division_for_measured_costs_gives_way_to_an_edit():
    """abandon_prepare(): the engine stops waiting for a rebalance when an edit arrives."""
    import threading

    nodes, outputs, ref, pool = partials_pool(partials_bank())
    got, want = [], []
    try:
        for _ in range(2 * SR // BS):
            got.append(pool.process(BS).copy())
            want.append(ref.process(BS).copy())
            if pool.rebalance_wanted:
                break
        assert pool.rebalance_wanted
        box: dict = {}
        thread = threading.Thread(
            target=lambda: box.setdefault("plan", pool.prepare(nodes, outputs))
        )
        thread.start()
        while pool._preparing is None:
            time.sleep(0.001)
        pool.abandon_prepare()  # before a single block: the workers cannot be ready
        thread.join(1.0)
        assert not thread.is_alive()
        assert not pool.apply(box["plan"], redo=False)  # dropped, the old division plays on
        for _ in range(20):
            got.append(pool.process(BS).copy())
            want.append(ref.process(BS).copy())
    finally:
        pool.close()
    assert np.array_equal(np.concatenate(got), np.concatenate(want))
