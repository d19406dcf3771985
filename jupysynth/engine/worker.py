"""A worker process: ``python -m jupysynth.engine.worker <fd> <memfd> <config-json>``.

Started by the engine's :class:`~jupysynth.engine.workers.PoolRenderer`, never
by hand.  It holds a :class:`~jupysynth.renderer.Renderer` for the modules the
engine assigned to it (whole connected parts of the patch), renders one block
per request and copies its output channels into its columns of the shared
output bus, where the engine mixes every worker's channels in the patch's
output order.  It dies with the engine (``PR_SET_PDEATHSIG``, and end-of-file
on its pipe).

Requests (pickled, except the plain block, which is ``b"B"`` + frames):

- ``("B", frames, sets, events)``: apply ``sets`` (``(id, name, value, ramp)``),
  render ``frames`` with in-block ``events``, write the outputs; reply ``b"K"``,
  or ``("K", faults)`` when a module was muted;
- ``("U", nodes, outputs, columns, states, types, revived)``: load the module
  classes ``types`` (``{name: /type/define blob}``), unmute ``revived`` (their
  class was replaced), replace the patch (modules that stay keep their state,
  and swap to a replaced class), import ``states`` of modules moved here;
  reply ``b"K"``;
- ``("X", ids)``: reply the state of these modules (they are moving away);
- ``("Q",)``: exit.
"""

from __future__ import annotations

import json
import mmap
import os
import pickle
import signal
import struct
import sys
from multiprocessing.connection import Connection

import numpy as np

__all__ = ["main"]

_BLOCK = struct.Struct("<I")


def main(argv: list[str] | None = None) -> int:
    """Run a worker (see the module docstring)."""
    argv = sys.argv if argv is None else argv
    fd, memfd, cfg = int(argv[1]), int(argv[2]), json.loads(argv[3])
    from .child import _die_with_parent, _raise_priority, _warm_every_kernel

    _die_with_parent(cfg["parent_pid"], signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    sr, bs, cols = cfg["samplerate"], cfg["blocksize"], cfg["columns"]
    shared = mmap.mmap(memfd, bs * cols * 4)
    os.close(memfd)
    bus_out = np.ndarray((bs, cols), dtype=np.float32, buffer=shared)

    from ..errors import JupysynthError
    from ..graph import register_type
    from ..renderer import Renderer
    from ..warmup import warmup
    from .typedefs import load_type

    warmup()
    _warm_every_kernel(sr, bs)
    renderer = Renderer({}, [], sr, bs)
    columns = np.zeros(0, dtype=np.int64)
    outputs: list[tuple[int, int, int]] = []
    slots = np.zeros(0, dtype=np.int64)
    schedule = None
    faults_sent: dict[int, str] = {}
    _raise_priority()
    conn.send_bytes(b"R")
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return 0  # the engine is gone
        if data[:1] == b"B":
            frames, sets, events = _BLOCK.unpack_from(data, 1)[0], (), ()
            kind = "B"
        else:
            msg = pickle.loads(data)
            kind = msg[0]
            if kind == "B":
                _, frames, sets, events = msg
        if kind == "B":
            for node_id, name, value, ramp in sets:
                try:
                    renderer.set(node_id, name, value, ramp=ramp)
                except JupysynthError:
                    pass  # checked by the engine; only a module just muted lands here
            if renderer.nodes:
                renderer.process(frames, events)
                if renderer.schedule is not schedule:
                    # rebuilt (a muted module): find the output channels again
                    schedule = renderer.schedule
                    slots = np.asarray(
                        [schedule.slot_of.get((i, p), 0) for i, p, _ in outputs], dtype=np.int64
                    )
                if len(columns):
                    bus_out[:frames, columns] = renderer.bus[:frames, slots]
            if renderer.faults != faults_sent:
                faults_sent = dict(renderer.faults)
                conn.send_bytes(pickle.dumps(("K", faults_sent)))
            else:
                conn.send_bytes(b"K")
        elif kind == "U":
            _, nodes, outputs, cols_, states, types, revived = msg
            for name, blob in types.items():
                try:
                    register_type(load_type(name, blob))
                except JupysynthError as exc:
                    # the engine loaded the same blob; only a broken worker lands here,
                    # and its modules then fail like any crash of this worker
                    print(f"jupysynth worker: {exc}", file=sys.stderr)
            renderer.revive(revived)
            renderer.update(nodes, outputs)
            renderer.import_state(states)
            columns = np.asarray(cols_, dtype=np.int64)
            bus_out[:, columns] = 0.0
            schedule = None
            conn.send_bytes(b"K")
        elif kind == "X":
            conn.send_bytes(pickle.dumps(renderer.export_state(msg[1])))
        elif kind == "Q":
            return 0


if __name__ == "__main__":
    sys.exit(main())
