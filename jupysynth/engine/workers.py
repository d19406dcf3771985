"""The worker pool: worker processes render parts of the patch, the engine mixes them.

:class:`PoolRenderer` is a :class:`~jupysynth.engine.renderers.LiveRenderer`,
as the in-process renderer is, so the core does not know whether it renders
itself or through workers.  What it says to its workers is in
:mod:`jupysynth.engine.messages`.

How the work is split
    :func:`jupysynth.engine.split.assign` divides the patch: a light
    connected part goes whole to one worker (the one that already holds most
    of it, a new part to the least loaded); a heavy one is split by voices:
    each voice chain renders on one worker, what all voices share (an LFO) is
    rendered by every worker that needs it, and what sums them (a Mix and the
    effects after it) renders on one worker in a second phase of the block,
    once every worker has written its voices to the shared bus.  A module
    that must move takes its state along.

Why the samples do not depend on the worker count
    Every kernel renders each instance independently, so a module renders the
    same samples on any worker, given the same inputs: a tail reads its
    inputs from the shared bus, exactly as they were rendered.  Workers copy
    each output channel into their columns of one shared output bus (an anonymous
    ``memfd``: no ``/dev/shm`` entry, freed with the last process), and the
    engine sums the channels in the patch's output order with the renderer's
    own mixing kernel: the same additions in the same order as
    :func:`jupysynth.render`.

Faults
    A worker that dies (a segfault, SIGKILL) or misses its deadline
    (:data:`WORKER_DEADLINE`) is killed; a warm spare, kept ready, takes its
    place and re-creates its modules (their state starts anew), and another
    spare starts.  Modules that were on two workers that crashed (a fatal
    signal such as SIGSEGV) or hung within :data:`CULPRIT_WINDOW` are muted
    and reported as faults; a kill from outside (SIGKILL, SIGTERM) blames
    nobody.  Until the spare
    has taken over, the dead worker's modules are silent; everything else
    plays on.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import pickle
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import kernels
from ..crossfade import _MIX_OUT_FADE, Crossfade
from ..errors import EngineError, PatchError
from ..graph import PYTHON_KERNEL, SAMPLE_KERNEL, NodeSpec, module_types
from ..renderer import States
from . import messages
from .split import NS_PER_UNIT, SPLIT_WEIGHT, Share, assign, import_type, owner_of, weight
from .wire import Wire

__all__ = ["CULPRIT_WINDOW", "MAX_OUTPUTS_PER_WORKER", "WORKER_DEADLINE", "PoolRenderer"]

log = logging.getLogger("jupysynth.engine")

#: Seconds a worker may take for one block before it is killed and replaced.  Far
#: longer than a block: a loaded machine delays a healthy worker by tens of ms, and
#: replacing it restarts its modules.  A block due sooner (the device needs it: the
#: ``due`` of :meth:`PoolRenderer.process`) is not waited for that long: the late
#: worker's part plays silence, the rest on time, and it catches up.
WORKER_DEADLINE = 0.25
#: Output channels one worker may feed (the patch's outputs, and voices its
#: body hands to a tail on another worker).
MAX_OUTPUTS_PER_WORKER = 4096
#: Shortest time between two divisions of the patch for measured costs, in seconds.
REBALANCE_SECONDS = 2.0
#: Seconds within which a second worker death mutes the modules both workers held.
CULPRIT_WINDOW = 30.0
_START_TIMEOUT = 120.0
#: Longest wait for workers before the engine asks again how long the device can wait.
_DUE_SLICE = 0.001
#: Seconds before the device needs a block that the engine stops waiting for late
#: workers: the mix, the copy into the ring, and a wake-up that comes late.
_DUE_MARGIN = 0.0005

_MIX_OUT = kernels.load("bus.mix_out")
_ALL_FINITE = kernels.load("bus.all_finite")
_LANE_ENDS = kernels.load("bus.lane_ends")
_RAMP_OUT = kernels.load("bus.ramp_out")
#: Signals a worker dies of when the code it runs crashes (not when it is killed).
_CRASHES = {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT}
#: Most worker slots (each has a "done" flag after the shared bus).
MAX_WORKERS = 64


class _Worker:
    """One worker process and what the engine assigned to it."""

    def __init__(self, proc: subprocess.Popen, wire: Wire) -> None:
        self.proc = proc
        self.wire = wire
        self.ready = False
        self.ids: set[int] = set()  # modules it renders (body and tail)
        self.tail = False  # renders a tail: a second phase each block
        self.switch: tuple | None = None  # (states, sets): install the prepared patch
        self.sets: list[tuple] = []  # parameter changes to send with the next block
        self.types: dict[str, bytes] = {}  # /type/define blobs it has loaded, by name
        # when each block it was sent and has not answered yet was sent (monotonic): a
        # worker late for the device plays silence and catches up (see process)
        self.unanswered: deque[float] = deque()

    def poll_ready(self) -> bool:
        """True once the worker has loaded its kernels (never blocks)."""
        if not self.ready:
            try:
                if (
                    select.select([self.wire], [], [], 0)[0]
                    and self.wire.recv() == messages.STARTED
                ):
                    self.ready = True
            except (EOFError, OSError, ValueError):
                return False
        return self.ready

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.wire.close()


class _Layout:
    """A division of the patch between the workers, with everything to install it."""

    def __init__(
        self,
        nodes: dict[int, NodeSpec],
        outputs: list[tuple[int, int, int]],
        fade: Crossfade | None,
        generation: int,
    ) -> None:
        self.nodes, self.outputs, self.fade, self.generation = nodes, outputs, fade, generation
        self.slots: list[int] = []
        self.holders: dict[int, list[int]] = {}
        self.ids: dict[int, set[int]] = {}
        self.payload: dict[int, messages.Share] = {}  # slot -> what that worker renders
        self.left: list[int] = []
        self.right: list[int] = []
        self.watched: dict[tuple[int, int], int] = {}
        # for prepare/apply
        self.request: tuple = ()
        self.messages: dict[int, bytes] = {}
        self.sent = False
        self.ready_slots: set[int] = set()
        self.ready = False
        self.done: threading.Event | None = None
        self.revived: list[int] = []
        self.changed: set[tuple[int, int]] = set()
        self.values: list[tuple[int, str, Any]] = []  # numbers set in another renderer
        self.weights: dict[str, tuple[int, float]] = {}  # type -> (modules, weight) assumed
        self.abandoned = False  # an edit came: stop waiting for this one (a rebalance)


class PoolRenderer:
    """Render through ``workers`` worker processes (see the module docstring).

    Parameters
    ----------
    samplerate : int
        Frames per second.
    blocksize : int
        The most frames one :meth:`process` renders.
    workers : int
        Worker processes rendering; one more is kept warm as a spare.

    Raises
    ------
    EngineError
        If the workers do not start.
    """

    def __init__(self, samplerate: int, blocksize: int, workers: int) -> None:
        self.samplerate = float(samplerate)
        self.blocksize = int(blocksize)
        self.nodes: dict[int, NodeSpec] = {}
        self.outputs: list[tuple[int, int, int]] = []
        self.faults: dict[int, str] = {}
        self.disabled: set[int] = set()
        self.types: dict[str, bytes] = {}  # module classes written in Python, pickled
        self._revived: set[int] = set()  # unmuted here, to unmute on the workers too
        self.frame = 0
        self.restarts = 0
        #: Blocks in which a worker was late for the device: its part played silence.
        self.late_parts = 0
        self.out = np.zeros((self.blocksize, 2), dtype=np.float32)
        self._n = int(workers)
        # column 0 stays zero (what a muted or orphaned output reads)
        self._columns = 1 + self._n * MAX_OUTPUTS_PER_WORKER
        if not 1 <= self._n < MAX_WORKERS:
            raise EngineError(f"workers={workers} is out of range; use 1 to {MAX_WORKERS - 1}")
        self._memfd = os.memfd_create("jupysynth-outputs")
        bus_bytes = (self.blocksize * self._columns * 4 + 7) // 8 * 8
        os.ftruncate(self._memfd, bus_bytes + 8 * MAX_WORKERS)
        self._mmap = mmap.mmap(self._memfd, bus_bytes + 8 * MAX_WORKERS)
        self.bus = np.ndarray((self.blocksize, self._columns), dtype=np.float32, buffer=self._mmap)
        self._seq = 0  # blocks asked for: a worker's "done" flag holds the last it finished
        # a doorbell per slot: a worker that wrote its voices rings the tails' bells
        self._doorbells = [os.eventfd(0, os.EFD_NONBLOCK) for _ in range(self._n)]
        self._left = np.zeros(0, dtype=np.int64)
        self._right = np.zeros(0, dtype=np.int64)
        # load (or compile) the mixing kernels now, not in the first block or crossfade
        _MIX_OUT(0, 1, self.bus, self._left, self._right, self.out)
        Crossfade({}, [], {}, 1).mix(
            0, 1, self.bus, self._left, self._right, (self._left, self._right), self.out
        )
        _ALL_FINITE(self.out, 0, 1)
        # each slot's share of the output at the end of the last block, and the slots
        # that were late in it: a part that stops arriving fades out from where it was,
        # and fades in when it comes back (a cut would click)
        self._ends = np.zeros((MAX_WORKERS, 2), dtype=np.float64)
        self._was_late: set[int] = set()
        _LANE_ENDS(self.bus, 0, self._left, self._right, MAX_OUTPUTS_PER_WORKER, self._ends)
        _RAMP_OUT(self.out, 1, 0.0, 0.0)
        self._holders: dict[int, list[int]] = {}  # module id -> slots rendering it
        self._poller = select.poll()
        self._polled: dict[int, int] = {}  # fd -> slot, the rendering workers' sockets
        self._tails: list[int] = []  # slots rendering a tail (a second phase)
        self._generation = 0  # bumped by every change of the layout: a plan before it is stale
        self._preparing: _Layout | None = None  # a layout the workers are building
        self._changed: set[tuple[int, str]] = set()  # values set since the last layout
        # scope taps: {(module id, port): shared-bus column} of the outputs a worker copies
        # there, and the outputs asked for that the next division will export
        self._watched: dict[tuple[int, int], int] = {}
        self._wanted: set[tuple[int, int]] = set()
        #: No sandbox: code written in cells renders in the workers.
        self.sandbox = None
        self._deaths: dict[int, float] = {}  # module id -> when its worker last died
        # measured cost of each module type, in split.weight units (workers time their
        # kernels); a layout that assumed far other weights is divided again
        self.costs: dict[str, float] = {}
        self._assumed: dict[str, tuple[int, float]] = {}  # the layout's (modules, weight)
        self._rebalanced = 0.0  # monotonic time of the last division for measured costs
        #: The engine should prepare the same patch again (:meth:`prepare`): measured
        #: costs divide it differently.  The engine's block loop clears it.
        self.rebalance_wanted = False
        # Workers are started by one long-lived thread: PR_SET_PDEATHSIG fires when
        # the thread that forked a child ends, so it must live as long as the engine.
        self._spawns: queue.Queue = queue.Queue()
        self._spawned: queue.Queue = queue.Queue()
        self._spawner = threading.Thread(
            target=self._spawn_loop, name="jupysynth-spawner", daemon=True
        )
        self._spawner.start()
        self._slots: list[_Worker | None] = []
        self._spare: _Worker | None = None
        self._spare_pending = False
        self._reassign = False  # a worker died: give its modules to the others or a spare
        self._fade: Crossfade | None = None  # a crossfade in progress
        self._lanes: tuple[np.ndarray, np.ndarray] | None = None  # how its lanes fade
        self._failed = False  # a worker died during the current assignment
        started: list[Any] = []
        try:
            for _ in range(self._n + 1):
                self._spawns.put(True)
            for _ in range(self._n + 1):
                got = self._spawned.get(timeout=_START_TIMEOUT)
                if isinstance(got, BaseException):
                    raise EngineError(f"cannot start a worker process: {got}")
                started.append(got)
            deadline = time.monotonic() + _START_TIMEOUT
            while not all(w.poll_ready() for w in started):
                if any(w.proc.poll() is not None for w in started):
                    raise EngineError(
                        "a worker process exited while loading the kernels; "
                        "its error is on the engine's stderr"
                    )
                if time.monotonic() > deadline:
                    raise EngineError(f"the workers did not start within {_START_TIMEOUT:g} s")
                time.sleep(0.01)
        except BaseException:
            for w in started:
                w.kill()
            self.close()
            raise
        self._slots = started[: self._n]
        self._spare = started[self._n]

    # -- processes ---------------------------------------------------------------------------

    def _spawn_loop(self) -> None:
        while self._spawns.get():
            try:
                self._spawned.put(self._spawn())
            except Exception as exc:  # noqa: BLE001 - handed to whoever waits for it
                self._spawned.put(exc)

    def _spawn(self) -> _Worker:
        ours, theirs = socket.socketpair()
        cfg = {
            "samplerate": int(self.samplerate),
            "blocksize": self.blocksize,
            "columns": self._columns,
            "max_workers": MAX_WORKERS,
            "doorbells": self._doorbells,
            "parent_pid": os.getpid(),
        }
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "jupysynth.engine.worker",
                    str(theirs.fileno()),
                    str(self._memfd),
                    json.dumps(cfg),
                ],
                pass_fds=(theirs.fileno(), self._memfd, *self._doorbells),
                env=env,
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        return _Worker(proc, Wire(ours))

    def _collect_spawned(self) -> None:
        """Pick up a spare the spawner thread has started (never blocks)."""
        if self._spare is None and self._spare_pending:
            try:
                got = self._spawned.get_nowait()
            except queue.Empty:
                return
            self._spare_pending = False
            if isinstance(got, BaseException):
                log.error("cannot start a spare worker: %s", got)
                return
            self._spare = got

    def _spare_ready(self) -> bool:
        """True when a spare has loaded its kernels; a spare that died is replaced."""
        self._collect_spawned()
        spare = self._spare
        if spare is None:
            return False
        if spare.poll_ready():
            return True
        if spare.proc.poll() is not None:
            spare.kill()
            self._spare = None
            self._start_spare()
        return False

    def _take_spare(self) -> _Worker | None:
        """The warm spare, if one is ready; a new spare starts behind it."""
        if not self._spare_ready():
            return None
        spare, self._spare = self._spare, None
        self._start_spare()
        return spare

    def _start_spare(self) -> None:
        if not self._spare_pending:
            self._spare_pending = True
            self._spawns.put(True)

    #: It renders in other processes (see :class:`~jupysynth.renderer.Renderer`).
    in_process = False

    @property
    def generation(self) -> int:
        """Bumped by every change of the layout: a plan prepared before it is stale."""
        return self._generation

    @property
    def workers(self) -> int:
        """Worker processes rendering now."""
        return sum(w is not None for w in self._slots)

    def pids(self) -> list[int]:
        """Process ids of the rendering workers (and of the spare, last)."""
        out = [w.proc.pid for w in self._slots if w is not None]
        if self._spare is not None:
            out.append(self._spare.proc.pid)
        return out

    def close(self) -> None:
        """End every worker and release the shared bus (idempotent)."""
        for w in [*self._slots, self._spare]:
            if w is None:
                continue
            try:
                w.wire.send(pickle.dumps(messages.Quit()))
            except OSError:
                pass
        deadline = time.monotonic() + 2.0
        for w in [*self._slots, self._spare]:
            if w is None:
                continue
            try:
                w.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            w.kill()
        self._slots, self._spare = [], None
        self._spawns.put(False)
        self._spawner.join(_START_TIMEOUT)
        while not self._spawned.empty():
            got = self._spawned.get_nowait()
            if isinstance(got, _Worker):
                got.kill()
        if self._memfd >= 0:
            del self.bus
            self._mmap.close()
            os.close(self._memfd)
            self._memfd = -1
            for fd in self._doorbells:
                os.close(fd)
            self._doorbells = []

    # -- faults ------------------------------------------------------------------------------

    def _fail(self, slot: int, why: str) -> None:
        """Kill the worker in ``slot``; a spare re-creates its modules (or they wait for one)."""
        w = self._slots[slot]
        if w is None:
            return
        hung = w.proc.poll() is None and ("deadline" in why or "did not answer" in why)
        w.kill()
        code = w.proc.returncode  # a worker dying as it was killed keeps its own cause
        self._slots[slot] = None
        self.restarts += 1
        lo = 1 + slot * MAX_OUTPUTS_PER_WORKER
        self.bus[:, lo : lo + MAX_OUTPUTS_PER_WORKER] = 0.0
        if hung:
            how = why
        elif code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with code {code}"
        # only what a module can do to its worker points at the module: a crash, a hang;
        # a kill from outside (SIGKILL, SIGTERM: a person, the OOM killer) does not
        blamed = hung or -code in _CRASHES
        now = time.monotonic()
        culprits = {i for i in w.ids if blamed and now - self._deaths.get(i, -1e9) < CULPRIT_WINDOW}
        for i in w.ids if blamed else ():
            self._deaths[i] = now
        for i in w.ids:
            left = [s for s in self._holders.get(i, ()) if s != slot]
            if left:
                self._holders[i] = left  # a copy of a head lives on
            else:
                self._holders.pop(i, None)  # its state died with the worker
        self._watch()
        log.warning(
            "worker %d (pid %d) %s; %d modules restart on a spare",
            slot,
            w.proc.pid,
            how,
            len(w.ids - culprits),
        )
        for i in culprits:
            if i in self.nodes:
                self.disabled.add(i)
                self.faults[i] = (
                    f"{self.nodes[i].label()} was on two workers that died within "
                    f"{CULPRIT_WINDOW:g} s (the last {how}); it is muted, the rest plays on"
                )
        self._reassign = True
        self._failed = True
        self._generation += 1  # a patch the workers were preparing is void
        for other in self._slots:
            if other is not None:
                other.switch = None

    def _adopt(self) -> None:
        """Fill empty slots with ready spares; reassign if a slot filled or a worker died.

        Until a spare is ready, a dead worker's modules go to the surviving workers.
        """
        filled = False
        for slot, w in enumerate(self._slots):
            if w is None:
                spare = self._take_spare()
                if spare is None:
                    break
                self._slots[slot] = spare
                filled = True
        if filled or self._reassign:
            self._reassign = False
            self._assign()

    # -- the Renderer interface ---------------------------------------------------------------

    def set(self, node_id: int, name: str, value: Any, ramp: bool = False) -> None:
        """Change a parameter on the worker rendering ``node_id`` (sent with the next block)."""
        spec = self.nodes.get(node_id)
        if spec is None:
            raise PatchError(f"module #{node_id} is not in this patch")
        was = spec.values.get(name)
        spec.values[name] = value
        if isinstance(value, tuple) or isinstance(was, tuple):
            self._assign()
            return
        self._changed.add((node_id, name))
        for slot in self._holders.get(node_id, ()):
            w = self._slots[slot]
            if w is not None:
                w.sets.append((node_id, name, value, ramp))

    def define_type(self, name: str, blob: bytes) -> None:
        """Keep a module class for the workers; each loads it with its next patch."""
        self.types[name] = blob

    def column_of(self, output: tuple[int, int]) -> int | None:
        """The shared-bus column a worker copies this output to (for a scope tap).

        An output no worker exports yet is noted, and a division of the patch
        prepared off the block thread (:attr:`rebalance_wanted`, as for measured
        costs) has its worker copy it there; the tap reads it from then on.
        """
        col = self._watched.get(output)
        if col is None and output not in self._wanted:
            self._wanted.add(output)
            self.rebalance_wanted = True  # not a rebuild inside this block
        return col

    def revive(self, ids: Iterable[int]) -> None:
        """Unmute modules whose code was replaced; they render again from the next update."""
        for i in ids:
            self.disabled.discard(i)
            self.faults.pop(i, None)
            self._revived.add(i)

    def update(
        self, nodes: dict[int, NodeSpec], outputs: list[tuple[int, int, int]], fade: int = 0
    ) -> None:
        """Replace the patch; modules that stay (or move) keep their state.

        ``fade`` crossfades over that many frames, as :meth:`Renderer.update` does:
        leaving outputs fade out, arriving ones in, then what only the old patch
        used is dropped.
        """
        self._fade, self.nodes, self.outputs = Crossfade.begin(
            self.nodes, self.outputs, nodes, outputs, int(fade)
        )
        self.disabled &= set(self.nodes)
        for i in [i for i in self.faults if i not in self.nodes]:
            del self.faults[i]  # freed: an id used again is a new module
        self._assign()

    def _watch(self) -> None:
        """Poll the sockets of the workers rendering now (after any slot change)."""
        for fd in self._polled:
            try:
                self._poller.unregister(fd)
            except (KeyError, ValueError):
                pass
        self._polled = {}
        for slot, w in enumerate(self._slots):
            if w is not None:
                fd = w.wire.fileno()
                self._poller.register(fd, select.POLLIN)
                self._polled[fd] = slot

    def _assign(self) -> None:
        # a worker dying meanwhile changes the slots: assign again (a few times at most)
        for _ in range(self._n + 1):
            self._failed = False
            self._assign_once()
            if not self._failed:
                return

    def _assign_once(self) -> None:
        self._watch()
        layout = self._layout(self.nodes, self.outputs, self._fade, self._generation)
        self._commit(layout, wait=True)

    def _layout(
        self,
        nodes: dict[int, NodeSpec],
        outputs: list[tuple[int, int, int]],
        fade: Crossfade | None,
        generation: int,
    ) -> _Layout:
        """Who renders what and where it goes on the shared bus (changes nothing here)."""
        lay = _Layout(nodes, outputs, fade, generation)
        live = {i: s for i, s in nodes.items() if i not in self.disabled}
        open_slots = [s for s, w in enumerate(self._slots) if w is not None]
        lay.slots = open_slots
        previous = {i: slots[0] for i, slots in self._holders.items()}
        costs = dict(self.costs)
        shares: dict[int, Share] = assign(live, open_slots, previous, costs=costs)
        for spec in live.values():
            if spec.kernel in (PYTHON_KERNEL, SAMPLE_KERNEL):  # see _note_costs
                n, w = lay.weights.get(spec.type, (0, 0.0))
                lay.weights[spec.type] = (n + 1, w + weight(spec, costs))
        holders: dict[int, list[int]] = {}
        for slot in open_slots:
            for i in sorted(shares[slot].body | shares[slot].tail):
                holders.setdefault(i, []).append(slot)
        lay.holders = holders
        # columns on the shared bus: each worker's in its own range
        taken = {s: 0 for s in open_slots}

        def column(slot: int) -> int:
            if taken[slot] >= MAX_OUTPUTS_PER_WORKER:
                raise PatchError(
                    f"more than {MAX_OUTPUTS_PER_WORKER} output channels on one worker; "
                    "mix them in the patch (Mix) and output the mix"
                )
            taken[slot] += 1
            return slot * MAX_OUTPUTS_PER_WORKER + taken[slot]

        routes: dict[int, dict[str, list]] = {
            s: {"body": [], "tail": []} for s in open_slots
        }  # (id, port, channels, column) each renderer writes; channels 0: a copy only
        # (a voice for a tail, a tapped output), not summed into the worker's NaN check
        for oid, port, chans in outputs:
            col = 0
            if oid in holders:
                slot = holders[oid][0]
                col = column(slot)
                role = "tail" if oid in shares[slot].tail else "body"
                routes[slot][role].append((oid, port, chans, col))
            if chans == 1:
                lay.left.append(col)
                lay.right.append(col)
            elif port == 0:
                lay.left.append(col)
            else:
                lay.right.append(col)
        wanted = self._wanted.copy()  # the block thread may add to it
        for key in sorted(k for k in wanted if k[0] in nodes):
            if key[0] in holders:
                slot = holders[key[0]][0]
                role = "tail" if key[0] in shares[slot].tail else "body"
                lay.watched[key] = column(slot)
                routes[slot][role].append((key[0], key[1], 0, lay.watched[key]))
        exported: dict[tuple[int, int, int], int] = {}
        for slot in open_slots:
            for src, port in shares[slot].exports:
                col = column(slot)
                exported[(src, port, slot)] = col
                # a chunk sum is checked for NaN where it is made: the culprit is a voice
                # there (a voice copied whole is checked by the tail, under its name)
                routes[slot]["body"].append((src, port, 1 if src < 0 else 0, col))
        types = module_types()
        for slot in open_slots:
            share = shares[slot]
            body = routes[slot]["body"]
            tail = routes[slot]["tail"]
            t_nodes: dict[int, NodeSpec] = {i: share.spec(i, live) for i in share.tail}
            imports = []
            for src, port, home in share.imports:
                if src not in t_nodes:
                    made = shares[home].spec(src, live)
                    chans = types[made.type].channels
                    # named as the module: a NaN it carries is reported under its name
                    t_nodes[src] = NodeSpec(
                        src, import_type(chans), "bus.hold", {}, name=made.label()
                    )
                imports.append((src, port, exported[(src, port, home)]))
            lay.ids[slot] = share.body | share.tail
            lay.payload[slot] = messages.Share(
                messages.Part(
                    {i: share.spec(i, live) for i in share.body},
                    [(i, p, c) for i, p, c, _ in body],
                    [col for *_, col in body],
                ),
                messages.Part(
                    t_nodes, [(i, p, c) for i, p, c, _ in tail], [col for *_, col in tail]
                ),
                imports,
                messages.Place(
                    slot,
                    [s for s in open_slots if s != slot] if share.tail else [],
                    [s for s in open_slots if s != slot and shares[s].tail],
                ),
            )
        return lay

    def _commit(self, lay: _Layout, wait: bool, carried: States | None = None) -> bool:
        """Install a layout: now (``wait``: the workers rebuild while the engine waits) or,
        for a layout the workers prepared already (:meth:`prepare`), with the next block.

        ``carried``: states of modules arriving from another renderer (``auto``'s move).
        False: a prepared layout was declined, nothing changed: a worker died while the
        states of the modules moving were gathered (the caller builds the patch again).
        """
        # modules arriving on a worker take their state from where they were
        moving = []
        for i, slots in lay.holders.items():
            old = [s for s in self._holders.get(i, ()) if self._slots[s] is not None]
            if old and any(s not in old for s in slots):
                moving.append(i)
        found = (carried or States()).then(self.export_state(moving))
        if not wait and self._generation != lay.generation:
            # a worker died answering: the survivors' rebuild (messages.Rebuild) voids what they
            # prepared, so a switch sent after it would find nothing to switch to
            return False
        arrived = found.ids()
        for slot in lay.slots:
            w = self._slots[slot]
            if w is None:
                continue  # died meanwhile: the caller assigns again
            ids = lay.ids[slot]
            states = found.only(
                i for i in ids if i in arrived and slot not in self._holders.get(i, ())
            )
            w.ids = ids
            w.tail = bool(lay.payload[slot].tail.nodes)
            if wait:
                w.switch = None  # the rebuild voids the patch it prepared
                w.sets = []  # the specs sent now carry every value
                new_types = {n: b for n, b in self.types.items() if w.types.get(n) is not b}
                msg = messages.Rebuild(lay.payload[slot], states, new_types, sorted(self._revived))
                if self._request(slot, msg):
                    w.types.update(new_types)
            else:
                # set since the workers prepared: the new holders get the values again
                sets = [
                    (i, name, self.nodes[i].values[name], False)
                    for i, name in lay.changed
                    if i in ids and i in self.nodes and name in self.nodes[i].values
                ]
                sets += [(i, name, v, False) for i, name, v in lay.values if i in ids]
                w.switch = (states, sets)
        if wait:
            self._revived.clear()
            self._changed.clear()
        self.nodes = lay.nodes
        self.outputs = lay.outputs
        self._fade = lay.fade
        self._assumed = lay.weights
        self._holders = {
            i: [s for s in slots if self._slots[s] is not None] for i, slots in lay.holders.items()
        }
        self._tails = [s for s in lay.slots if self._slots[s] is not None and self._slots[s].tail]
        self._left = np.asarray(lay.left, dtype=np.int64)
        self._right = np.asarray(lay.right, dtype=np.int64)
        self._wanted = {k for k in self._wanted if k[0] in self.nodes}
        self._watched = dict(lay.watched)
        if self._fade is not None:
            self._lanes = self._fade.lanes(self.outputs)
        self._generation += 1
        return True

    # -- changes prepared off the block thread ------------------------------------------------

    def prepare(
        self, nodes: dict[int, NodeSpec], outputs: list[tuple[int, int, int]], fade: int = 0
    ) -> _Layout:
        """Have the workers build the new patch while they keep playing the old one.

        Called on another thread than :meth:`process` (the engine's preparer).
        The division of the patch is computed here; the workers compile their
        shares on threads of their own (numba's compile of a new per-sample
        function takes a second) and report when they are ready, with the
        blocks they render meanwhile.  :meth:`apply` then switches every
        worker at the same block.  A worker that dies meanwhile makes the plan
        stale: :meth:`apply` then declines it, and the engine prepares again.
        """
        generation = self._generation
        cur_nodes, cur_outputs = self.nodes, self.outputs
        fading, new_nodes, new_outputs = Crossfade.begin(
            cur_nodes, cur_outputs, nodes, outputs, int(fade)
        )
        lay = self._layout(new_nodes, new_outputs, fading, generation)
        lay.request = (nodes, outputs, int(fade))
        revived = lay.revived = sorted(self._revived)
        lay.messages = {
            slot: pickle.dumps(
                messages.Build(lay.payload[slot], dict(self.types), revived), protocol=5
            )
            for slot in lay.slots
        }
        lay.done = threading.Event()
        self._preparing = lay
        deadline = time.monotonic() + _START_TIMEOUT
        while not lay.done.wait(0.05):
            if self._generation != generation or time.monotonic() > deadline or lay.abandoned:
                break
        if self._preparing is lay:
            self._preparing = None
        return lay

    def abandon_prepare(self) -> None:
        """Stop waiting for the division being prepared (:meth:`prepare` returns it unready).

        The engine abandons a division for measured costs when an edit arrives:
        on a loaded machine the workers may take seconds to build it, and the
        edit would wait for that.  The edit's own layout uses the costs anyway.
        """
        lay = self._preparing
        if lay is not None:
            lay.abandoned = True

    def apply(
        self,
        plan: _Layout,
        redo: bool = True,
        carried: States | None = None,
        values: Iterable[tuple[int, str, Any]] = (),
    ) -> bool:
        """Switch to a prepared patch with the next block (see :meth:`prepare`).

        ``carried`` and ``values``: the states of modules arriving from another
        renderer, and the numbers ``(id, name, value)`` set there since the plan
        was prepared.
        """
        if plan.generation != self._generation or not plan.ready:
            if not redo:
                return False
            self.update(*plan.request)
            return True
        plan.changed = set(self._changed)
        plan.values = list(values)
        if not self._commit(plan, wait=False, carried=carried):
            if not redo:
                return False
            self.update(*plan.request)
            return True
        self._changed.clear()
        self._revived.difference_update(plan.revived)
        self.disabled &= set(self.nodes)
        for i in [i for i in self.faults if i not in self.nodes]:
            del self.faults[i]
        return True

    def _end_fade(self) -> None:
        """A crossfade ended: from the next block, mix only the outputs it faded to.

        The modules only the old patch used render on, unheard, until a division of
        the new patch, prepared off the block thread (:attr:`rebalance_wanted`),
        drops them; rebuilding the workers here would hold the block for every
        worker's rebuild (4-16 blocks measured with two workers).
        """
        outputs = self._fade.outputs
        cols: dict[tuple[int, int, int], tuple[int, int]] = {}
        li = ri = 0
        for o in self.outputs:  # the columns _layout gave each output, in its order
            if o[2] == 1:
                cols[o] = (int(self._left[li]), int(self._right[ri]))
                li, ri = li + 1, ri + 1
            elif o[1] == 0:
                cols[o] = (int(self._left[li]), 0)
                li += 1
            else:
                cols[o] = (0, int(self._right[ri]))
                ri += 1
        left = [cols[o][0] for o in outputs if o[2] == 1 or o[1] == 0]
        right = [cols[o][1] for o in outputs if o[2] == 1 or o[1] != 0]
        self._left = np.asarray(left, dtype=np.int64)
        self._right = np.asarray(right, dtype=np.int64)
        self.outputs = list(outputs)
        self._fade = None
        self._generation += 1  # a plan prepared during the fade would fade again
        self.rebalance_wanted = True

    def _note_costs(self, costs: dict[str, tuple[float, int]]) -> None:
        """Take a worker's measured costs; ask for a new division if the layout is far off.

        The layout is divided again when a type's measured weight is more than
        twice or less than half of what the layout assumed, and that changes
        the patch's weight by at least half of :data:`~.split.SPLIT_WEIGHT`
        (at most every :data:`REBALANCE_SECONDS`).  Only types written in a
        cell count here: their guessed weight can be off a hundredfold, while
        a built-in one is off by at most a few times, and its measurement
        moves that much with the machine's load (a P3 bank was divided again
        every two seconds).  Every layout made for an edit uses all costs.
        """
        for name, (spent, frames) in costs.items():
            if frames > 0:
                w = spent / frames * 1e9 / NS_PER_UNIT
                old = self.costs.get(name)
                self.costs[name] = w if old is None else 0.5 * (old + w)
        if self._n < 2 or self._fade is not None or self.rebalance_wanted:
            return
        if time.monotonic() - self._rebalanced < REBALANCE_SECONDS:
            return
        for name in costs:
            count, assumed = self._assumed.get(name, (0, 0.0))
            now = count * self.costs.get(name, 0.0)
            if count and (now > 2 * assumed or 2 * now < assumed):
                if abs(now - assumed) >= SPLIT_WEIGHT / 2:
                    self._rebalanced = time.monotonic()
                    self.rebalance_wanted = True
                    log.info("module costs measured (%s): dividing the patch again", name)
                    return

    def _ready(self, slot: int) -> None:
        lay = self._preparing
        if lay is not None and lay.generation == self._generation:
            lay.ready_slots.add(slot)
            if lay.ready_slots >= set(lay.slots):
                lay.ready = True
                lay.done.set()

    def export_state(self, ids: Iterable[int]) -> States:
        """Copies of the state of modules ``ids`` from the workers rendering them.

        One request to each worker holding any, all sent before any reply is
        read; as :meth:`Renderer.export_state <jupysynth.renderer.Renderer.export_state>`.
        """
        asked: dict[int, list[int]] = {}
        for i in ids:
            slots = [s for s in self._holders.get(i, ()) if self._slots[s] is not None]
            if slots:
                asked.setdefault(slots[0], []).append(i)
        sent = []
        for slot, mine in asked.items():
            self._catch_up(slot, WORKER_DEADLINE)  # its late blocks' replies come first
            if self._slots[slot] is None:
                continue
            try:
                self._slots[slot].wire.send(pickle.dumps(messages.Export(mine)))
                sent.append(slot)
            except OSError as exc:
                self._fail(slot, f"broke its pipe ({exc})")
        found = States()
        deadline = time.monotonic() + WORKER_DEADLINE * 4
        for slot in sent:
            w = self._slots[slot]
            if w is None:
                continue
            try:
                if select.select([w.wire], [], [], max(0.0, deadline - time.monotonic()))[0]:
                    found = found.then(pickle.loads(w.wire.recv()))
                    continue
                why = "did not answer Export"
            except (EOFError, OSError) as exc:
                why = f"broke its pipe ({exc})"
            self._fail(slot, why)
        return found

    def _request(self, slot: int, msg: messages.Rebuild) -> bytes | None:
        """Send a rebuild and wait for its reply; a worker that fails it is replaced."""
        if self._slots[slot] is not None:
            self._catch_up(slot, WORKER_DEADLINE)  # its late blocks' replies come first
        w = self._slots[slot]
        if w is None:
            return None
        try:
            w.wire.send(pickle.dumps(msg))
            if select.select([w.wire], [], [], _START_TIMEOUT)[0]:
                return w.wire.recv()
            why = f"did not answer {type(msg).__name__}"
        except (EOFError, OSError) as exc:
            why = f"broke its pipe ({exc})"
        self._fail(slot, why)
        return None

    def _answer(self, slot: int) -> bool:
        """Read one block's reply from the worker in ``slot``; False if it died."""
        w = self._slots[slot]
        try:
            reply = w.wire.recv()
        except (EOFError, OSError):
            self._fail(slot, "died")
            return False
        if reply == messages.DONE:
            pass
        elif reply == messages.DONE_READY:  # and the share it was building is ready
            self._ready(slot)
        else:
            got: messages.Report = pickle.loads(reply)
            # a chunk of a split Mix is reported as that Mix
            faults = {owner_of(i): text for i, text in got.faults.items()}
            self.faults.update(faults)
            # muted where it was caught; left out of the next division too
            self.disabled.update(i for i in faults if i in self.nodes)
            if got.ready:
                self._ready(slot)
            if got.costs:
                self._note_costs(got.costs)
        return True

    def _catch_up(self, slot: int, wait: float) -> None:
        """Read the replies of a worker that was late, waiting up to ``wait`` seconds;
        one behind for :data:`WORKER_DEADLINE` is killed as hung."""
        w = self._slots[slot]
        end = time.monotonic() + wait
        while w.unanswered:
            left = end - time.monotonic()
            try:
                if not select.select([w.wire], [], [], max(0.0, left))[0]:
                    if time.monotonic() - w.unanswered[0] >= WORKER_DEADLINE:
                        self._fail(slot, f"missed its {WORKER_DEADLINE * 1e3:.0f} ms deadline")
                    return
            except (OSError, ValueError):
                self._fail(slot, "died")
                return
            if not self._answer(slot):
                return
            w.unanswered.popleft()

    def process(
        self,
        frames: int,
        events: Sequence[tuple[int, int, str, Any]] = (),
        due: Callable[[], float] | None = None,
    ) -> np.ndarray:
        """Render ``frames`` on every worker at once and mix their outputs in order.

        Every worker renders its body and raises its "done" flag in shared
        memory; a worker with a tail waits for the other workers' flags, then
        renders the tail from the voices on the shared bus.

        ``due``: seconds left until the device needs this block, asked again while
        waiting (None: no one listens live; wait for every worker up to
        :data:`WORKER_DEADLINE`).  A worker that has not answered by then is
        late: its part of this block is silence, the rest plays on time, and it
        renders every block it was sent, so its voices keep their time when it
        catches up.  One that stays behind
        for :data:`WORKER_DEADLINE` is killed as hung.
        """
        if self._reassign or (None in self._slots and self._spare_ready()):
            self._adopt()
        slots = self._slots
        for slot, w in enumerate(slots):
            if w is not None and w.unanswered:
                self._catch_up(slot, 0.0)
        slots = self._slots
        if events:
            per: dict[int, list] = {}
            for ev in events:
                for slot in self._holders.get(ev[1], ()):
                    per.setdefault(slot, []).append(ev)
                self.nodes[ev[1]].values[ev[2]] = ev[3]
        self._seq = seq = (self._seq + 1) & 0xFFFFFFFF
        plain = messages.plain_block(frames, seq)
        sent_at = time.monotonic()
        waiting: set[int] = set()  # slots whose part of this block is not here yet
        for slot, w in enumerate(slots):
            if w is None:
                continue
            mine = per.get(slot) if events else None
            try:
                if w.switch is not None:
                    states, again = w.switch
                    w.switch = None
                    msg = messages.Block(frames, again + w.sets, mine or [], seq, states)
                    w.wire.send(pickle.dumps(msg))
                    w.sets = []
                elif mine or w.sets:
                    w.wire.send(pickle.dumps(messages.Block(frames, w.sets, mine or [], seq)))
                    w.sets = []
                else:
                    w.wire.send(plain)
            except OSError as exc:
                self._fail(slot, f"broke its pipe ({exc})")
                continue
            w.unanswered.append(sent_at)
            waiting.add(slot)
        # a patch to build comes after this block's request, which may switch a worker to
        # the patch prepared before it: sent first, it would replace that one unbuilt
        lay = self._preparing
        if lay is not None and not lay.sent and lay.generation == self._generation:
            lay.sent = True  # the workers build it while they render (no reply)
            for slot, data in lay.messages.items():
                w = slots[slot]
                if w is None:
                    continue
                try:
                    w.wire.send(data)
                except OSError as exc:
                    self._fail(slot, f"broke its pipe ({exc})")
                    waiting.discard(slot)  # it was sent its block: no reply will come
        hung = sent_at + WORKER_DEADLINE
        while waiting:
            left = hung - time.monotonic()
            if due is None:
                ms = max(0, int(left * 1000.0 + 0.999))
            else:
                # asked again each ms: the estimate improves as the device reads its ring
                left = min(left, due() - _DUE_MARGIN)
                if left <= 0:
                    break
                # under a ms left: poll without sleeping (a sleep overshoots by as much)
                ms = min(int(left * 1000.0), int(_DUE_SLICE * 1000))
            ready = self._poller.poll(ms)
            if not ready:
                if due is not None or time.monotonic() < hung:
                    continue  # woken early (the poll rounds to whole ms), or ask due again
                break
            for fd, _ in ready:
                slot = self._polled.get(fd)
                if slot is None or slot not in waiting or slots[slot] is None:
                    continue
                if self._answer(slot):
                    slots[slot].unanswered.popleft()
                    if not slots[slot].unanswered:
                        waiting.discard(slot)
                else:
                    waiting.discard(slot)
        late = []
        for slot in waiting:
            w = slots[slot]
            if w is None:
                continue
            if time.monotonic() - w.unanswered[0] >= WORKER_DEADLINE:
                self._fail(slot, f"missed its {WORKER_DEADLINE * 1e3:.0f} ms deadline")
                continue
            late.append(slot)
        left, right = self._left, self._right
        back = (
            [s for s in self._was_late if s not in late and slots[s] is not None]
            if (self._was_late)
            else ()
        )
        if late or back:
            lslot = (left - 1) // MAX_OUTPUTS_PER_WORKER
            rslot = (right - 1) // MAX_OUTPUTS_PER_WORKER
        if late:
            self.late_parts += 1
            # its columns read as column 0, which stays zero: silence, in the same places
            left = np.where(np.isin(lslot, late) & (left > 0), 0, left)
            right = np.where(np.isin(rslot, late) & (right > 0), 0, right)
        if self._fade is not None:
            if self._fade.mix(0, frames, self.bus, left, right, self._lanes, self.out):
                self._end_fade()
        elif back:
            # a part late in the last block fades in over this one (mode 2: in)
            lmode = np.where(np.isin(lslot, back) & (left > 0), 2, 0)
            rmode = np.where(np.isin(rslot, back) & (right > 0), 2, 0)
            _MIX_OUT_FADE(0, frames, self.bus, left, right, lmode, rmode, 0, frames, self.out)
        else:
            _MIX_OUT(0, frames, self.bus, left, right, self.out)
        for slot in late:
            if slot not in self._was_late:  # stopped arriving: fade out what it played
                _RAMP_OUT(self.out, frames, self._ends[slot, 0], self._ends[slot, 1])
        if late or self._was_late:
            self._was_late = set(late)
        _LANE_ENDS(self.bus, frames - 1, left, right, MAX_OUTPUTS_PER_WORKER, self._ends)
        if not _ALL_FINITE(self.out, 0, frames):
            # every module's own NaN is caught in its worker; this is a sum overflowing
            np.nan_to_num(self.out[:frames], copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        self.frame += frames
        return self.out[:frames]
