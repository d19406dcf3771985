"""The engine's block clock: OSC messages in, one rendered block out, on time.

:class:`EngineCore` owns the patch table, the :class:`~jupysynth.render.Renderer`,
the frame counter and the queue of scheduled messages.  The OSC thread calls
:meth:`EngineCore.submit`; the audio driver calls :meth:`EngineCore.render_block`
once per block and never waits on anything else.  Messages apply where they
belong on the frame clock:

- untagged: at the start of the next block, a ``/param/set`` gliding across it;
- time-tagged: at the exact frame ``round((tag - t0) * samplerate)``, by
  passing it to the renderer as an in-block event, or, for a change of the
  graph (a new output, a connection), by splitting the block at that frame;
- tagged in the past: at the next block, counted in ``late``.

So a patch and a list of tagged changes render live exactly as
:func:`jupysynth.render` renders them offline.

Changing the graph costs milliseconds of compiling (a second when numba
compiles a module's per-sample function), too long for a block.  While
something plays, an untagged change is therefore prepared on a worker thread
(:meth:`Renderer.prepare <jupysynth.renderer.Renderer.prepare>`) from a
snapshot of the table, and installed at the first block boundary after it is
ready (:meth:`~jupysynth.renderer.Renderer.apply`, microseconds); the blocks
in between play the patch as it was, and the loop never waits for the worker
(not even for a lock: a lower-priority thread holding one could be preempted).
Changes arriving meanwhile wait for the next snapshot, so a burst of edits
costs one or two prepares.  A ``/sync`` is answered once everything before it
is installed.  The clock does not wait for a block to do this: a graph change
or a ``/sync`` arriving, and a prepare finishing, ring :attr:`EngineCore.urgent`,
and the driver, napping between blocks, calls :meth:`EngineCore.service`
(module creation to ``/synced``: 5.3 ms -> 1.3-1.6 ms at block 128).

A time-tagged change of the graph is applied on the block thread at its
frame, exactly as before, because the frame is the point of a tag: the
table at that frame is only known once every message before it has been
applied.  So that such a change never waits for numba, the per-sample
function of a class arriving in a tagged ``/type/define`` is compiled on
the worker thread as soon as the message arrives (see :meth:`EngineCore._warm`).
With nothing playing, every change is applied at once: there is no sound to
keep going, and the very next block plays it.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import numbers
import os
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import guard, kernels
from ..control.address import MAX_AHEAD_SECONDS, MAX_FADE_SECONDS
from ..control.typedefs import load_type
from ..errors import EngineError, JupysynthError, ParamError
from ..graph import NodeSpec
from ..renderer import Renderer
from .patch import PatchTable
from .renderers import LiveRenderer
from .taps import Taps

__all__ = ["EngineCore", "RecordJob", "local_renderer"]

log = logging.getLogger("jupysynth.engine")

#: Seconds the safety limiter takes to give back about 63 % of a gain reduction.
LIMIT_RELEASE_SECONDS = 0.05
_SAFETY_LIMIT = kernels.load("bus.safety_limit")
#: Scheduled messages waiting; a flood beyond this is refused, not stored.
MAX_PENDING = 100_000
#: Tagged ``/type/define`` classes loaded ahead of their frame and not yet applied.
MAX_WARMED = 16
#: The interpreter's switch interval while the worker thread prepares, in seconds.
#: Each kernel call of a block releases the GIL (``nogil``), and the block thread
#: then waits up to one interval to get it back from a compiling worker: a block
#: of n groups may wait n intervals.  Measured on a headless engine playing a sine
#: while a cell's ``sample()`` compiled (about 0.35 s), ten times: the largest block
#: took 0.42-1.44 of its duration (median 0.64) at the engine's 0.5 ms, 0.17-0.33
#: (median 0.21) at 0.1 ms, about the same at 0.05 ms; 0.02-0.11 with no edit.
PREPARE_SWITCH_INTERVAL = 1e-4


def user_budget(samplerate: int, blocksize: int) -> float:
    """Seconds one ``process()`` call may take on the block thread: two blocks, at least 5 ms.

    Past it the device has run dry anyway; short of it a module that is merely
    slow once (a first call importing something) is left alone.
    """
    return max(2.0 * blocksize / samplerate, 0.005)


Sender = str | tuple[str, int]
# (frame or None for untagged, sequence number, address, args, sender)
Op = tuple[Any, int, str, tuple, Sender]


def local_renderer(samplerate: int, blocksize: int, code_budget: float | None) -> Renderer:
    """The engine's in-process renderer: with the guard installed, code written in
    cells renders in a sandbox process under a time budget (:func:`user_budget`)."""
    renderer = Renderer({}, [], samplerate, blocksize)
    if guard.installed():
        from .sandbox import Sandbox

        budget = code_budget or user_budget(samplerate, blocksize)
        renderer.user_budget = budget
        renderer.sandbox = Sandbox(samplerate, budget)
    return renderer


def _normal_priority(nice: int | None) -> None:
    """Give the calling thread ordinary scheduling: threads inherit the block loop's raised one.

    A compile must not compete with the block loop for a core at its priority.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (OSError, AttributeError):
        pass
    if nice is not None:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, nice)  # 0: this thread, on Linux
        except (OSError, AttributeError):
            pass


