"""A worker killed under a playing patch: how long the engine's blocks get, and when
the dead worker's voices are heard again.

Headless, ``workers=2``, 64 voices (saw -> low-pass, summed by a ``Mix``), block
128.  After a second of playing, one rendering worker gets SIGKILL; over the
next two seconds the table gives the longest block (``dsp_peak`` of /status, as
a share of the block time: over 1.0 is a block late, on a card an xrun), the
late blocks counted (``xruns``), and when the whole patch is heard again (its
level back within 15 %, polled in 0.1 s recordings).

The pool replaces a dead worker on the block thread: a warm spare takes its
slot and every worker rebuilds its share ("Rebuild") inside one block.  A
version that did it off the block thread (the spare adopted with an empty
share, the division prepared on the engine's preparing thread, as for measured
costs) was measured with this script and was worse on 2 cores: 0.3-0.7 of a
block, 1-3 late blocks and 0.1-1.1 s to recover for the built-in voices (this
one: 0.3-1.9, 1, 0.1-0.2 s), and with ``--cell`` 63-76 block times and not
recovered within 2 s (this one: 0.5, 1, 0.3-0.4 s): the survivors compiled
while the headless engine waited for them.  With ``--cell`` the
voices are of a class written in a cell, whose ``sample()`` numba compiles where
it renders: the worker taking the dead one's voices over compiles it.

    python benchmarks/death.py [--runs 3] [--cell]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))


import jupysynth as js  # noqa: E402


class Drone(js.Module):
    """Written "in a cell" (__main__): a worker taking it over compiles its sample()."""

    params = (js.Param("freq", 220.0, 1.0, 20000.0), js.Param("amp", 0.1, 0.0, 1.0))
    sample_state = 1

    @staticmethod
    def sample(s, freq, amp):
        s[0] = (s[0] + freq / 48000.0) % 1.0
        return amp * (2.0 * s[0] - 1.0)


def rendering(pids: list[int]) -> int:
    """The busiest worker: rendering ones wake every block, the spare never."""

    def wakes(pid: int) -> int:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("voluntary_ctxt_switches"):
                return int(line.split()[1])
        return 0

    before = {p: wakes(p) for p in pids}
    time.sleep(0.3)
    return max(pids, key=lambda p: wakes(p) - before[p])


def run(cell: bool) -> tuple[float, float, int, float]:
    from procs import children_of

    import jupysynth as js
    from jupysynth.player import Engine, play

    if cell:
        voices = [Drone(freq=100 + 3 * i, amp=0.01) for i in range(64)]
    else:
        voices = [js.LowPass(js.Saw(freq=100 + 3 * i, amp=0.01), cutoff=1500) for i in range(64)]
    mix = js.Mix(*voices)
    level = float(np.sqrt(np.mean(js.render(mix, 1.0, 48000, 128) ** 2)))
    with Engine(headless=True, workers=2, blocksize=128) as e:
        play(mix, e)
        e.sync()
        time.sleep(1.0)
        e.status()  # resets the peak
        steady = e.status()["dsp_peak"]
        xruns = e.status()["xruns"]
        busy = rendering(children_of(e.pid))
        t = time.monotonic()
        os.kill(busy, signal.SIGKILL)
        back = float("nan")
        while time.monotonic() - t < 2.0:
            x = e.record(0.1)
            if np.isnan(back) and abs(np.sqrt(np.mean(x**2)) / level - 1) < 0.15:
                if e.status()["worker_restarts"] >= 1:
                    back = time.monotonic() - t
        st = e.status()
        return steady, st["dsp_peak"], st["xruns"] - xruns, back


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--cell", action="store_true", help="voices of a class written in a cell (numba-compiled)"
    )
    args = parser.parse_args()
    print("| run | longest block, steady | kill to +2 s | late blocks | heard again after |")
    print("|---|---|---|---|---|")
    for k in range(args.runs):
        steady, peak, late, back = run(args.cell)
        print(f"| {k + 1} | {steady:.2f} | {peak:.2f} | {late} | {back * 1e3:.0f} ms |")


if __name__ == "__main__":
    main()
