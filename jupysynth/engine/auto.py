"""``Engine(workers="auto")``: render in this process until a worker pool pays.

A worker pool costs a hand-off per block (a message to each worker, its
reply, the shared bus): for a light patch that is more than the patch
itself (P3 x 1024 voices at block 128: 0.20 of the block in-process, 0.26
with one worker, 0.42 with eight), and on a machine with two cores the
workers only take time from each other.  So :class:`AutoRenderer` renders in
the engine process and measures what each block costs there; when a patch
keeps the block thread busy for more than :data:`UP_LOAD` of the block time
and the machine has the cores for at least two workers, the patch moves to
a pool.  It moves back when the pool does not render it in less than
:data:`PAYS` of what it cost here, or when the patch has become light
(:data:`DOWN_LOAD`).

A move never changes a sample.  The new renderer builds the patch off the
block thread, with the edit path's own prepare (the engine's preparer asks
for it as for a division of the patch for measured costs: ``rebalance_wanted``),
and at a block boundary every module's state is copied from the renderer
that played it to the one that takes over (the pool's switch message carries
it to the workers; back, the workers are asked for it), so an oscillator
goes on from the phase it reached: the output equals :func:`jupysynth.render`
sample for sample across any number of moves.  What the move costs the block
where it happens is one copy of the patch's state (measured and printed by
``benchmarks/auto.py``).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from ..graph import NodeSpec
from ..renderer import Renderer

__all__ = ["DOWN_LOAD", "PAYS", "UP_LOAD", "AutoRenderer"]

log = logging.getLogger("jupysynth.engine")

#: Share of the block time the in-process render may take before a pool is tried.
UP_LOAD = 0.5
#: The pool stays only if it renders a block in less than this share of the in-process time.
PAYS = 0.8
#: Estimated in-process load under which the pool steps aside.
DOWN_LOAD = 0.25
#: Seconds of blocks each measurement takes.
WINDOW_SECONDS = 1.0
#: Seconds before a pool that did not pay is tried again for a heavier patch.
RETRY_SECONDS = 30.0
#: Load each worker is planned to carry, as a share of the block time.
PER_WORKER = 0.25
#: Most workers ``auto`` starts.
MAX_AUTO_WORKERS = 8


def usable_cores() -> int:
    """Cores this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class _Handover:
    """A patch built by the renderer that is to take over, for :meth:`AutoRenderer.apply`."""

    def __init__(self, target: Any, plan: Any, basis: int, disabled: frozenset[int]) -> None:
        self.target = target
        self.plan = plan
        self.basis = basis  # the playing renderer's generation when it was built
        self.disabled = disabled  # the modules muted then


