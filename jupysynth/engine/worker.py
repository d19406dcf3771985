"""A worker process: ``python -m jupysynth.engine.worker <fd> <memfd> <config-json>``.

Started by the engine's :class:`~jupysynth.engine.workers.PoolRenderer`, never
by hand.  It renders its share of the patch (see :mod:`jupysynth.engine.split`)
with two :class:`~jupysynth.renderer.Renderer`: the ``body`` (whole parts,
voices, copies of heads) and, on the worker holding a split part's tail, the
``tail``, which renders after every worker's body, reading the signals it
needs from the shared output bus through stand-in modules
(:class:`~jupysynth.engine.split.ImportMono`).  After each renderer, the
worker copies its output channels (and the body's exports) into its columns
of the shared bus, where the engine mixes the channels in the patch's order.
It dies with the engine (``PR_SET_PDEATHSIG``, and end-of-file on its socket).

After its body, a worker raises its "done" flag (the block's number, in
shared memory after the bus); a worker with a tail waits for the other
workers' flags before it renders the tail (no round trip through the engine).

Requests (:class:`~jupysynth.engine.wire.Wire` messages, pickled except the
plain block ``b"B"`` + frames and block number):

- ``("B", frames, sets, events, number)``: apply ``sets`` (``(id, name, value,
  ramp)``), render the body with its in-block ``events``, write its columns
  and its flag; with a tail, wait for the others' flags and render the tail;
  reply ``b"K"``, or ``("K", faults, ready, costs)`` when a module was muted
  or every half second with what each module type cost (``{type name:
  (seconds, instance-frames)}``, see :meth:`Renderer.take_costs`);
- ``("U", body, tail, imports, place, states, types, revived)``: load the
  module classes ``types`` (``{name: /type/define blob}``), unmute
  ``revived``, replace both renderers' patches (``body``/``tail``: ``(nodes,
  outputs, columns)``; modules that stay keep their state), import ``states``
  of modules moved here; ``imports``: ``(id, port, column)`` the tail reads;
  ``place``: ``(its slot, the slots its tail waits for)``; reply ``b"K"``;
- ``("V", body, tail, imports, place, types, revived)``: as ``"U"``, but
  build the patch on a thread while blocks go on (no reply); the first block
  reply once it is built is ``b"k"`` (or ``("K", faults, True, costs)``), and a
  block request with a sixth item, the ``states`` of modules moved here,
  switches to it;
- ``("X", ids)``: reply the state of these modules (they are moving away);
- ``("Q",)``: exit.
"""

from __future__ import annotations

import json
import mmap
import os
import pickle
import select
import signal
import socket
import struct
import sys
import threading
import time
from typing import Any

import numpy as np

__all__ = ["main"]

_BLOCK = struct.Struct("<II")  # frames, block number
#: Seconds a tail waits for the other workers' bodies (less than the engine's deadline).
_TAIL_PATIENCE = 0.15
#: Seconds between two reports of what each module type costs.
_COST_SECONDS = 0.5


def summed(outputs: list) -> list:
    """The outputs a renderer sums (its NaN check); channels 0 marks a copy only."""
    return [o for o in outputs if o[2] > 0]


class _Part:
    """One renderer of the worker and where its outputs go on the shared bus."""

    def __init__(self, renderer: Any, shared: np.ndarray, bus_kernels: Any) -> None:
        self.r = renderer
        self.shared = shared
        self.bus_kernels = bus_kernels  # jupysynth.kernels.bus, loaded after start-up
        self.real: set[int] = set()  # modules rendered here (not stand-ins)
        self.outputs: list[tuple[int, int, int]] = []
        self.columns = np.zeros(0, dtype=np.int64)
        self.runs = bus_kernels.column_runs([], [])  # bus slots -> shared columns
        self.schedule = None

    def update(self, nodes: dict, outputs: list, columns: list, real: set[int], plan: Any) -> None:
        """Install a patch: ``plan`` from ``self.r.prepare`` (None: build it now)."""
        if plan is None:
            self.r.update(nodes, summed(outputs))
        else:
            self.r.apply(plan)  # prepares again, here, if the renderer changed since
        self.real = real
        self.outputs = outputs
        self.columns = np.asarray(columns, dtype=np.int64)
        self.shared[:, self.columns] = 0.0
        self.schedule = None

    def render(self, frames: int, events: Any) -> None:
        r = self.r
        if not r.nodes:
            return
        before = len(r.faults)
        r.process(frames, events)
        if r.schedule is not self.schedule:
            # rebuilt (a muted module): find the output channels again
            self.schedule = r.schedule
            slots = [r.schedule.slot_of.get((i, p), 0) for i, p, _ in self.outputs]
            self.runs = self.bus_kernels.column_runs(slots, self.columns)
        if len(self.columns):
            self.bus_kernels.copy_runs(frames, r.bus, self.runs, self.shared)
            if len(r.faults) != before:
                # the span that caught a NaN still holds it: keep it from the tail and mix
                for c in self.columns:
                    np.nan_to_num(
                        self.shared[:frames, c], copy=False, nan=0.0, posinf=0.0, neginf=0.0
                    )


