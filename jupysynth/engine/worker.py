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

What it is asked and what it answers: :mod:`jupysynth.engine.messages`.
"""

from __future__ import annotations

import json
import mmap
import os
import pickle
import select
import signal
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from . import messages
    from .wire import Wire

__all__ = ["main"]

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


class _Worker:
    """A worker's two renderers, where they write on the shared bus, and the share it builds.

    :meth:`serve` answers the engine's requests in order until it is told to
    quit or the engine is gone.
    """

    def __init__(self, wire: Wire, cfg: dict, shared: np.ndarray, flags: np.ndarray) -> None:
        from ..graph import module_types
        from ..kernels import bus as bus_kernels
        from ..renderer import Renderer
        from . import messages

        self.m = messages
        self.wire = wire
        self.shared = shared
        self.flags = flags  # each worker's "done" flag: the last block whose body it wrote
        self.doorbells = cfg["doorbells"]  # one eventfd per slot
        sr, bs = cfg["samplerate"], cfg["blocksize"]
        self.bus_kernels = bus_kernels
        self.body = _Part(Renderer({}, [], sr, bs), shared, bus_kernels)
        self.tail = _Part(Renderer({}, [], sr, bs), shared, bus_kernels)
        # each type's cost, measured here and sent to the engine every half second: how it
        # divides the patch (a cell module's sample() may cost 1 or 600 built-in kernels)
        self.body.r.timing = self.tail.r.timing = True
        self.cost_every = max(1, int(_COST_SECONDS * sr / bs))
        self.blocks = 0  # blocks since the costs were last sent
        self.internal = {n for n, c in module_types().items() if getattr(c, "internal", False)}
        self.imports = np.zeros(0, dtype=np.int64)  # shared columns the tail reads
        self.stand_ins: list[tuple[int, int]] = []  # (id, port) of the tail's stand-ins
        self.runs = bus_kernels.column_runs([], [])  # those columns -> the tail's bus
        self.tail_schedule: Any = None  # the tail schedule the runs were found for
        self.faults_seen = 0  # faults reported so far (both renderers)
        self.place = messages.Place(0, [], [])
        self.building: dict | None = None  # a share being built (Build), its plans once built
        self.nice = os.getpriority(os.PRIO_PROCESS, 0)

    def serve(self) -> int:
        """Answer requests until told to quit (0) or the engine is gone (0); 1: confused."""
        m = self.m
        while True:
            try:
                data = self.wire.recv()
            except (EOFError, OSError):
                return 0  # the engine is gone
            plain = m.read_plain_block(data)
            if plain is not None:
                self.block(plain[0], plain[1], (), ())
                continue
            msg = pickle.loads(data)
            if isinstance(msg, m.Block):
                if msg.states is not None and not self.switch(msg.states):
                    return 1
                self.block(msg.frames, msg.number, msg.sets, msg.events)
            elif isinstance(msg, m.Rebuild):
                self.building = None  # a share built before this one is void
                self.prelude(msg.types, msg.revived, msg.share.imports)
                self.install(msg.share, msg.states, None)
                self.wire.send_small(m.DONE)
            elif isinstance(msg, m.Build):
                # built on a thread while the blocks go on; a Block with states switches
                self.prelude(msg.types, msg.revived, msg.share.imports)
                self.building = job = {"share": msg.share, "told": False}
                threading.Thread(
                    target=self.prepare, args=(job,), name="jupysynth-prepare", daemon=True
                ).start()
            elif isinstance(msg, m.Export):
                got = self.tail.r.export_state(msg.ids).then(self.body.r.export_state(msg.ids))
                self.wire.send(pickle.dumps(got, protocol=5))
            elif isinstance(msg, m.Quit):
                return 0

    # -- a new share ------------------------------------------------------------------------

    def prelude(self, types: dict, revived: list, imports: list) -> None:
        """What a new share needs first, on this thread: its classes, unmuted modules."""
        from ..control.typedefs import load_type
        from ..errors import JupysynthError
        from ..graph import register_type
        from .split import owner_of

        for name, blob in types.items():
            try:
                register_type(load_type(name, blob))
            except JupysynthError as exc:
                # the engine loaded the same blob; only a broken worker lands here,
                # and its modules then fail like any crash of this worker
                print(f"jupysynth worker: {exc}", file=sys.stderr)
        for part in (self.body, self.tail):
            # a revived Mix brings its chunks back (muted if their kernel raised)
            part.r.revive([*revived, *(i for i in part.r.disabled if owner_of(i) in revived)])
        # a stand-in muted for a NaN it carried plays again with the new share
        for i, _, _ in imports:
            self.tail.r.disabled.discard(i)
            self.tail.r.faults.pop(i, None)

    def prepare(self, job: dict) -> None:
        """Build a share's two plans (on its own thread: numba may compile for a second)."""
        from .core import _normal_priority

        # this thread inherited the block loop's real-time priority: a compile must not
        # take the core from block loops
        _normal_priority(self.nice)
        share = job["share"]
        try:
            plans = (
                self.body.r.prepare(share.body.nodes, summed(share.body.outputs)),
                self.tail.r.prepare(share.tail.nodes, summed(share.tail.outputs)),
            )
        except Exception:  # noqa: BLE001 - the switch builds it again and reports
            plans = (None, None)
        job["plans"] = plans

    def switch(self, states: Any) -> bool:
        """Install the share built since :class:`Build` (False: none was built: confused)."""
        job = self.building
        if job is None or job.get("plans") is None:
            print("jupysynth worker: told to switch, nothing prepared", file=sys.stderr)
            return False
        self.install(job["share"], states, job["plans"])
        self.building = None
        return True

    def install(self, share: messages.Share, states: Any, plans: tuple | None) -> None:
        body, tail = self.body, self.tail
        self.place = share.place
        t_nodes = share.tail.nodes
        t_real = {i for i, s in t_nodes.items() if s.kernel != "bus.hold"}
        # modules changing renderer here carry their state across
        crossing = body.r.export_state([i for i in t_real if i in body.real]).then(
            tail.r.export_state([i for i in share.body.nodes if i in tail.real])
        )
        plans = plans or (None, None)
        b = share.body
        body.update(b.nodes, b.outputs, b.columns, set(b.nodes), plans[0])
        tail.update(t_nodes, share.tail.outputs, share.tail.columns, t_real, plans[1])
        self.stand_ins = [(i, p) for i, p, _ in share.imports]
        self.imports = np.asarray([c for _, _, c in share.imports], dtype=np.int64)
        self.tail_schedule = None
        for part in (body, tail):
            part.r.import_state(crossing.then(states))
        self.faults_seen = -1  # report what is left after the new share

    # -- a block ----------------------------------------------------------------------------

    def block(self, frames: int, number: int, sets: Any, events: Any) -> None:
        """Render the body, raise the flag, render the tail after the others', reply."""
        from ..errors import JupysynthError

        body, tail = self.body, self.tail
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
        self.flags[self.place.slot] = number  # after the copies: the tails may read them
        for t in self.place.rings:
            os.eventfd_write(self.doorbells[t], 1)
        if tail.real:
            self.wait_for(self.place.waits, number)
            self.render_tail(frames, theirs)
        self.reply()

    def wait_for(self, slots: list[int], number: int) -> None:
        """Until every worker in ``slots`` has written its voices of block ``number``.

        Sleeps on this worker's doorbell, which they ring after raising their
        flag (a spin would burn the real-time budget the others need); a worker
        that does not finish in time (it died, or hangs: the engine replaces it)
        is given up on, and the tail renders with what is on the bus.
        """
        bell = self.doorbells[self.place.slot]
        flags = self.flags
        give_up = time.monotonic() + _TAIL_PATIENCE
        while any(flags[s] != number for s in slots):
            left = give_up - time.monotonic()
            if left <= 0:
                return
            select.select([bell], [], [], left)
            try:
                os.eventfd_read(bell)
            except BlockingIOError:
                pass

    def render_tail(self, frames: int, events: Any) -> None:
        r = self.tail.r
        if r.schedule is not self.tail_schedule:
            self.tail_schedule = r.schedule
            # a stand-in muted for the NaN it carried is not copied in (its readers read
            # the zero column, which must stay zero)
            pairs = [
                (col, r.schedule.slot_of[key])
                for col, key in zip(self.imports, self.stand_ins)
                if key in r.schedule.slot_of
            ]
            self.runs = self.bus_kernels.column_runs([c for c, _ in pairs], [d for _, d in pairs])
        if len(self.imports):
            self.bus_kernels.copy_runs(frames, self.shared, self.runs, r.bus)
        self.tail.render(frames, events)

    def reply(self) -> None:
        """The block's reply: done, with news of the share built, faults and costs."""
        m = self.m
        job = self.building
        ready = False
        if job is not None and not job["told"] and job.get("plans") is not None:
            job["told"] = ready = True
        costs = None
        self.blocks += 1
        if self.blocks >= self.cost_every:
            self.blocks = 0
            costs = {}
            for part in (self.body, self.tail):
                for name, (spent, frames) in part.r.take_costs().items():
                    if name not in self.internal:
                        was = costs.get(name, (0.0, 0))
                        costs[name] = (was[0] + spent, was[1] + frames)
        count = len(self.body.r.faults) + len(self.tail.r.faults)
        report = count != self.faults_seen  # only ever added between shares
        if report or costs:
            faults = {}
            if report:
                self.faults_seen = count
                # a stand-in is named as its module: its NaN is that module's fault
                faults = {**self.tail.r.faults, **self.body.r.faults}
            self.wire.send(pickle.dumps(m.Report(faults, ready, costs)))
        else:
            self.wire.send_small(m.DONE_READY if ready else m.DONE)


