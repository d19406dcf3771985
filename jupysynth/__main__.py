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
    demo.add_argument(
        "--device",
        default=None,
        help="output device: an index or part of a name from 'python -m sounddevice'",
    )
    demo.add_argument(
        "--offline", action="store_true", help="render demo.wav and demo.png, play nothing"
    )
    sub.add_parser("warmup", help="compile every kernel into numba's disk cache")
    args = parser.parse_args(argv)

    if args.command == "warmup":
        from .warmup import warmup

        warmup(verbose=True)
        return 0
    from .demo import play_demo, render_demo

    if not args.offline:
        device = int(args.device) if args.device and args.device.isdigit() else args.device
        try:
            status = play_demo(device, args.bars)
        except Exception as exc:  # noqa: BLE001 - no live audio: the files still come out
            print(f"cannot play live ({exc}); rendering to files instead")
            status = None
        if status is not None:
            print(
                f"played live on {status.get('device', 'the sound card')}: "
                f"{status.get('xruns', 0)} xruns, latency {1000 * status.get('latency', 0):.1f} ms"
            )
            return 0
        print("no audio output device: rendering to files instead")
    wav, png = render_demo(args.out, args.bars)
    print(f"rendered {wav.resolve()}")
    print(f"plotted  {png.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