def main(argv: list[str] | None = None) -> int:
    """Run a worker (see the module docstring)."""
    argv = sys.argv if argv is None else argv
    fd, memfd, cfg = int(argv[1]), int(argv[2]), json.loads(argv[3])
    from .child import _die_with_parent, _raise_priority

    _die_with_parent(cfg["parent_pid"], signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from .wire import Wire

    wire = Wire(socket.socket(fileno=fd))
    sr, bs, cols = cfg["samplerate"], cfg["blocksize"], cfg["columns"]
    bus_bytes = (bs * cols * 4 + 7) // 8 * 8
    shared_map = mmap.mmap(memfd, bus_bytes + 8 * cfg["max_workers"])
    os.close(memfd)
    shared = np.ndarray((bs, cols), dtype=np.float32, buffer=shared_map)
    # each worker's "done" flag: the number of the last block whose body it wrote
    flags = np.ndarray((cfg["max_workers"],), dtype=np.int64, buffer=shared_map, offset=bus_bytes)

    from ..errors import JupysynthError
    from ..graph import module_types, register_type
    from ..kernels import bus as bus_kernels
    from ..kernels.bus import column_runs, copy_runs
    from ..renderer import Renderer, States
    from ..warmup import warm_live, warmup
    from .core import _normal_priority
    from .split import owner_of, warm_partials  # registers the stand-in types too
    from .typedefs import load_type

    warmup()
    warm_live(sr, bs)
    warm_partials(sr, bs)
    # a patch prepared on a thread (numba compiling for a second) holds the interpreter
    # lock in long stretches; hand it back to the block loop every half millisecond
    sys.setswitchinterval(0.0005)
    copy_runs(0, shared, column_runs([0], [0]), shared)
    body = _Part(Renderer({}, [], sr, bs), shared, bus_kernels)
    tail = _Part(Renderer({}, [], sr, bs), shared, bus_kernels)
    # each type's cost, measured here and sent to the engine every half second: how it
    # divides the patch (a cell module's sample() may cost 1 or 600 built-in kernels)
    body.r.timing = tail.r.timing = True
    cost_every = max(1, int(_COST_SECONDS * sr / bs))
    internal = {n for n, cls in module_types().items() if getattr(cls, "internal", False)}
    pending: dict | None = None  # a patch being prepared ("V"), and its plans once built
    state: dict[str, Any] = {
        "imports": np.zeros(0, dtype=np.int64),  # shared columns the tail reads
        "stand_ins": [],  # (id, port) of the tail's stand-ins, in the same order
        "runs": column_runs([], []),  # those columns -> the tail's bus
        "schedule": None,  # the tail schedule the runs were found for
        "faults_seen": 0,  # faults reported so far (both renderers)
        "slot": 0,  # this worker's flag
        "waits": [],  # the flags its tail waits for
        "ring": [],  # the slots whose tails read this worker's voices
        "blocks": 0,  # blocks since the costs were last sent
    }
    doorbells = cfg["doorbells"]  # one eventfd per slot

    def prelude(types: dict, revived: list, imp: list) -> None:
        """What a new patch needs first, on this thread: its classes, unmuted modules."""
        for name, blob in types.items():
            try:
                register_type(load_type(name, blob))
            except JupysynthError as exc:
                # the engine loaded the same blob; only a broken worker lands here,
                # and its modules then fail like any crash of this worker
                print(f"jupysynth worker: {exc}", file=sys.stderr)
        for part in (body, tail):
            # a revived Mix brings its chunks back (muted if their kernel raised)
            part.r.revive([*revived, *(i for i in part.r.disabled if owner_of(i) in revived)])
        # a stand-in muted for a NaN it carried plays again with the new patch
        for i, _, _ in imp:
            tail.r.disabled.discard(i)
            tail.r.faults.pop(i, None)

    def prepare(job: dict) -> None:
        # this thread inherited the block loop's real-time priority: a compile (numba
        # takes a second for a new cell type) must not take the core from block loops
        _normal_priority(nice)
        (b_nodes, b_outs, _), (t_nodes, t_outs, _), _, _ = job["spec"]
        try:
            plans = (
                body.r.prepare(b_nodes, summed(b_outs)),
                tail.r.prepare(t_nodes, summed(t_outs)),
            )
        except Exception:  # noqa: BLE001 - the switch builds it again and reports
            plans = (None, None)
        job["plans"] = plans

    def install(spec: tuple, states: States, plans: tuple | None) -> None:
        (b_nodes, b_outs, b_cols), (t_nodes, t_outs, t_cols), imp, place = spec
        state["slot"], state["waits"], state["ring"] = place
        t_real = {i for i, s in t_nodes.items() if s.kernel != "bus.hold"}
        # modules changing renderer here carry their state across
        crossing = body.r.export_state([i for i in t_real if i in body.real]).then(
            tail.r.export_state([i for i in b_nodes if i in tail.real])
        )
        plans = plans or (None, None)
        body.update(b_nodes, b_outs, b_cols, set(b_nodes), plans[0])
        tail.update(t_nodes, t_outs, t_cols, t_real, plans[1])
        state["stand_ins"] = [(i, p) for i, p, _ in imp]
        state["imports"] = np.asarray([c for _, _, c in imp], dtype=np.int64)
        state["schedule"] = None
        for part in (body, tail):
            part.r.import_state(crossing.then(states))
        state["faults_seen"] = -1  # report what is left after the new patch

    def wait_for(slots: list[int], seq: int) -> None:
        """Until every worker in ``slots`` has written its voices of block ``seq``.

        Sleeps on this worker's doorbell, which they ring after raising their
        flag (a spin would burn the real-time budget the others need); a worker
        that does not finish in time (it died, or hangs: the engine replaces it)
        is given up on, and the tail renders with what is on the bus.
        """
        bell = doorbells[state["slot"]]
        give_up = time.monotonic() + _TAIL_PATIENCE
        while any(flags[s] != seq for s in slots):
            left = give_up - time.monotonic()
            if left <= 0:
                return
            select.select([bell], [], [], left)
            try:
                os.eventfd_read(bell)
            except BlockingIOError:
                pass

    nice = os.getpriority(os.PRIO_PROCESS, 0)
    _raise_priority()
    wire.send(b"R")
    while True:
        try:
            data = wire.recv()
        except (EOFError, OSError):
            return 0  # the engine is gone
        if data[:1] == b"B":
            frames, seq = _BLOCK.unpack_from(data, 1)
            sets, events = (), ()
            kind = "B"
        else:
            msg = pickle.loads(data)
            kind = msg[0]
            if kind == "B":
                frames, sets, events, seq = msg[1:5]
                if len(msg) > 5:  # switch to the patch prepared since "V"
                    if pending is None or pending.get("plans") is None:
                        print("jupysynth worker: told to switch, nothing prepared", file=sys.stderr)
                        return 1
                    install(pending["spec"], msg[5], pending["plans"])
                    pending = None
        if kind == "B":
            for node_id, name, value, ramp in sets:
                part = body if node_id in body.real else tail
                try:
                    part.r.set(node_id, name, value, ramp=ramp)
                except JupysynthError:
                    pass  # checked by the engine; only a module just muted lands here
            if events and tail.real:
                mine = [e for e in events if e[1] in body.real]
                theirs = [e for e in events if e[1] in tail.real]
            else:
                mine, theirs = events, ()
            body.render(frames, mine)
            flags[state["slot"]] = seq  # after the copies: the tails may read them
            for t in state["ring"]:
                os.eventfd_write(doorbells[t], 1)
            if tail.real:
                wait_for(state["waits"], seq)
                r = tail.r
                if r.schedule is not state["schedule"]:
                    state["schedule"] = r.schedule
                    # a stand-in muted for the NaN it carried is not copied in (its
                    # readers read the zero column, which must stay zero)
                    pairs = [
                        (col, r.schedule.slot_of[key])
                        for col, key in zip(state["imports"], state["stand_ins"])
                        if key in r.schedule.slot_of
                    ]
                    state["runs"] = column_runs([c for c, _ in pairs], [d for _, d in pairs])
                if len(state["imports"]):
                    copy_runs(frames, shared, state["runs"], r.bus)
                tail.render(frames, theirs)
            ready = False
            if pending is not None and not pending["told"] and pending.get("plans") is not None:
                pending["told"] = ready = True
            costs = None
            state["blocks"] += 1
            if state["blocks"] >= cost_every:
                state["blocks"] = 0
                costs = {}
                for part in (body, tail):
                    for name, (spent, frames) in part.r.take_costs().items():
                        if name not in internal:
                            was = costs.get(name, (0.0, 0))
                            costs[name] = (was[0] + spent, was[1] + frames)
            count = len(body.r.faults) + len(tail.r.faults)
            report = count != state["faults_seen"]  # only ever added between patches
            if report or costs:
                faults = {}
                if report:
                    state["faults_seen"] = count
                    # a stand-in is named as its module: its NaN is that module's fault
                    faults = {**tail.r.faults, **body.r.faults}
                wire.send(pickle.dumps(("K", faults, ready, costs)))
            else:
                wire.send_small(b"k" if ready else b"K")
        elif kind == "U":
            _, b_spec, t_spec, imp, place, states, types, revived = msg
            pending = None  # a patch prepared before this one is void
            prelude(types, revived, imp)
            install((b_spec, t_spec, imp, place), states, None)
            wire.send_small(b"K")
        elif kind == "V":
            # build this patch on a thread while the blocks go on; "B" with states switches
            _, b_spec, t_spec, imp, place, types, revived = msg
            prelude(types, revived, imp)
            pending = {"spec": (b_spec, t_spec, imp, place), "told": False}
            threading.Thread(
                target=prepare, args=(pending,), name="jupysynth-prepare", daemon=True
            ).start()
        elif kind == "X":
            ids = msg[1]
            got = tail.r.export_state(ids).then(body.r.export_state(ids))
            wire.send(pickle.dumps(got, protocol=5))
        elif kind == "Q":
            return 0


if __name__ == "__main__":
    sys.exit(main())
