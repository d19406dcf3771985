"""``workers="auto"``: the patch moves between the engine process and a worker pool.

What must hold whatever the machine's load: a move never changes a sample
(every module goes on from the state it reached), a number set while a move
is built is kept, and a pool that does not pay gives the patch back.  The
moves' block times are in benchmarks/auto.py, not here.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
from procs import children_of

import jupysynth as js
from jupysynth.engine.auto import AutoRenderer
from jupysynth.engine.workers import PoolRenderer
from jupysynth.graph import snapshot
from jupysynth.player import Engine, play

SR = 48000
BS = 128


def voice_bank(n: int):
    """``n`` voices under one LFO, summed and filtered: a patch the pool splits by voice."""
    lfo = js.Sine(freq=2.0)
    voices = [
        js.LowPass(js.Saw(freq=110 * 2 ** (i / n), amp=0.5 / n), cutoff=900 + 400 * lfo, q=2)
        for i in range(n)
    ]
    master = js.Pan(js.LowPass(js.Mix(*voices), cutoff=3000 + 500 * lfo), pos=0.2)
    return voices, master


class Driver:
    """Drives an AutoRenderer as the engine core does: blocks on this thread, a wanted
    prepare on another, its plan applied at the first block boundary after it is done."""

    def __init__(self, auto: AutoRenderer, ref: js.Renderer) -> None:
        self.auto, self.ref = auto, ref
        self.got: list[np.ndarray] = []
        self.want: list[np.ndarray] = []
        self.where: list[int] = []  # workers rendering each block
        self.box: dict = {}
        self.thread: threading.Thread | None = None
        self.blocks_building = 0  # blocks rendered while a move was built

    def block(self) -> None:
        auto = self.auto
        if self.thread is not None and not self.thread.is_alive():
            self.thread = None
            plan = self.box.pop("plan")
            auto.apply(plan, redo=False)
        self.got.append(auto.process(BS).copy())
        self.want.append(self.ref.process(BS).copy())
        self.where.append(auto.workers)
        if self.thread is None and auto.rebalance_wanted:
            auto.rebalance_wanted = False
            nodes, outputs = dict(auto.nodes), list(auto.outputs)
            self.thread = threading.Thread(
                target=lambda: self.box.__setitem__("plan", auto.prepare(nodes, outputs, 0))
            )
            self.thread.start()
        if self.thread is not None:
            self.blocks_building += 1
            time.sleep(0.0005)  # paced, as a clock would: the build shares two cores

    def set(self, node_id: int, name: str, value: float) -> None:
        self.auto.set(node_id, name, value)
        self.ref.set(node_id, name, value)

    def until(self, done, limit: float = 120.0) -> None:
        deadline = time.monotonic() + limit
        while not done():
            assert time.monotonic() < deadline, f"no move within {limit:g} s"
            self.block()


def test_a_patch_moves_to_a_pool_and_back_without_changing_a_sample():
    """Moved when the measured load says so (a threshold of 0 here), given back on request:
    every block equals a renderer that never moved, and knobs turned while each move was
    built are kept."""
    voices, master = voice_bank(48)
    nodes, outputs = snapshot(master)
    auto = AutoRenderer(
        js.Renderer({}, [], SR, BS), lambda n: PoolRenderer(SR, BS, n), cores=3, up_load=0.0
    )
    ref = js.Renderer(nodes, outputs, SR, BS)
    drive = Driver(auto, ref)
    try:
        auto.update(nodes, outputs)
        pids = set()

        def on_pool() -> bool:
            if drive.thread is not None and drive.blocks_building == 5:
                drive.set(voices[3].id, "q", 4.0)  # while the pool builds the patch
            pids.update(auto.pids())
            return auto.workers > 0

        drive.until(on_pool)
        for _ in range(50):
            drive.block()
        drive.blocks_building = 0
        auto.want(0)

        def back() -> bool:
            if drive.thread is not None and drive.blocks_building == 2:
                drive.set(voices[5].id, "cutoff", 500.0)  # while this process builds it
            return auto.workers == 0 and drive.thread is None

        drive.until(back)
        for _ in range(50):
            drive.block()
    finally:
        auto.close()
    where = np.asarray(drive.where)
    assert (where == 2).sum() >= 50 and where[0] == 0 and where[-1] == 0
    assert auto.moves == 2
    got, want = np.concatenate(drive.got), np.concatenate(drive.want)
    assert np.abs(want).max() > 0.05
    assert np.array_equal(got, want)
    assert len(pids) == 3  # two workers and their spare, all gone with close()
    time.sleep(0.2)
    assert not set(children_of(os.getpid())) & pids


def test_a_pool_that_does_not_pay_gives_the_patch_back():
    """On this machine a pool of two costs a light patch more than the engine process does
    (a hand-off per block): measured, it gives the patch back by itself."""
    voices, master = voice_bank(8)
    nodes, outputs = snapshot(master)
    auto = AutoRenderer(
        js.Renderer({}, [], SR, BS), lambda n: PoolRenderer(SR, BS, n), cores=3, up_load=0.0
    )
    drive = Driver(auto, js.Renderer(nodes, outputs, SR, BS))
    try:
        auto.update(nodes, outputs)
        drive.until(lambda: auto.workers > 0)
        drive.until(lambda: auto.workers == 0 and drive.thread is None)
        refused = auto._refused_until
    finally:
        auto.close()
    assert auto.moves == 2
    assert refused > time.monotonic()  # and it is not tried again at once
    assert np.array_equal(np.concatenate(drive.got), np.concatenate(drive.want))


def test_on_two_cores_auto_never_starts_a_worker():
    """However loaded the engine process, two cores leave no room for a pool that pays."""
    voices, master = voice_bank(8)
    nodes, outputs = snapshot(master)
    made = []
    auto = AutoRenderer(js.Renderer({}, [], SR, BS), made.append, cores=2, up_load=0.0)
    auto.update(nodes, outputs)
    for _ in range(3 * SR // BS):
        auto.process(BS)
        assert not auto.rebalance_wanted
    assert auto.load > 0.0 and made == [] and auto.workers == 0


def test_an_engine_with_auto_workers_plays_in_its_own_process_here():
    """``Engine(workers="auto")`` on this 2-core machine: the patch renders in the engine
    process (status: 0 workers, no worker process), and records as render() renders."""
    sine = js.Sine(freq=440.0, amp=0.3)
    with Engine(headless=True, workers="auto") as engine:
        play(sine, engine)
        time.sleep(0.3)
        status = engine.status()
        kids = children_of(engine.pid)
        audio = engine.record(0.2)
        assert engine.client.take_errors() == []
    assert status["workers"] == 0 and status["worker_restarts"] == 0
    assert not [k for k in kids if "jupysynth.engine.worker" in _cmdline(k)]
    spectrum = np.abs(np.fft.rfft(audio[:, 0] * np.hanning(len(audio))))
    assert abs(np.argmax(spectrum) * SR / len(audio) - 440.0) < 10.0


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""