class AutoRenderer:
    """A :class:`~jupysynth.renderer.Renderer` that hands its patch to a worker pool when
    that pays, and takes it back when it stops paying (see the module docstring).

    Parameters
    ----------
    local : Renderer
        The in-process renderer (with its sandbox for cell code, as the engine makes it).
    make_pool : callable
        ``make_pool(workers)`` returns a started
        :class:`~jupysynth.engine.workers.PoolRenderer`; called off the block
        thread the first time a pool is tried.
    cores : int, optional
        Cores to plan for (default: this process's affinity).
    up_load : float, optional
        Load that makes a pool worth trying (default :data:`UP_LOAD`).
    """

    def __init__(
        self,
        local: Renderer,
        make_pool: Callable[[int], Any],
        cores: int | None = None,
        up_load: float = UP_LOAD,
    ) -> None:
        self.local = local
        self.pool: Any = None
        self.active: Any = local
        self._make_pool = make_pool
        self.cores = int(cores) if cores is not None else usable_cores()
        self.up_load = float(up_load)
        self.samplerate = local.samplerate
        self.types: dict[str, bytes] = {}  # for a pool made later
        # the measurement: seconds spent and frames rendered in the current window
        self._spent = 0.0
        self._frames = 0
        self._window = int(WINDOW_SECONDS * local.samplerate)
        self.load = 0.0  # the last window's load of the active renderer
        self._want: int | None = None  # workers to move to (0: back here), when wanted
        self._local_load = 0.0  # in-process load when the patch moved to the pool
        self._local_count = 0  # the patch's modules then
        self._settle = 0  # windows to skip after a move (kernels warm, caches fill)
        self._refused_until = 0.0  # monotonic time before which no pool is tried
        self._refused_load = math.inf  # ... unless the load grows beyond this
        self._since: set[tuple[int, str]] = set()  # numbers set while a move is built
        self._building = False
        self.moves = 0  # moves made, either way

    # -- what the engine core reads ---------------------------------------------------------

    @property
    def in_process(self) -> bool:
        return self.active is self.local

    @property
    def nodes(self) -> dict[int, NodeSpec]:
        return self.active.nodes

    @property
    def outputs(self) -> list[tuple[int, int, int]]:
        return self.active.outputs

    @property
    def faults(self) -> dict[int, str]:
        return self.active.faults

    @property
    def disabled(self) -> set[int]:
        return self.active.disabled

    def column_of(self, output: tuple[int, int]) -> int | None:
        return self.active.column_of(output)

    @property
    def bus(self) -> np.ndarray:
        return self.active.bus

    @property
    def sandbox(self) -> Any:
        return self.local.sandbox

    @property
    def workers(self) -> int:
        """Worker processes rendering now (0: the patch renders in this process)."""
        return 0 if self.active is self.local else self.pool.workers

    @property
    def restarts(self) -> int:
        return self.pool.restarts if self.pool is not None else 0

    @property
    def late_parts(self) -> int:
        return self.pool.late_parts if self.pool is not None else 0

    def pids(self) -> list[int]:
        return self.pool.pids() if self.pool is not None else []

    @property
    def rebalance_wanted(self) -> bool:
        return self.active.rebalance_wanted or (self._want is not None and not self._building)

    @rebalance_wanted.setter
    def rebalance_wanted(self, value: bool) -> None:
        # the engine clears it as it starts a prepare; a wanted move is that prepare
        self.active.rebalance_wanted = value

    # -- the renderer interface ----------------------------------------------------------------

    def process(
        self,
        frames: int,
        events: Sequence[tuple[int, int, str, Any]] = (),
        due: Callable[[], float] | None = None,
    ) -> np.ndarray:
        t = time.perf_counter()
        out = self.active.process(frames, events, due)
        self._spent += time.perf_counter() - t
        self._frames += frames
        if self._frames >= self._window:
            self._measured(self._spent * self.samplerate / self._frames)
            self._spent, self._frames = 0.0, 0
        return out

    def set(self, node_id: int, name: str, value: Any, ramp: bool = False) -> None:
        self.active.set(node_id, name, value, ramp)
        if self._building:
            self._since.add((node_id, name))

    def define_type(self, name: str, blob: bytes) -> None:
        self.types[name] = blob
        if self.pool is not None:
            self.pool.define_type(name, blob)

    def revive(self, ids: Iterable[int]) -> None:
        ids = list(ids)
        self.local.revive(ids)
        if self.pool is not None:
            self.pool.revive(ids)

    def update(
        self, nodes: dict[int, NodeSpec], outputs: list[tuple[int, int, int]], fade: int = 0
    ) -> None:
        if not nodes and self.active is not self.local:
            # nothing left to render (a panic, the last stop): nothing to carry back
            self.local.update({}, [])
            self.local.disabled.clear()
            self.local.faults.clear()
            self._moved(self.local, 0)
            return
        self.active.update(nodes, outputs, fade)

    def prepare(
        self, nodes: dict[int, NodeSpec], outputs: list[tuple[int, int, int]], fade: int = 0
    ) -> Any:
        """Build an edit on the playing renderer, or, for a wanted move, on the other one.

        A move is built only for the same patch (``fade`` 0, as the engine asks
        for a division for measured costs); an edit meanwhile is prepared on the
        renderer that plays, and the move comes after it.
        """
        want = self._want
        if want is None or fade or self._building:
            return self.active.prepare(nodes, outputs, fade)
        self._building = True
        self._since.clear()
        basis = self._generation_of(self.active)
        disabled = frozenset(self.active.disabled)
        try:
            if want == 0:
                target = self.local
                target.update({}, [])  # idle: whatever it held is stale
                target.disabled = set(disabled)
                target.faults = dict(self.active.faults)
                plan = target.prepare(nodes, outputs, 0)
            else:
                if self.pool is None:
                    self.pool = self._make_pool(want)
                    for name, blob in self.types.items():
                        self.pool.define_type(name, blob)
                target = self.pool
                target.update({}, [])  # idle: whatever it held is stale
                target.disabled = set(disabled)
                target.faults = dict(self.active.faults)
                plan = self._prepare_idle_pool(nodes, outputs)
        except Exception:
            log.warning("moving the patch to %s failed; it plays on here", _where(want))
            self._building = False
            self._want = None
            self._refused_until = time.monotonic() + RETRY_SECONDS
            raise
        return _Handover(target, plan, basis, disabled)

    def _prepare_idle_pool(
        self, nodes: dict[int, NodeSpec], outputs: list[tuple[int, int, int]]
    ) -> Any:
        """The pool's prepare, which learns that its workers are ready from their block
        replies: while the pool plays nothing, silent blocks carry them (this thread)."""
        pool = self.pool
        stop = threading.Event()

        def tick() -> None:
            while not stop.wait(0.005):
                pool.process(pool.blocksize)

        ticker = threading.Thread(target=tick, name="jupysynth-auto-tick", daemon=True)
        ticker.start()
        try:
            return pool.prepare(nodes, outputs, 0)
        finally:
            stop.set()
            ticker.join()

    def abandon_prepare(self) -> None:
        self.active.abandon_prepare()
        if self.pool is not None and self._building:
            self.pool.abandon_prepare()

    def apply(self, plan: Any, redo: bool = True) -> bool:
        """Install an edit, or make a prepared move at this block boundary."""
        if not isinstance(plan, _Handover):
            return self.active.apply(plan, redo)
        self._building = False
        self._want = None
        src, dst = self.active, plan.target
        if (
            dst is src
            or self._generation_of(src) != plan.basis
            or frozenset(src.disabled) != plan.disabled
        ):
            return False  # the patch changed meanwhile: measured again, asked again
        since = [(i, n, src.nodes[i].values.get(n)) for i, n in self._since if i in src.nodes]
        if dst is self.local:
            states = src.export_state(src.nodes)
            if not dst.apply(plan.plan, redo=False):
                return False
            dst.import_state(states)
            for i, name, value in since:
                dst.keep_value(i, name, value)
            workers = 0
        else:
            states = src.export_state(src.nodes)
            if not dst.apply(plan.plan, redo=False, carried=states, values=since):
                return False
            workers = dst.workers
        self._moved(dst, workers)
        return True

    def close(self) -> None:
        self.local.close()
        if self.pool is not None:
            self.pool.close()

    # -- deciding ----------------------------------------------------------------------------------

    def want(self, workers: int) -> None:
        """Ask for a move to ``workers`` workers (0: this process) at the next prepare,
        whatever the load says (benchmarks/auto.py times the move itself)."""
        if (workers == 0) != (self.active is self.local):
            self._want = int(workers)

    def _moved(self, dst: Any, workers: int) -> None:
        was = self.load
        if dst is not self.local:
            self._local_load = was
            self._local_count = len(self.local.nodes)
        self.active = dst
        self.moves += 1
        self._settle = 1
        self._spent, self._frames = 0.0, 0
        if workers:
            log.info(
                "the patch takes %.2f of the block in this process: it renders on %d workers now",
                was,
                workers,
            )
        else:
            log.info("the patch renders in the engine process again (load was %.2f)", was)

    def _workers_for(self, load: float) -> int:
        return min(self.cores - 1, MAX_AUTO_WORKERS, max(2, math.ceil(load / PER_WORKER)))

    def _measured(self, load: float) -> None:
        """One window's load of the active renderer: decide whether the patch should move."""
        self.load = load
        if self._settle:
            self._settle -= 1
            return
        if self._want is not None or self._building:
            return
        if self.active is self.local:
            if load < self.up_load or self._workers_for(load) < 2:
                return
            if time.monotonic() < self._refused_until and load < self._refused_load:
                return
            self._want = self._workers_for(load)
            return
        # on the pool: what would the patch cost in this process now?
        # scaled by the modules it has now (a count: nothing on this thread may walk them)
        n_then = self._local_count
        here = self._local_load * (len(self.active.nodes) / n_then if n_then else 1.0)
        if load >= PAYS * here:
            self._refused_until = time.monotonic() + RETRY_SECONDS
            self._refused_load = 1.5 * here
            log.info(
                "%d workers take %.2f of the block where this process took %.2f: "
                "the patch comes back",
                self.active.workers,
                load,
                here,
            )
            self._want = 0
        elif here < DOWN_LOAD:
            self._want = 0

    @staticmethod
    def _generation_of(renderer: Any) -> int:
        return renderer.generation


def _where(workers: int) -> str:
    return f"{workers} workers" if workers else "the engine process"
