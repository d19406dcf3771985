"""A live-coding session replayed on the test sound card: does anything glitch?

Plays a scripted session on the virtual sound card of the tests (a JACK
server on its dummy driver, ``tests/vsound.py``) at block 128, for each worker
setting asked for, and prints one table.  The session, as a notebook user
plays it:

- a drone whose filter knob is dragged at 60 changes a second (a slider);
- a cell's patch (8 voices, an LFO, a filter each) replaced every 2 s with a
  50 ms crossfade, as re-running the cell does;
- a cell-written module class (a per-sample ``sample()``) redefined every 30 s
  and its module played again (numba compiles each new class);
- a cell-written module whose ``process()`` raises, played once (it is muted);
- a scope open on the drone the whole time, read 30 times a second;
- a ``%synth record`` of 2 s every 20 s.

Figures per run: xruns (target 0), the largest block time as a share of the
block (``dsp_peak``, read every second), tagged messages that came late,
faults other than the raising module, and the CPU of the engine process and
its workers (per cent of one core).  ``--edits`` also times single edits on a
headless engine: the first knob turn on a playing ``Sine`` and a 64-voice cell
re-run, each the largest block of its second (median of 3 engines).

    python benchmarks/soak.py [--seconds 60] [--long] [--workers 0 2] [--edits] [--verbose]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the virtual sound card lives with the tests

import numpy as np  # noqa: E402
from procs import children_of  # noqa: E402

import jupysynth as js  # noqa: E402
from jupysynth.control.tap import Tap  # noqa: E402
from jupysynth.player import Engine, play, stop  # noqa: E402

SR, BS = 48000, 128
KNOB_HZ = 60
RERUN_SECONDS = 2.0
REDEFINE_SECONDS = 30.0
RECORD_EVERY = 20.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its live children, in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid, *children_of(pid)]
    for p in pids:
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def cell_class(k: int) -> type[js.Module]:
    """The k-th run of a cell defining ``Crush``: same name, other code (numba compiles it)."""
    drive = 1.0 + 0.1 * k

    def sample(s, x, amount):
        s[0] = 0.7 * s[0] + 0.3 * x
        return math.tanh(s[0] * amount * drive) * 0.5

    return type(
        "Crush",
        (js.Module,),
        {
            "params": (js.Param("input", 0.0, -1e30, 1e30), js.Param("amount", 2.0, 0.1, 10.0)),
            "positional": ("input",),
            "sample_state": 1,
            "sample": staticmethod(sample),
            "__module__": "soak_cell",
            "__qualname__": "Crush",
        },
    )


class Raises(js.Module):
    """A cell module that breaks after a while: the engine mutes it, the rest plays on."""

    params = (js.Param("freq", 220.0, 1.0, 20000.0),)
    __module__ = "soak_cell"

    def setup(self):
        self.calls = 0

    def process(self, freq):
        self.calls += 1
        if self.calls > 200:
            raise RuntimeError("a bug in a cell")
        return 0.01 * np.sign(np.sin(freq))


def cell_patch(k: int) -> js.Module:
    lfo = js.Sine(freq=0.5 + 0.1 * (k % 5))
    voices = [
        js.LowPass(js.Saw(freq=110.0 * (1 + i / 8) + k, amp=0.05), cutoff=1200 + 400 * lfo, q=2)
        for i in range(8)
    ]
    return js.Mix(*voices, amp=0.5)


def soak(engine: Engine, seconds: float) -> dict:
    """Play the session for ``seconds``; returns the figures (``timeline``: per second, the
    largest block, new xruns and what the session did in that second)."""
    drone_filter = js.LowPass(js.Saw(freq=55.0, amp=0.1), cutoff=800.0, q=1.5)
    drone = js.Pan(drone_filter, pos=-0.3)
    play(drone, engine)
    engine.sync()
    tap = Tap(engine, drone_filter.id, frames=2048)
    stop_knob = threading.Event()

    def drag() -> None:  # a slider held and moved: 60 values a second, as ipywidgets sends
        n = 0
        while not stop_knob.wait(1.0 / KNOB_HZ):
            n += 1
            drone_filter.cutoff = 800.0 + 600.0 * math.sin(n / 20.0)

    knob = threading.Thread(target=drag, daemon=True)
    recordings: list[threading.Thread] = []
    engine.status()  # resets the peak
    cpu0, t0 = cpu_seconds(engine.pid), time.monotonic()
    knob.start()
    cell = cell_patch(0)
    play(cell, engine, fade=0.05)
    crush_source = js.Square(freq=82.5, amp=0.1)
    crush = cell_class(0)(crush_source)
    crush_out = js.Pan(crush, pos=0.4)
    play(crush_out, engine, fade=0.05)
    raiser = None
    peak, errors = 0.0, []
    timeline: list[tuple[float, float, int, list[str]]] = []
    did: list[str] = []
    xruns = engine.status()["xruns"]
    reruns = redefinitions = records = 0
    next_rerun, next_define, next_record, next_status = 2.0, 30.0, 5.0, 1.0
    raise_at = 3.0
    try:
        while (now := time.monotonic() - t0) < seconds:
            tap()  # the scope's frame
            if now >= next_rerun:
                reruns += 1
                new = cell_patch(reruns)
                stop(cell, engine, fade=0.05)
                play(new, engine, fade=0.05)
                cell, next_rerun = new, next_rerun + RERUN_SECONDS
                did.append("re-run")
            if now >= next_define:
                redefinitions += 1
                crush_new = js.Pan(cell_class(redefinitions)(crush_source), pos=0.4)
                stop(crush_out, engine, fade=0.05)
                play(crush_new, engine, fade=0.05)
                crush_out, next_define = crush_new, next_define + REDEFINE_SECONDS
                did.append("redefine")
            if raiser is None and now >= raise_at:
                raiser = Raises(freq=330.0)
                play(raiser, engine)
                did.append("raiser")
            if now >= next_record:
                records += 1
                rec = threading.Thread(target=engine.record, args=(2.0,), daemon=True)
                rec.start()
                recordings.append(rec)
                next_record += RECORD_EVERY
                did.append("record")
            if now >= next_status:
                st = engine.status()
                peak = max(peak, st["dsp_peak"])
                timeline.append((now, st["dsp_peak"], st["xruns"] - xruns, did))
                xruns, did = st["xruns"], []
                errors += engine.client.take_errors()
                next_status += 1.0
            time.sleep(1.0 / 30)
        wall = time.monotonic() - t0
        cpu = cpu_seconds(engine.pid) - cpu0
        status = engine.status()
        peak = max(peak, status["dsp_peak"])
    finally:
        stop_knob.set()
        knob.join(5)
        for rec in recordings:
            rec.join(10)
        tap.close()
    faults = [text for mid, text in status["faults"].items() if raiser is None or mid != raiser.id]
    js.panic(engine)
    return {
        "xruns": status["xruns"],
        "peak": peak,
        "late": status["late"],
        "cpu": 100.0 * cpu / wall,
        "restarts": status.get("worker_restarts", 0),
        "faults": faults,
        "muted": raiser is not None and raiser.id in status["faults"],
        "errors": errors,
        "seconds": wall,
        "counts": (reruns, redefinitions, records),
        "timeline": timeline,
    }


def edits(workers: int) -> tuple[list[float], list[float]]:
    """Largest block (share of the block) of the second after a first knob turn, a re-run."""
    knob, rerun = [], []
    for _ in range(3):
        with Engine(headless=True, samplerate=SR, blocksize=BS, workers=workers) as e:
            s = js.Sine(freq=440, amp=0.1)
            play(s, e)
            e.sync()
            time.sleep(0.5)
            e.status()
            s.freq = 550
            time.sleep(0.5)
            knob.append(e.status()["dsp_peak"])
            a = js.Mix(*[js.LowPass(js.Saw(freq=100 + i), cutoff=2000) for i in range(64)]) * 0.01
            play(a, e)
            e.sync()
            time.sleep(0.5)
            b = js.Mix(*[js.LowPass(js.Saw(freq=101 + i), cutoff=2000) for i in range(64)]) * 0.01
            e.status()
            stop(a, e, fade=0.05)
            play(b, e, fade=0.05)
            time.sleep(0.5)
            rerun.append(e.status()["dsp_peak"])
    return knob, rerun


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="per run (default 60)")
    ap.add_argument("--long", action="store_true", help="10 minutes per run")
    ap.add_argument("--workers", nargs="+", default=["0", "2"])
    ap.add_argument("--edits", action="store_true", help="also time single edits, headless")
    ap.add_argument("--verbose", action="store_true", help="the seconds with a late block")
    args = ap.parse_args(argv)
    seconds = 600.0 if args.long else args.seconds
    settings = [w if w == "auto" else int(w) for w in args.workers]
    from vsound import VirtualSoundCard

    print(
        f"jupysynth soak: {seconds:.0f} s per run on the JACK dummy card, block {BS} "
        f"({1e3 * BS / SR:.2f} ms), {os.cpu_count()} cores here"
    )
    head = (
        f"{'workers':>8} | {'xruns':>5} | {'peak block':>10} | {'late':>4} | {'CPU %':>6} | "
        f"{'restarts':>8} | {'other faults':>12} | raiser muted | re-runs/defs/records"
    )
    rows = []
    with VirtualSoundCard(samplerate=SR, period=BS) as card:
        for w in settings:
            with Engine(device=card.device_index(), blocksize=BS, workers=w) as engine:
                r = soak(engine, seconds)
            rows.append(
                f"{str(w):>8} | {r['xruns']:>5} | {r['peak']:>9.2f}x | {r['late']:>4} | "
                f"{r['cpu']:>6.1f} | {r['restarts']:>8} | {len(r['faults']):>12} | "
                f"{'yes' if r['muted'] else 'NO':>12} | {'/'.join(map(str, r['counts']))}"
            )
            for text in r["faults"]:
                rows.append(f"{'':>8}   fault: {text.splitlines()[0]}")
            for e in r["errors"]:
                rows.append(f"{'':>8}   error: {e}")
            for t, p, x, what in r["timeline"] if args.verbose else ():
                if p >= 1.0 or x:
                    rows.append(f"{'':>8}   at {t:5.1f} s: peak {p:.2f}x, {x} xruns; {what}")
    print(head)
    print("-" * len(head))
    for line in rows:
        print(line)
    print("targets: 0 xruns; a peak block under 1.0x (the block's own time)")
    if args.edits:
        print("\nsingle edits, headless, largest block of the second after it (3 engines)")
        for w in [s for s in settings if s != "auto"] or [0]:
            knob, rerun = edits(w)
            print(
                f"  workers={w}: first knob turn {statistics.median(knob):.2f}x "
                f"(max {max(knob):.2f}), 64-voice cell re-run {statistics.median(rerun):.2f}x "
                f"(max {max(rerun):.2f})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
