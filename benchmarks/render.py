"""CPU cost of offline rendering: jupysynth against the targets and, with --peers, its peers.

Prints CPU seconds per second of 48 kHz audio for the three reference patches
(benchmarks/patches.py) at N = 1, 16, 128, 1024 voices and blocks of 64 and 256
frames.  With ``--peers`` every row also renders the same patch in pyo,
SignalFlow, scsynth (NRT) and Csound where installed (``bash
benchmarks/install_peers.sh``), interleaved in one run, and prints the ratio
jupysynth / best peer.

Targets at N = 1024: P2 and P3 at most half the CPU of the best peer, P1 no
worse than the best peer.

    python benchmarks/render.py [--peers] [--seconds 2] [--voices 1 16 128 1024]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from patches import PATCHES  # noqa: E402

from jupysynth.graph import snapshot  # noqa: E402
from jupysynth.renderer import Renderer  # noqa: E402

TARGET = {"P1": 1.0, "P2": 0.5, "P3": 0.5}  # jupysynth / best peer, at N = 1024
RESOLUTION = 1e-3


def measure_jupysynth(patch: str, n: int, blocksize: int, seconds: float) -> float:
    """CPU seconds per audio second of the block loop (graph building and compiling excluded)."""
    nodes, outputs = snapshot(PATCHES[patch](n))
    r = Renderer(nodes, outputs, 48000, blocksize)
    r.process(blocksize)  # kernels are compiled (or loaded from the disk cache) here
    blocks = max(1, int(seconds * 48000 / blocksize))
    t = time.process_time()
    for _ in range(blocks):
        r.process(blocksize)
    return (time.process_time() - t) / (blocks * blocksize / 48000)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--peers", action="store_true", help="also measure pyo, SignalFlow, scsynth, Csound"
    )
    ap.add_argument("--seconds", type=float, default=2.0, help="audio rendered per measurement")
    ap.add_argument("--voices", type=int, nargs="+", default=[1, 16, 128, 1024])
    ap.add_argument("--blocks", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--patches", nargs="+", default=list(PATCHES))
    args = ap.parse_args(argv)

    peers: list[str] = []
    if args.peers:
        import peers as peer_mod

        peers = [p for p in peer_mod.PEERS if peer_mod.available(p)]
        missing = [p for p in peer_mod.PEERS if p not in peers]
        if missing:
            print(f"# not installed (bash benchmarks/install_peers.sh): {', '.join(missing)}")

    cols = ["patch", "N", "block", "jupysynth", *peers]
    if peers:
        cols += ["best peer", "ratio", "target"]
    print("# CPU seconds per second of 48 kHz audio (lower is better)")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for patch in args.patches:
        for n in args.voices:
            for bs in args.blocks:
                row = [patch, str(n), str(bs)]
                ours = measure_jupysynth(patch, n, bs, args.seconds)
                row.append(f"{ours:.4f}")
                figures = {}
                for p in peers:
                    v = peer_mod.measure(p, patch, n, bs, args.seconds)
                    figures[p] = v
                    row.append("n/a" if v is None else f"{v:.4f}")
                if peers:
                    # scsynth and Csound are timed as whole processes: below 1 ms of
                    # CPU per audio second their start-up subtraction cannot resolve
                    valid = {p: v for p, v in figures.items() if v and v >= RESOLUTION}
                    if valid:
                        best = min(valid, key=valid.get)
                        ratio = ours / valid[best]
                        target = f"<= {TARGET[patch]:g}" if n == 1024 else ""
                        ok = "" if n != 1024 else (" ok" if ratio <= TARGET[patch] else " MISSED")
                        row += [f"{best} {valid[best]:.4f}", f"{ratio:.2f}", target + ok]
                    else:
                        row += ["n/a", "", ""]
                print("| " + " | ".join(row) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
