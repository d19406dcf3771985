"""What the owner-only channel and user-code containment cost, measured side by side.

    python benchmarks/security.py

Prints three tables:

1. Receiving one message: the owner's Unix socket with the sender's uid checked
   (``SO_PASSCRED``, :func:`jupysynth.control.local.receive`) against a plain
   UDP ``recvfrom``, in the same process, same message, interleaved batches.
2. A ``/ping`` round trip to a live headless engine over its owner's socket and
   over its public UDP port (the same engine, alternating).
3. The renderer's cost per block of a patch without cell code and of one with
   a ``process()`` module: as the engine renders it (cell code in the sandbox
   process, :mod:`jupysynth.engine.sandbox`) and in-process without any
   containment (as an offline ``render()``).
"""

from __future__ import annotations

import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jupysynth.control import local  # noqa: E402
from jupysynth.control.client import Client  # noqa: E402
from jupysynth.control.packets import encode_message  # noqa: E402

BATCH = 8  # a Unix datagram queue holds 10 (net.unix.max_dgram_qlen)
ROUNDS = 2000


def receive_costs() -> tuple[float, float]:
    """Microseconds per message received: (owner's socket with uid check, plain UDP)."""
    msg = encode_message("/param/set", (1, "freq", 440.0), "isf")
    with tempfile.TemporaryDirectory() as d:
        rx = local.bind(os.path.join(d, "rx.sock"))
        tx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        urx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        urx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        urx.bind(("127.0.0.1", 0))
        utx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        buf = bytearray(local.MAX_DATAGRAM)
        unix_t, udp_t = [], []
        for _ in range(ROUNDS):
            for _ in range(BATCH):
                tx.sendto(msg, rx.getsockname())
                utx.sendto(msg, urx.getsockname())
            t = time.perf_counter()
            for _ in range(BATCH):
                local.receive(rx, buf)
            unix_t.append((time.perf_counter() - t) / BATCH)
            t = time.perf_counter()
            for _ in range(BATCH):
                urx.recvfrom(65536)
            udp_t.append((time.perf_counter() - t) / BATCH)
        for s in (rx, tx, urx, utx):
            s.close()
    return statistics.median(unix_t) * 1e6, statistics.median(udp_t) * 1e6


def round_trips(n: int = 400) -> tuple[float, float]:
    """Median /ping round trip in microseconds: (owner's socket, public UDP port)."""
    from jupysynth.player import Engine

    with Engine(headless=True, port=0) as engine:
        owner = Client(path=engine.socket_path)
        public = Client("127.0.0.1", engine.port)
        for c in (owner, public):
            for _ in range(50):
                c.ping()
        a, b = [], []
        for _ in range(n):
            a.append(owner.ping())
            b.append(public.ping())
        owner.close()
        public.close()
    return statistics.median(a) * 1e6, statistics.median(b) * 1e6


def block_costs(blocks: int = 3000) -> list[tuple[str, float, float]]:
    """(patch, us per block as the engine renders it, us per block in-process without guard)."""
    import jupysynth as js
    from jupysynth import guard
    from jupysynth.engine.core import user_budget
    from jupysynth.engine.sandbox import Sandbox
    from jupysynth.graph import Module, Param, snapshot
    from jupysynth.renderer import Renderer

    guard.install()  # as the engine process does, on its main thread

    class Fold(Module):
        params = (Param("input", 0.0, -1e30, 1e30),)

        def process(self, input):
            return np.clip(input, -0.5, 0.5)

    patches = {
        "16 sines, no cell code": lambda: js.Mix(*[js.Sine(freq=100 + k) for k in range(16)]),
        "15 sines + one process()": lambda: js.Mix(
            *[js.Sine(freq=100 + k) for k in range(15)], Fold(input=js.Sine(freq=99))
        ),
    }
    budget = user_budget(48000, 128)
    sandbox = Sandbox(48000, budget)
    sandbox.start()
    out = []
    try:
        for name, make in patches.items():
            costs = []
            for contained in (True, False):
                nodes, outputs = snapshot(make())
                r = Renderer(nodes, outputs, 48000, 128)
                if contained:  # as Engine(workers=0) renders
                    r.user_budget, r.sandbox = budget, sandbox
                    r.update(nodes, outputs)
                for _ in range(200):
                    r.process(128)
                t = time.perf_counter()
                for _ in range(blocks):
                    r.process(128)
                costs.append((time.perf_counter() - t) / blocks * 1e6)
            out.append((name, *costs))
    finally:
        sandbox.close()
    return out


def main() -> None:
    unix_us, udp_us = receive_costs()
    print("1. receiving one /param/set (median of batches, this process)")
    print(f"   owner's socket, uid checked   {unix_us:6.2f} us")
    print(f"   plain UDP recvfrom            {udp_us:6.2f} us")
    print(f"   cost of the check             {unix_us - udp_us:+6.2f} us per message")
    own, pub = round_trips()
    print("2. /ping round trip to a headless engine (median)")
    print(f"   owner's socket                {own:6.1f} us")
    print(f"   public UDP port               {pub:6.1f} us")
    print("3. one block of 128 frames (2667 us), Renderer.process (mean)")
    print(f"   {'patch':28s} {'contained':>10s} {'in-process':>11s} {'cost':>8s}")
    for name, contained, bare in block_costs():
        print(f"   {name:28s} {contained:7.1f} us {bare:8.1f} us {contained - bare:+6.1f} us")


if __name__ == "__main__":
    main()