class Bell:
    """A one-bit signal between threads, rung by any, awaited by one.

    :meth:`wait` is one lock acquire with a timeout, as cheap as ``time.sleep``;
    ``threading.Event.wait`` builds a waiter lock each call, which cost 1-2 % of a
    core at the block loop's 375 naps a second.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()  # held: not rung

    def set(self) -> None:
        """Ring (from any thread); ringing twice is ringing once."""
        try:
            self._lock.release()
        except RuntimeError:
            pass  # rung already

    def is_set(self) -> bool:
        return not self._lock.locked()

    def clear(self) -> None:
        self._lock.acquire(blocking=False)

    def wait(self, timeout: float) -> bool:
        """Until rung or ``timeout`` seconds; True if rung (the ring is taken)."""
        return self._lock.acquire(timeout=timeout)


class _Preparer:
    """The core's worker thread: runs one job at a time, off the block thread.

    The block loop hands it a job and later polls :attr:`result`; it never
    waits for it.  ``wake`` is set when a result is ready, so an idle clock
    looks again.
    """

    def __init__(self, wake: Callable[[], None], nice: int | None) -> None:
        self._cv = threading.Condition()
        self._jobs: deque[Callable[[], Any]] = deque()
        self._closed = False
        self.result: tuple[Any, str | None] | None = None  # (value, None) or (None, traceback)
        self._wake = wake
        self._nice = nice
        self._thread = threading.Thread(target=self._run, name="jupysynth-prepare", daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], Any]) -> None:
        """Run ``job`` after the ones already given; a prepare's result lands in :attr:`result`."""
        with self._cv:
            self._jobs.append(job)
            self._cv.notify()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(5.0)

    def _run(self) -> None:
        _normal_priority(self._nice)
        while True:
            with self._cv:
                while not self._jobs and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                job = self._jobs.popleft()
            was = sys.getswitchinterval()
            sys.setswitchinterval(min(was, PREPARE_SWITCH_INTERVAL))
            try:
                job()
            finally:
                sys.setswitchinterval(was)
            self._wake()


@dataclass
class RecordJob:
    """A recording of ``frames`` frames from ``start`` (None: the next block)."""

    start: int | None
    frames: int
    buf: np.ndarray = field(init=False)
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None

    def __post_init__(self) -> None:
        # allocated by the caller's thread, never by the block loop
        self.buf = np.zeros((self.frames, 2), dtype=np.float32)