def main(argv: list[str] | None = None) -> int:
    """Run a worker (see the module docstring)."""
    argv = sys.argv if argv is None else argv
    fd, memfd, cfg = int(argv[1]), int(argv[2]), json.loads(argv[3])
    from .child import _die_with_parent, _raise_priority

    _die_with_parent(cfg["parent_pid"], signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from .wire import Wire

    wire = Wire(socket.socket(fileno=fd))
    bs, cols = cfg["blocksize"], cfg["columns"]
    bus_bytes = (bs * cols * 4 + 7) // 8 * 8
    shared_map = mmap.mmap(memfd, bus_bytes + 8 * cfg["max_workers"])
    os.close(memfd)
    shared = np.ndarray((bs, cols), dtype=np.float32, buffer=shared_map)
    flags = np.ndarray((cfg["max_workers"],), dtype=np.int64, buffer=shared_map, offset=bus_bytes)

    from ..kernels.bus import column_runs, copy_runs
    from ..warmup import warm_live, warmup
    from . import messages
    from .split import warm_partials  # registers the stand-in types too

    warmup()
    warm_live(cfg["samplerate"], bs)
    warm_partials(cfg["samplerate"], bs)
    # a share built on a thread (numba compiling for a second) holds the interpreter
    # lock in long stretches; hand it back to the block loop every half millisecond
    sys.setswitchinterval(0.0005)
    copy_runs(0, shared, column_runs([0], [0]), shared)
    worker = _Worker(wire, cfg, shared, flags)
    _raise_priority()
    wire.send(messages.STARTED)
    return worker.serve()


if __name__ == "__main__":
    sys.exit(main())
