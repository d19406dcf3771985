"""What ``Engine(workers="auto")`` chooses, and what a move costs the block it happens in.

Part 1 plays each patch on a headless engine at block 128 with ``workers=0``,
``1``, ``2`` and ``"auto"`` and prints the DSP load (render time over block
time, the engine's own ``/status``) once ``auto`` has settled, with the
number of workers it chose.  Target: ``auto`` is never slower than in-process
(a load within 10 % + 0.02 of the ``workers=0`` column, or lower: the
measurement's own spread).

Part 2 drives an AutoRenderer as the engine core does and forces moves to
two workers and back (``want``): the block where each move lands, as a share
of the block time (the state of every module is copied and, to the pool,
pickled into the switch message), beside the median block.

    python benchmarks/auto.py                 # P3 x 1024 and x 4096, the heavy patch x 512
    python benchmarks/auto.py --seconds 2 --patches p3:256
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from patches import p3  # noqa: E402
from phase0 import heavy_voices  # noqa: E402

import jupysynth as js  # noqa: E402
from jupysynth.engine.auto import WINDOW_SECONDS, AutoRenderer, usable_cores  # noqa: E402
from jupysynth.engine.workers import PoolRenderer  # noqa: E402
from jupysynth.graph import snapshot  # noqa: E402
from jupysynth.player import Engine, play  # noqa: E402

SR = 48000
BS = 128
BLOCK = BS / SR


def patch(name: str) -> js.Module:
    kind, n = name.split(":")
    return {"p3": p3, "heavy": heavy_voices}[kind](int(n))


def load_with(module: js.Module, workers: int | str, seconds: float) -> tuple[float, int]:
    """The engine's DSP load over ``seconds`` once settled, and the workers rendering then."""
    with Engine(headless=True, workers=workers, blocksize=BS) as engine:
        play(module, engine)
        settle = 2.0
        if workers == "auto":
            # a window to measure, the pool to start and build, a window to settle, one to judge
            settle = 6 * WINDOW_SECONDS + 4.0
        time.sleep(settle)
        engine.status()
        time.sleep(seconds)
        st = engine.status()
        return st["dsp_load"], st["workers"]


def move_costs(module: js.Module, moves: int) -> list[tuple[str, float, float]]:
    """``[(direction, block of the move / block time, median block / block time)]``."""
    nodes, outputs = snapshot(module)
    auto = AutoRenderer(js.Renderer({}, [], SR, BS), lambda n: PoolRenderer(SR, BS, n), cores=3)
    out = []
    try:
        auto.update(nodes, outputs)
        for k in range(moves):
            auto.want(0 if k % 2 else 2)
            auto.rebalance_wanted = False
            box: dict = {}
            nodes, outputs = dict(auto.nodes), list(auto.outputs)
            thread = threading.Thread(
                target=lambda box=box, nodes=nodes, outputs=outputs: box.setdefault(
                    "plan", auto.prepare(nodes, outputs)
                )
            )
            thread.start()
            times = []
            while thread.is_alive():
                t = time.perf_counter()
                auto.process(BS)
                times.append(time.perf_counter() - t)
                time.sleep(max(0.0, BLOCK - times[-1]))
            t = time.perf_counter()
            auto.apply(box["plan"], redo=False)
            auto.process(BS)
            moved = time.perf_counter() - t
            for _ in range(20):  # the blocks after it
                t = time.perf_counter()
                auto.process(BS)
                times.append(time.perf_counter() - t)
                time.sleep(max(0.0, BLOCK - times[-1]))
            way = "to 2 workers" if k % 2 == 0 else "back"
            out.append((way, moved / BLOCK, statistics.median(times) / BLOCK))
    finally:
        auto.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="measured seconds per cell")
    ap.add_argument(
        "--patches",
        default="p3:1024,p3:4096,heavy:512",
        help="comma-separated kind:voices (kinds: p3, heavy)",
    )
    ap.add_argument("--moves", type=int, default=4, help="forced moves timed in part 2")
    args = ap.parse_args(argv)
    names = args.patches.split(",")
    print(f"cores usable here: {usable_cores()}, load average {os.getloadavg()[0]:.2f}")
    print()
    print("## DSP load at block 128 (share of the block; lower is better)")
    print()
    print("| patch | workers=0 | 1 | 2 | auto | auto chose | target: auto <= workers=0 |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        loads = {}
        for w in (0, 1, 2, "auto"):
            loads[w] = load_with(patch(name), w, args.seconds)
        ok = loads["auto"][0] <= 1.1 * loads[0][0] + 0.02
        print(
            f"| {name} | {loads[0][0]:.2f} | {loads[1][0]:.2f} | {loads[2][0]:.2f} | "
            f"{loads['auto'][0]:.2f} | {loads['auto'][1]} workers | {'met' if ok else 'MISSED'} |",
            flush=True,
        )
    print()
    print("## The block a move lands in (share of the block time)")
    print()
    print("| patch | move | block of the move | median block | target: < 1 |")
    print("|---|---|---|---|---|")
    for name in names:
        for way, moved, median in move_costs(patch(name), args.moves):
            ok = "met" if moved < 1.0 else "MISSED"
            print(f"| {name} | {way} | {moved:.2f} | {median:.2f} | {ok} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
