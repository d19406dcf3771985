"""Command line: ``python -m jupysynth demo`` and ``python -m jupysynth warmup``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jupysynth", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="render the demo patch to demo.wav and demo.png")
    demo.add_argument("--out", default=".", help="directory to write into (default: here)")
    demo.add_argument("--bars", type=int, default=4, help="how many bars (default 4)")
    sub.add_parser("warmup", help="compile every kernel into numba's disk cache")
    args = parser.parse_args(argv)

    if args.command == "warmup":
        from .warmup import warmup

        warmup(verbose=True)
        return 0
    from .demo import render_demo

    wav, png = render_demo(args.out, args.bars)
    print(f"rendered {wav.resolve()}")
    print(f"plotted  {png.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