class EngineCore:
    """Patch, renderer and scheduled messages, advanced one block at a time.

    Parameters
    ----------
    samplerate : int
        Frames per second.
    blocksize : int
        Frames per block.
    t0_ntp : int
        64-bit NTP time of frame 0 (see :meth:`frame_of`).
    error : callable
        ``error(sender, address, message)``: reply ``/error`` and log.
    reply : callable
        ``reply(sender, address, args, types)``: any other reply (``/synced``).
    renderer : Renderer, PoolRenderer or AutoRenderer, optional
        What renders the blocks; default: :func:`local_renderer`.
    limiter : bool, default True
        Keep the output within full scale with a peak limiter that is exactly
        transparent below it (:data:`LIMIT_RELEASE_SECONDS` release); off,
        the output is recorded as rendered and only clipped at +-1 for the device.
    code_budget : float, optional
        Seconds a cell's ``process()`` may take per call (default :func:`user_budget`).
    """

    def __init__(
        self,
        samplerate: int,
        blocksize: int,
        t0_ntp: int,
        error: Callable[[Sender | None, str, str], None],
        reply: Callable[[Sender, str, tuple, str], None],
        renderer: LiveRenderer | None = None,
        limiter: bool = True,
        code_budget: float | None = None,
    ) -> None:
        self.samplerate = int(samplerate)
        self.blocksize = int(blocksize)
        self.t0_ntp = int(t0_ntp)
        self.frame = 0
        self.table = PatchTable()
        # engine/renderers.py: what the core asks of it, whichever of the three it is
        self.renderer: LiveRenderer = renderer or local_renderer(
            self.samplerate, self.blocksize, code_budget
        )
        self.late = 0
        self.limiter = bool(limiter)
        self.limited = 0  # blocks the safety limiter turned down
        self._gain = np.ones(1, dtype=np.float64)  # the limiter's gain, kept across blocks
        self._release = 1.0 - float(np.exp(-1.0 / (LIMIT_RELEASE_SECONDS * self.samplerate)))
        self._error = error
        self._reply = reply
        self._seq = itertools.count()
        self._inbox: deque[Op] = deque()
        self._now: list[Op] = []  # untagged or late, for the next block
        self._heap: list[tuple[int, int, Op]] = []
        self._carry: list[Op] = []  # due this block but after a /panic: next block
        self._records: deque[RecordJob] = deque()
        self._recording: list[RecordJob] = []
        self._fade = 0  # frames of crossfade for the graph change being applied
        self._zeros = np.zeros((self.blocksize, 2), dtype=np.float32)
        # seconds left until the block being rendered is needed (render_block)
        self._needed_by: Callable[[], float] | None = None
        self.taps = Taps(self.blocksize)  # scope taps: written after each render while open
        self.wake = threading.Event()  # set on every submit: an idle clock may sleep on it
        # set by a message that should not wait for the next block (a graph change, a
        # /sync) and by a finished prepare: a playing clock naps on it, then calls service()
        self.urgent = Bell()
        # -- changes of the graph prepared on the worker thread (see the module docstring)
        self._tv = 0  # table version: bumped by every change the renderer must be rebuilt for
        self._rtv = 0  # the table version the renderer plays
        self._asked = False  # a prepare is wanted (the next snapshot takes every change)
        self._ask_fade = 0  # the longest /fade among the changes it takes
        self._ask_senders: list[Sender] = []
        self._job: tuple[int, int, list[Sender]] | None = None  # (tv, fade, senders) under way
        self._preparer: _Preparer | None = None  # started by the first prepare
        try:
            self._nice: int | None = os.getpriority(os.PRIO_PROCESS, 0)
        except (OSError, AttributeError):
            self._nice = None
        # ids whose table spec no renderer or plan holds yet: edited in place, the others
        # are copied first (a snapshot shares the table's specs, so it costs no copy)
        self._fresh: set[int] = set()
        self._held: dict[tuple[int, str], None] = {}  # numbers set while the renderer lags
        self._syncs: list[tuple[int, Sender, int]] = []  # (tv, sender, token) to answer
        self._warmed: dict[tuple[str, bytes], Any] = {}  # classes loaded ahead of their tag
        try:  # imported now, not by the first /type/define inside a block (5 ms)
            import cloudpickle  # noqa: F401
        except ImportError:
            pass

    # -- the clock ---------------------------------------------------------------------------

    def frame_of(self, ntp: int) -> int:
        """The frame a 64-bit NTP time tag falls on (exact integer arithmetic)."""
        return ((ntp - self.t0_ntp) * self.samplerate + (1 << 31)) >> 32

    # -- input (OSC thread) ------------------------------------------------------------------

    def submit(self, timetag: int | None, address: str, args: tuple, sender: Sender) -> None:
        """Queue a checked message; called from the OSC thread.

        Raises
        ------
        EngineError
            For a time tag too far ahead or a full queue (the sender gets ``/error``).
        """
        frame = None
        if timetag is not None:
            frame = self.frame_of(timetag)
            ahead = (frame - self.frame) / self.samplerate
            if ahead > MAX_AHEAD_SECONDS:
                raise EngineError(
                    f"time tag is {ahead:.0f} s ahead of the engine's clock (at most "
                    f"{MAX_AHEAD_SECONDS:.0f} s); tag bundles with Unix time, "
                    "e.g. time.time() + 0.1"
                )
        if len(self._inbox) + len(self._heap) >= MAX_PENDING:
            raise EngineError(f"{MAX_PENDING} messages are already waiting; slow down or /panic")
        self._inbox.append((frame, next(self._seq), address, args, sender))
        self.wake.set()
        if address != "/param/set":  # knobs at thousands a second wait for the block
            self.urgent.set()

    def record(self, job: RecordJob) -> None:
        """Start filling ``job`` (from any thread); ``job.done`` is set when full."""
        self._records.append(job)

    # -- state -------------------------------------------------------------------------------

    @property
    def playing(self) -> bool:
        """True when there is any module to render."""
        # the renderer's own view: a crossfade keeps leaving modules until it ends
        return bool(self.renderer.nodes)

    def pending(self) -> bool:
        """True when a message waits to be applied at or before the next block.

        A change of the graph being prepared counts: it is installed at a block.
        """
        return bool(
            self._inbox
            or self._now
            or self._carry
            or self._records
            or self._asked
            or self._job is not None
        )

    def close(self) -> None:
        """End the sandbox and the worker thread, if they started.

        The sandbox first: killing it is instant, and a prepare waiting on it returns.
        """
        sandbox = self.renderer.sandbox
        if sandbox is not None:
            sandbox.close()
        if self._preparer is not None:
            self._preparer.close()
            self._preparer = None

    def next_scheduled(self) -> int | None:
        """Frame of the earliest time-tagged message waiting, if any."""
        return self._heap[0][0] if self._heap else None

    def skip(self, frames: int) -> None:
        """Advance the clock without rendering (an idle clock catching up with time).

        Only valid while nothing plays and nothing is due before ``frame + frames``;
        recordings get silence, which their zeroed buffers already hold.
        """
        end = self.frame + frames
        for job in self._recording:
            if job.start + job.frames <= end:
                job.done.set()
        self._recording = [j for j in self._recording if not j.done.is_set()]
        self.frame = end

    # -- the block ---------------------------------------------------------------------------

    def render_block(self, dst: np.ndarray, due: Callable[[], float] | None = None) -> None:
        """Apply what is due and render the next block into ``dst`` (``(blocksize, 2)`` float32).

        ``due``: seconds left until the device needs the block, asked while the
        renderer waits (None: nothing listens live), for a renderer that can play
        a late part as silence.
        Never raises: a failure is logged, the block is silent and the clock moves on.
        """
        self._needed_by = due
        start = self.frame
        end = start + self.blocksize
        try:
            if self._job is not None and self._preparer.result is not None:
                self._finish_prepare()
            if self._inbox:
                self._drain(start)
            if self._records:
                self._start_records(start)
            if self._now or self._carry or (self._heap and self._heap[0][0] < end):
                self._render_with_ops(dst, start, end)
            elif self.renderer.nodes:
                np.copyto(dst, self.renderer.process(self.blocksize, (), due))
                if self.taps:
                    self.taps.write(self.renderer, self.blocksize)
            else:
                np.copyto(dst, self._zeros)
            if self._job is None:
                if self._asked:
                    self._start_prepare()  # after the block: its sound comes first
                elif self.renderer.rebalance_wanted:
                    self._start_rebalance()
        except Exception:  # noqa: BLE001 - the clock must go on whatever breaks
            log.error("engine block at frame %d failed:\n%s", start, traceback.format_exc())
            dst.fill(0.0)
        self.frame = end
        bs = self.blocksize
        if self.limiter and _SAFETY_LIMIT(dst, bs, self._gain, 1.0, self._release, True):
            self.limited += 1
        if self._recording:
            self._capture(dst, start, end)
        if not self.limiter:  # recorded as rendered; the device never gets more than full scale
            _SAFETY_LIMIT(dst, bs, self._gain, 1.0, self._release, False)

    def service(self) -> None:
        """Between two blocks, on the block thread: what need not wait for the next block.

        Installs a prepared patch (and answers the ``/sync`` waiting for it), and
        applies untagged messages that arrived, starting the prepare of a graph
        change at once.  The next block would do the same at its start: nothing
        renders in between, so the sound is the same, only sooner.  Left to the
        block: a ``/panic``, a late tagged message, and anything when a tagged
        message falls due in the next block (arrival order decides between them).
        """
        try:
            if self._job is not None and self._preparer.result is not None:
                self._finish_prepare()
            if self._inbox and self.renderer.nodes:
                self._drain(self.frame)
                now = self._now
                if (
                    now
                    and not self._carry
                    and not (self._heap and self._heap[0][0] < self.frame + self.blocksize)
                    and all(op[0] is None and op[2] != "/panic" for op in now)
                ):
                    self._now = []
                    rebuild: list[Sender] = []
                    for op in now:  # in arrival order, as at the start of a block
                        if self._apply(op, True):
                            self._tv += 1
                            rebuild.append(op[4])
                    if rebuild:
                        self._ask(rebuild, self._fade)
                    self._fade = 0
            if self._job is None and self._asked:
                self._start_prepare()
        except Exception:  # noqa: BLE001 - the clock must go on whatever breaks
            log.error("engine service at frame %d failed:\n%s", self.frame, traceback.format_exc())

    def _drain(self, start: int) -> None:
        inbox = self._inbox
        while inbox:
            op = inbox.popleft()
            frame = op[0]
            if frame is None:
                self._now.append(op)
            elif frame < start:
                self.late += 1
                self._now.append(op)
            else:
                heapq.heappush(self._heap, (frame, op[1], op))
                if op[2] == "/type/define":
                    self._warm(*op[3])  # a fraction of a millisecond, here

    def _due(self, start: int, end: int) -> list[tuple[int, int, Op, bool]]:
        """(offset, seq, op, ramp) of everything to apply in this block, in order."""
        ops = [(0, op[1], op, False) for op in self._carry]
        self._carry = []
        ops += [(0, op[1], op, op[0] is None) for op in self._now]
        self._now = []
        heap = self._heap
        while heap and heap[0][0] < end:
            frame, seq, op = heapq.heappop(heap)
            ops.append((frame - start, seq, op, False))
        ops.sort(key=lambda o: (o[0], o[1]))
        return ops

    def _render_with_ops(self, dst: np.ndarray, start: int, end: int) -> None:
        ops = self._due(start, end)
        n = len(ops)
        bs = self.blocksize
        pos = 0
        i = 0
        while True:
            # 1. everything at this frame, graph changes included, in arrival order
            rebuild: list[Sender] = []
            tagged = False
            while i < n and ops[i][0] <= pos:
                _, _, op, ramp = ops[i]
                i += 1
                if op[2] == "/panic":
                    self._panic(dst, pos, op, ops[i:])
                    return
                if self._apply(op, ramp):
                    self._tv += 1
                    rebuild.append(op[4])
                    tagged = tagged or op[0] is not None
            if rebuild:
                if tagged or not self.renderer.nodes:
                    self._rebuild(rebuild)  # at this very frame
                else:
                    self._ask(rebuild, self._fade)  # prepared off the block thread
            self._fade = 0  # a /fade applies to the changes at its own frame only
            if pos >= bs:
                return
            # 2. in-block events for plain numbers, up to the next graph change
            events: list[tuple[int, int, str, float]] = []
            nxt = bs
            while i < n:
                offset, _, op, _ = ops[i]
                event = self._as_event(op) if op[2] == "/param/set" else None
                if event is False:
                    i += 1  # rejected (the sender got /error): nothing to apply
                    continue
                if event is None:
                    nxt = offset
                    break
                events.append((offset - pos, *event))
                i += 1
            self._render(dst, pos, nxt, events)
            pos = nxt

    def _render(self, dst: np.ndarray, a: int, b: int, events: list) -> None:
        if self.renderer.nodes:
            dst[a:b] = self.renderer.process(b - a, events, self._needed_by)
            if self.taps:
                self.taps.write(self.renderer, b - a)
        else:
            dst[a:b] = 0.0

    def _as_event(self, op: Op) -> tuple[int, str, float] | None | bool:
        """A renderer event for a ``/param/set`` on a sounding module with a number.

        None when it must be applied between renderer calls (the module is not
        rendered, or the parameter is connected to a signal); False when rejected.
        """
        node_id, name, value = op[3]
        spec = self.table.nodes.get(node_id)
        rspec = self.renderer.nodes.get(node_id)
        if spec is None or rspec is None:
            return None
        held = rspec.values.get(name)
        if isinstance(spec.values.get(name), tuple) or held is None or isinstance(held, tuple):
            return None
        try:
            v = self.table.check_value(spec, name, value)
        except JupysynthError as exc:
            self._error(op[4], op[2], str(exc))
            return False
        spec.values[name] = v  # the table now, the renderer at its frame
        return (node_id, name, v)

    # -- applying messages ------------------------------------------------------------------

    def _apply(self, op: Op, ramp: bool) -> bool:
        """Apply one message now; True if the renderer must be rebuilt."""
        _, _, address, args, sender = op
        table = self.table
        try:
            if address == "/param/set":
                node_id, name, value = args
                spec = table.spec(node_id)
                v = table.check_value(spec, name, value)
                if isinstance(spec.values[name], tuple):
                    self._own(node_id).values[name] = v  # disconnected: a new patch
                    return True
                spec.values[name] = v
                rspec = self.renderer.nodes.get(node_id)
                held = rspec.values.get(name) if rspec is not None else None
                if held is not None and not isinstance(held, tuple):
                    self.renderer.set(node_id, name, v, ramp=ramp)
                elif self._rtv < self._tv:
                    # the module (or this number) reaches the renderer with a patch being
                    # prepared, which may have read the value already: set it once installed
                    self._held[(node_id, name)] = None
                return False
            if address == "/module/new":
                table.new(*args)
                self._fresh.add(args[0])
                return True
            if address == "/type/define":
                return self._define(*args)
            if address == "/module/free":
                table.free(args[0])
                return True
            if address == "/param/connect":
                self._own(args[0])
                table.connect(*args)
                return True
            if address in ("/mix/inputs", "/mix/add"):
                pairs = list(zip(args[1::2], args[2::2]))
                self._own(args[0])
                if address == "/mix/add":
                    table.mix_add(args[0], pairs)
                else:
                    table.mix_inputs(args[0], pairs)
                return True
            if address == "/out/add":
                table.out_add(*args)
                return True
            if address == "/out/remove":
                table.out_remove(args[0])
                return True
            if address == "/fade":
                seconds = args[0]
                if not 0.0 <= seconds <= MAX_FADE_SECONDS:
                    raise ParamError(
                        f"/fade {seconds:g} s is out of range; use 0 to {MAX_FADE_SECONDS:g} s"
                    )
                self._fade = int(round(seconds * self.samplerate))
                return False
            if address == "/sync":
                if self._rtv >= self._tv:
                    self._reply(sender, "/synced", (args[0],), "i")
                else:  # answered once the renderer plays what came before
                    self._syncs.append((self._tv, sender, args[0]))
                return False
            if address == "/tap/open":
                name = self._tap_open(*args)
                self._reply(sender, "/tap/opened", (args[0], name), "is")
                return False
            if address == "/tap/close":
                self.taps.close(args[0])
                return False
            raise EngineError(f"{address} is not applied by the engine loop")
        except JupysynthError as exc:
            self._error(sender, address, str(exc))
            return False
        except Exception as exc:  # noqa: BLE001 - one message's failure is that message's /error
            log.error("%s failed:\n%s", address, traceback.format_exc())
            self._error(
                sender,
                address,
                f"the engine could not apply it ({type(exc).__name__}: {str(exc)[:200]}); "
                "the rest plays on",
            )
            return False

    def _define(self, name: str, blob: bytes) -> bool:
        """Load and register a module class; True if modules of it play (swap them)."""
        self._start_sandbox()
        # unpickling a small class takes about a millisecond, well inside a block
        cls = self._warmed.pop((name, blob), None) or load_type(name, blob)
        sandbox = self.renderer.sandbox
        if sandbox is not None:
            sandbox.know(cls, blob)
        for i, spec in list(self.table.nodes.items()):
            if spec.type == name:
                self._own(i)  # define rewrites their values and kernel
        used = self.table.define(name, cls)
        self.renderer.define_type(name, blob)  # workers load it with their next patch
        if used:
            # muted for an exception in the old code: the new code gets its chance
            self.renderer.revive(i for i, s in self.table.nodes.items() if s.type == name)
        return used

    def _tap_open(self, tap_id: int, module_id: int, port: int, frames: int) -> str:
        # mapping the segment is a few system calls, once per scope opened; every renderer
        # shows a tapped output (a pool from its next division: LiveRenderer.column_of)
        self.table.spec(module_id)  # an unknown id raises, naming it
        return self.taps.open(tap_id, module_id, port, frames)

    # -- rebuilding the renderer ------------------------------------------------------------

    def _own(self, node_id: int) -> NodeSpec | None:
        """The table's spec of ``node_id``, copied first if a renderer or a plan holds it.

        Renderers hold the table's spec objects (a snapshot is a dict copy), and
        read their connections while a prepare runs: an edit of the graph goes
        to a copy.  Numbers are set on the shared objects, which is what both want.
        """
        spec = self.table.nodes.get(node_id)
        if spec is not None and node_id not in self._fresh:
            spec = NodeSpec(
                spec.id,
                spec.type,
                spec.kernel,
                dict(spec.values),
                spec.options,
                list(spec.inputs),
                spec.name,
            )
            self.table.nodes[node_id] = spec
            self._fresh.add(node_id)
        return spec

    def _snapshot(self) -> tuple[dict[int, NodeSpec], list[tuple[int, int, int]]]:
        """The table's modules and outputs, for a renderer (no spec is copied, see _own)."""
        self._fresh.clear()
        return dict(self.table.nodes), list(self.table.outputs)

    def _ask(self, senders: list[Sender], fade: int) -> None:
        """Have the table prepared on the worker thread after this block."""
        if self._job is not None and self._job[0] is None:
            # a division for measured costs under way: the edit comes first
            self.renderer.abandon_prepare()
        self._asked = True
        self._ask_fade = max(self._ask_fade, fade)
        self._ask_senders.extend(senders)

    def _prepared(self) -> None:
        """Called by the preparer with a result: wake the clock to install it."""
        self.wake.set()
        self.urgent.set()

    def _start_prepare(self) -> None:
        fade = self._ask_fade
        self._job = (self._tv, fade, self._ask_senders)
        self._asked, self._ask_fade, self._ask_senders = False, 0, []
        self._submit_prepare(fade)

    def _start_rebalance(self) -> None:
        """Have the worker pool divide the same patch again (it measured its costs)."""
        self.renderer.rebalance_wanted = False
        self._job = (None, 0, [])
        self._submit_prepare(0)

    def _submit_prepare(self, fade: int) -> None:
        nodes, outputs = self._snapshot()
        if self._preparer is None:
            self._preparer = _Preparer(self._prepared, self._nice)
        preparer, renderer = self._preparer, self.renderer

        def job() -> None:
            try:
                preparer.result = (renderer.prepare(nodes, outputs, fade), None)
            except Exception:  # noqa: BLE001 - handed to the block thread
                preparer.result = (None, traceback.format_exc())

        preparer.submit(job)

    def _finish_prepare(self) -> None:
        """Install the prepared patch, at a block boundary."""
        plan, error = self._preparer.result
        self._preparer.result = None
        tv, fade, senders = self._job
        self._job = None
        if tv is None:  # the same patch divided again: dropped if it changed meanwhile
            if error is None:
                self.renderer.apply(plan, redo=False)
            return
        if tv <= self._rtv:
            return  # a change applied at once (a tag, a panic) took the table since
        if error is not None:
            # on the block thread, as before: its errors are reported and handled there
            log.warning("preparing the patch failed; rebuilding it at once:\n%s", error)
            self._rebuild(senders, fade)
        elif self.renderer.apply(plan, redo=False):
            self._shown(tv)
        else:
            self._ask(senders, fade)  # the renderer changed meanwhile (a fault, a fade's end)

    def _shown(self, tv: int, replay: bool = True) -> None:
        """The renderer plays table version ``tv``: set the numbers it missed, answer /sync."""
        self._rtv = tv
        if self._held:
            held, self._held = self._held, {}
            renderer, nodes = self.renderer, self.table.nodes
            for node_id, name in held if replay else ():
                spec, rspec = nodes.get(node_id), renderer.nodes.get(node_id)
                if spec is None or rspec is None:
                    continue
                v = spec.values.get(name)
                if isinstance(v, numbers.Real) and isinstance(rspec.values.get(name), numbers.Real):
                    renderer.set(node_id, name, v)
        if self._syncs:
            waiting = []
            for want, sender, token in self._syncs:
                if want <= tv:
                    self._reply(sender, "/synced", (token,), "i")
                else:
                    waiting.append((want, sender, token))
            self._syncs = waiting

    def _warm(self, name: str, blob: bytes) -> None:
        """Load the class of a tagged ``/type/define`` and compile its ``sample`` now.

        Its rebuild then happens on the block thread at its frame without
        waiting a second for numba; :meth:`_define` takes this very class.
        Loading stays on this thread: unpickling a class touches the type
        registry for a moment, which a prepare on the worker reads.
        """
        key = (name, blob)
        if not self.renderer.in_process:
            return  # workers render (and compile) it: nothing to gain in this process
        self._start_sandbox()
        if key in self._warmed or len(self._warmed) >= MAX_WARMED:
            return
        try:
            cls = load_type(name, blob)
        except JupysynthError:
            return  # refused at its frame, with the reason
        self._warmed[key] = cls
        if self.renderer.sandbox is not None:
            self.renderer.sandbox.know(cls, blob)
        if self._preparer is None:
            self._preparer = _Preparer(self._prepared, self._nice)
        sandbox = self.renderer.sandbox

        def job() -> None:
            from ..renderer import warm_sample

            try:
                if sandbox is None:
                    warm_sample(cls)
                else:  # it renders there: compiled there, before its frame
                    from .sandbox import START_TIMEOUT

                    sandbox.ensure_started()
                    sandbox.ready.wait(START_TIMEOUT)
                    sandbox.request(("warm", name, blob))
            except Exception:  # noqa: BLE001 - it fails again where the patch uses it
                pass

        self._preparer.submit(job)

    def _start_sandbox(self) -> None:
        """A class written in a cell is coming: have its sandbox start (off this thread)."""
        sandbox = self.renderer.sandbox
        if sandbox is not None:
            sandbox.ensure_started()

    def _rebuild(self, senders: list[Sender], fade: int | None = None) -> None:
        """Install the table in the renderer now, on the block thread."""
        table = self.table
        if fade is None:
            fade = max(self._fade, self._ask_fade)
        senders = senders + self._ask_senders  # a prepare asked for is superseded
        self._asked, self._ask_fade, self._ask_senders = False, 0, []
        nodes, outputs = self._snapshot()
        try:
            # every module runs from its /module/new, heard or not, as every module of
            # a patch runs from frame 0 offline: a modulator connected later is in phase
            if fade:
                self.renderer.update(nodes, outputs, fade=fade)
            else:
                self.renderer.update(nodes, outputs)
        except Exception as exc:  # noqa: BLE001 - a bug here must not stop the sound
            log.error("rebuilding the patch failed:\n%s", traceback.format_exc())
            for sender in set(senders):
                self._error(
                    sender, "", f"the engine could not rebuild the patch ({exc}); outputs cleared"
                )
            table.clear()
            self.renderer.update({}, [])
        self._shown(self._tv, replay=False)  # the snapshot had every number

    def _panic(self, dst: np.ndarray, pos: int, op: Op, rest: list) -> None:
        """Fade out over the rest of the block, then forget everything sent before the panic."""
        bs = self.blocksize
        if self.renderer.nodes and pos < bs:
            n = bs - pos
            out = self.renderer.process(n, (), self._needed_by)
            if self.taps:
                self.taps.write(self.renderer, n)
            dst[pos:] = out * np.linspace(1.0, 0.0, n, dtype=np.float32)[:, None]
        else:
            dst[pos:] = 0.0
        seq = op[1]
        self._heap = [h for h in self._heap if h[1] > seq]
        heapq.heapify(self._heap)
        self._carry = [o for _, s, o, _ in rest if s > seq]
        # classes warmed for a /type/define dropped with the rest: forget them
        kept = {tuple(h[2][3][:2]) for h in self._heap if h[2][2] == "/type/define"}
        self._warmed = {k: c for k, c in self._warmed.items() if k in kept}
        self.table.clear()
        self._tv += 1
        self._rebuild([])

    # -- recording ---------------------------------------------------------------------------

    def _start_records(self, start: int) -> None:
        while self._records:
            job = self._records.popleft()
            if job.start is None:
                job.start = start
            if job.start < start:
                job.error = (
                    f"the recording was to start at frame {job.start} but the engine already "
                    f"rendered up to frame {start}; start it later (engine latency ahead)"
                )
                job.done.set()
                continue
            self._recording.append(job)

    def _capture(self, dst: np.ndarray, start: int, end: int) -> None:
        finished = False
        for job in self._recording:
            s = job.start
            lo = max(start, s)
            hi = min(end, s + job.frames)
            if lo < hi:
                job.buf[lo - s : hi - s] = dst[lo - start : hi - start]
            if s + job.frames <= end:
                job.done.set()
                finished = True
        if finished:
            self._recording = [j for j in self._recording if not j.done.is_set()]

    def faults(self) -> dict[int, str]:
        """Muted modules and why, as the renderer reported them."""
        return dict(self.renderer.faults)
