"""A worker late for the device: what is heard, steady and through a stall.

Plays two sines on the virtual sound card of the tests (a JACK server on its
dummy driver, ``tests/vsound.py``, block and period 128) with ``workers=2``: the
pool gives each worker one.  What the card plays is captured through JACK and
cut into 10 ms windows; a window is "bad" for a tone when its level there is
under 97 % of its amplitude.

- ``steady``: ``--seconds`` of plain playing.  Late parts here are drops the
  engine made that waiting might have saved (the cost of not waiting).
- ``stall``: one worker stopped (SIGSTOP) for ``--stall`` ms, as a loaded
  machine may stall a process.  A pool that waits for it loses the whole
  output (both tones) for the stall and the device loses time; one that does
  not wait loses only that worker's tone.

Columns: xruns and ``worker_late`` (/status) over the capture, the 10 ms
windows missing one tone only, and the windows missing both.

    python benchmarks/late.py [--runs 4] [--seconds 4] [--stall 120]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the virtual sound card lives with the tests

SR = 48000
TONES = (1000.0, 1500.0)  # whole cycles in 10 ms: a window sees each tone alone
AMP = 0.3


def levels(x: np.ndarray, hz: float, width: int = 480) -> np.ndarray:
    n = len(x) // width
    t = np.arange(n * width) / SR
    return np.abs(2 * (x[: n * width] * np.exp(-2j * np.pi * hz * t)).reshape(n, width).mean(1))


def run(card, seconds: float, stall_ms: float) -> tuple[int, int, int, int]:
    from procs import children_of

    import jupysynth as js
    from jupysynth.player import Engine, play

    with Engine(device=card.device_index(), workers=2) as engine:
        for hz in TONES:
            play(js.Sine(freq=hz, amp=AMP), engine)
        engine.sync()
        time.sleep(1.0)  # the spare starts, kernels warm
        before = engine.status()
        staller = None
        if stall_ms:
            victim = min(children_of(engine.pid))  # a rendering worker: the spare came later

            def stall() -> None:
                time.sleep(seconds / 2)
                os.kill(victim, signal.SIGSTOP)
                time.sleep(stall_ms / 1e3)
                os.kill(victim, signal.SIGCONT)

            staller = threading.Thread(target=stall)
            staller.start()
        x = card.capture(engine.info["jack_client"], seconds, SR)[:, 0]
        if staller is not None:
            staller.join()
        after = engine.status()
    a, b = (levels(x, hz) < 0.97 * AMP for hz in TONES)
    return (
        after["xruns"] - before["xruns"],
        after["worker_late"] - before["worker_late"],
        int((a ^ b).sum()),
        int((a & b).sum()),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--stall", type=float, default=120.0, help="ms a worker is stopped")
    args = parser.parse_args()
    from vsound import VirtualSoundCard

    print(f"workers=2, block 128 on the JACK dummy card, {os.cpu_count()} cores")
    print("| case | run | xruns | worker_late | windows missing one tone | missing both |")
    print("|---|---|---|---|---|---|")
    with VirtualSoundCard(samplerate=SR, period=128) as card:
        for case, stall in (("steady", 0.0), (f"stall {args.stall:g} ms", args.stall)):
            for k in range(args.runs):
                xr, late, one, both = run(card, args.seconds, stall)
                print(f"| {case} | {k + 1} | {xr} | {late} | {one} | {both} |", flush=True)


if __name__ == "__main__":
    main()
