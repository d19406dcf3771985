"""The block loop shared by offline render and the live engine.

A :class:`Renderer` owns one compiled schedule, the block bus (a float32
array ``(blocksize, slots)``, one column per module output channel), the
state of every group and the views each kernel reads.  All of them are made
when the patch changes, never per block: rendering a block is one kernel call
per group on views prepared in advance.

Examples
--------
>>> import jupysynth as js
>>> samples = js.render(js.Sine(freq=440, amp=0.5), seconds=0.1)
>>> samples.shape
(4800, 2)
"""

from __future__ import annotations

import numbers
import pickle
import threading
import traceback
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter as _clock
from typing import Any

import numpy as np

from . import guard, kernels
from .compile import Binding, Group, Schedule, compile_schedule
from .crossfade import Crossfade
from .errors import JupysynthError, JupysynthWarning, ParamError, PatchError
from .graph import (
    PYTHON_KERNEL,
    SAMPLE_KERNEL,
    Module,
    NodeSpec,
    Port,
    module_types,
    snapshot,
    type_name,
)
from .kernels._dsp import FAST

__all__ = ["Renderer", "States", "render", "write_wav", "Event"]

# (time in seconds, module, parameter name, value)
Event = tuple[float, Module, str, Any]

FEEDBACK_CHUNK = 64  # a patch with Feedback renders in chunks no longer than its delay
#: Louder than this (+80 dBFS) an output module's sample is a mistake (``amp=1e6``): it is
#: muted and named, as for NaN.
ABSURD = 1e4
#: Seconds a module's ``setup()`` may take on the block thread before it is stopped (the engine).
SETUP_BUDGET = 2.0


@dataclass
class _Param:
    name: str
    binding: Binding
    vals: np.ndarray  # float32 (n,): the numbers (const and gather)
    col: int  # first of the n bus columns the kernel reads
    slots: np.ndarray | None = None  # int64 (n,) for gathers: source column or -1
    ramp_from: np.ndarray | None = None  # old values while a ramp is pending


@dataclass
class _Runtime:
    group: Group
    fn: Any  # the kernel called this block
    post: Any
    params: list[_Param]
    state: list[np.ndarray]
    args: tuple
    general: Any = None  # reads every parameter per sample
    fixed: Any = None  # the module's fixed-parameter kernel, when its parameters allow
    gathers: list[_Param] = field(default_factory=list)
    ramps: list[_Param] = field(default_factory=list)
    spent: float = 0.0  # seconds in the kernel, while the renderer is timing
    timed: int = 0  # frames timed


def _same_kind(new: Any, old: Any) -> bool:
    """Whether a redefined module may take over ``old`` as the value of its ``new`` attribute."""
    if isinstance(new, np.ndarray) or isinstance(old, np.ndarray):
        return (
            isinstance(new, np.ndarray)
            and isinstance(old, np.ndarray)
            and new.shape == old.shape
            and new.dtype == old.dtype
        )
    if isinstance(new, numbers.Number) and isinstance(old, numbers.Number):
        return True
    return type(new) is type(old)


_compiled_samples: dict[Any, Any] = {}
_compiled_lock = threading.Lock()  # prepare runs on the engine's worker thread too


def _jitted(cls: type[Module]) -> Any:
    """The numba dispatcher of ``cls.sample``: one per function, whichever thread asks first."""
    from numba import njit

    fn = cls.__dict__["sample"]
    fn = getattr(fn, "__func__", fn)  # a staticmethod
    with _compiled_lock:
        jitted = _compiled_samples.get(fn)
        if jitted is None:
            jitted = fn if hasattr(fn, "py_func") else njit(fn, fastmath=FAST)
            _compiled_samples[fn] = jitted
    return jitted


def _sample_loop(cls: type[Module], nparams: int) -> Any:
    from .kernels.user import LOOPS

    loop = LOOPS.get((nparams, bool(cls.sample_state)))
    if loop is None:
        raise PatchError(
            f"{cls.__name__}.sample takes {nparams} parameters; a per-sample module "
            "takes 1 to 4 (write a process() over numpy blocks for more)"
        )
    return loop


def warm_sample(cls: type[Module]) -> None:
    """Compile the per-sample function of ``cls`` and its group loop before any patch uses it.

    The engine calls it on its worker thread for a class that is to be
    defined at a later frame; a function that does not compile is left to
    fail where it is used.
    """
    if "sample" not in cls.__dict__:
        return
    nparams = len(cls.params)
    loop = _sample_loop(cls, nparams)
    bus = np.zeros((1, nparams + 1), dtype=np.float32)
    cols = np.arange(1, nparams + 1, dtype=np.int64)
    slots = np.zeros((max(1, int(cls.sample_state)), 1))  # the type of state[0] and of no state
    loop(0, 0, bus, 1, 0, cols, slots, _jitted(cls))  # no frames: compiles, renders nothing


def _sample_group(g: Group, params: list[_Param], state: list[np.ndarray], bus: np.ndarray) -> Any:
    """A callable with a kernel's signature running a module's per-sample function.

    numba compiles the function (and the group loop for it) here, not at the
    first block: this runs in :meth:`Renderer.prepare`, off the engine's block
    thread.  A function that does not compile gives a callable raising the
    error, so its group is muted at its first block like any kernel that raises.
    """
    jitted = _jitted(g.cls)
    loop = _sample_loop(g.cls, len(params))
    cols = np.asarray([p.col for p in params], dtype=np.int64)
    slots = state[0] if g.cls.sample_state else np.zeros((1, 1))
    n, out = g.size, g.out_start
    try:
        loop(0, 0, bus, n, out, cols, slots, jitted)  # no frames: compiles, renders nothing
    except Exception as exc:  # noqa: BLE001 - reported by the group's first block
        error = exc

        def failed(*_: Any) -> None:
            raise PatchError(
                f"{g.cls.__name__}.sample does not compile with numba "
                f"({type(error).__name__}, above)"
            ) from error

        return failed

    def run(a: int, b: int, sr: float, bus: np.ndarray, *_: Any) -> None:
        loop(a, b, bus, n, out, cols, slots, jitted)

    return run


def process_inputs(
    bus: np.ndarray, a: int, b: int, names: list[str], cols: list[int], k: int
) -> dict[str, np.ndarray]:
    """Instance ``k``'s parameters for ``process()``: read-only views of its bus columns."""
    kwargs = {}
    for name, col in zip(names, cols):
        view = bus[a:b, col + k]
        view.flags.writeable = False
        kwargs[name] = view
    return kwargs


def write_output(
    bus: np.ndarray, a: int, b: int, y: Any, out: int, n: int, chans: int, k: int
) -> None:
    """Store what instance ``k``'s ``process()`` returned in its output column(s)."""
    if chans == 1:
        bus[a:b, out + k] = y
    else:
        bus[a:b, out + k] = np.asarray(y)[:, 0]
        bus[a:b, out + n + k] = np.asarray(y)[:, 1]


def _index(ks: list[int]) -> slice | np.ndarray:
    """Instance indices as a slice when they are a run (a plain copy), else an index array."""
    if ks == list(range(ks[0], ks[0] + len(ks))):
        return slice(ks[0], ks[0] + len(ks))
    return np.asarray(ks, dtype=np.intp)


@dataclass(eq=False)
class Plan:
    """A patch built by :meth:`Renderer.prepare`, for :meth:`Renderer.apply` to install.

    It holds the new schedule, bus, state arrays and loaded kernels, none of
    which the running renderer reads, and the list of state to carry over
    from the modules that stay, copied when it is applied.
    """

    request: tuple  # (nodes, outputs, fade) as asked: prepared again if it went stale
    generation: int  # the renderer's structure it was built on
    basis: frozenset[int]  # the muted modules then
    setseq: int  # the renderer's count of set() calls when it started
    types: list[tuple[str, type]]  # the module classes it compiled, by registry name
    nodes: dict[int, NodeSpec]
    outputs: list[tuple[int, int, int]]
    fade: Crossfade | None
    disabled: frozenset[int]
    schedule: Schedule
    bus: np.ndarray
    runtimes: list[_Runtime]
    where: dict[int, tuple[_Runtime, int]]
    processors: dict[int, Module]
    carry: list[tuple]  # (dst, src, new index, old index); indices None: the whole array
    takeovers: list[tuple[Module, Module]]  # (new object, old object) of redefined classes
    left: np.ndarray
    right: np.ndarray
    lanes: tuple[np.ndarray, np.ndarray] | None  # the fade's modes of left and right
    chunk: int
    after: Plan | None = None  # a crossfade's patch once it has faded
    setup_faults: list[tuple[int, str]] = field(default_factory=list)  # (id, why) muted at install
    sandbox_keys: list[int] = field(default_factory=list)  # what its cell code uses in the sandbox


def _runs(slots: list[int]) -> list[tuple[int, int]]:
    """Adjacent columns merged into (start, length) runs."""
    runs: list[tuple[int, int]] = []
    for s in slots:
        if runs and runs[-1][0] + runs[-1][1] == s:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((s, 1))
    return runs


class States:
    """The state of modules on their way from one renderer to another.

    A whole patch moves at once (``Engine(workers="auto")``, a worker pool
    dividing a patch anew): thousands of modules.  So states travel a group
    at a time, as the kernels keep them: each chunk is ``(ids, arrays,
    shared)``, where ``arrays`` holds one array per declared state,
    its last axis the modules in the order of ``ids`` (a state ``shared`` by
    the whole group: the group's array as it is).  A few arrays pickle in microseconds where
    one small array per module took milliseconds.  ``attrs``: the picklable
    attributes of modules written in Python with ``process``, by id.
    """

    def __init__(self) -> None:
        self.chunks: list[tuple[np.ndarray, list[np.ndarray], list[bool]]] = []
        self.attrs: dict[int, dict] = {}

    def __len__(self) -> int:
        return sum(len(c[0]) for c in self.chunks)

    def ids(self) -> set[int]:
        """The modules whose state this holds."""
        out: set[int] = set()
        for c in self.chunks:
            out.update(c[0].tolist())
        return out

    def then(self, other: States | None) -> States:
        """This, then ``other`` (which wins where both hold a module)."""
        out = States()
        out.chunks = self.chunks + (other.chunks if other is not None else [])
        out.attrs = {**self.attrs, **(other.attrs if other is not None else {})}
        return out

    def only(self, ids: Iterable[int]) -> States:
        """The states of the modules ``ids`` alone."""
        want = np.fromiter(ids, dtype=np.int64)
        out = States()
        for gids, arrays, shared in self.chunks:
            keep = np.isin(gids, want)
            if keep.all():
                out.chunks.append((gids, arrays, shared))
            elif keep.any():
                cut = [a if sh else a[..., keep] for a, sh in zip(arrays, shared)]
                out.chunks.append((gids[keep], cut, shared))
        chosen = set(want.tolist())
        out.attrs = {i: a for i, a in self.attrs.items() if i in chosen}
        return out


def _picklable_attrs(obj: Any) -> dict:
    """The attributes of a module's Python object that pickle (the rest starts anew)."""
    attrs: dict = {}
    for key, value in obj.__dict__.items():
        if key.startswith("_") or key in ("id", "name", "samplerate"):
            continue
        try:
            pickle.dumps(value)
        except Exception:  # noqa: BLE001 - what does not pickle starts anew
            continue
        attrs[key] = value
    return attrs


class Renderer:
    """Renders a patch block by block; the engine and :func:`render` both use it.

    Parameters
    ----------
    nodes : dict
        ``{id: NodeSpec}`` describing the patch (see :func:`jupysynth.graph.snapshot`).
    outputs : list
        ``[(id, port, channels)]`` summed to the stereo output.
    samplerate : float
        Samples per second.
    blocksize : int
        The most frames one :meth:`process` call renders.

    Notes
    -----
    Faults never stop the sound: a group whose kernel raises, or a module
    whose output turns NaN or infinite, is muted (it reads as silence
    downstream), named in :attr:`faults` and reported with a warning.
    """

    def __init__(
        self,
        nodes: dict[int, NodeSpec],
        outputs: list[tuple[int, int, int]],
        samplerate: float = 48000,
        blocksize: int = 64,
    ) -> None:
        if blocksize < 1 or blocksize > 65536:
            raise ParamError(f"blocksize={blocksize} is out of range; use 1 to 65536 frames")
        if not 1000 <= samplerate <= 768000:
            raise ParamError(f"samplerate={samplerate} is out of range; use 1000 to 768000 Hz")
        self.samplerate = float(samplerate)
        self.blocksize = int(blocksize)
        self.nodes = dict(nodes)
        self.outputs = list(outputs)
        self.disabled: set[int] = set()
        self.faults: dict[int, str] = {}
        self.frame = 0  # frames rendered so far
        self.out = np.zeros((self.blocksize, 2), dtype=np.float32)
        self._runtimes: list[_Runtime] = []
        self._where: dict[int, tuple[_Runtime, int]] = {}
        self._processors: dict[int, Module] = {}  # instances of modules written in Python
        self._stale = False  # a module was muted mid-span: rebuild after it
        self._ramping: list[_Runtime] = []  # groups with a glide pending for the next block
        self._fade: Crossfade | None = None  # a crossfade in progress
        self._lanes: tuple[np.ndarray, np.ndarray] | None = None  # how its lanes fade
        self._after: Plan | None = None  # the patch once the crossfade has faded, prepared
        # bumped by every install: a plan prepared on an older structure is stale
        self._generation = 0
        self._setseq = 0  # set() calls so far
        self._changed: dict[tuple[int, str], int] = {}  # (id, name) -> set() count, since install
        #: Time each group's kernel (see :meth:`take_costs`); the worker pool does.
        self.timing = False
        #: Seconds one ``process()`` call of a module written in Python may take before it
        #: is stopped and muted (:mod:`jupysynth.guard`); None: no budget (offline).
        self.user_budget: float | None = None
        #: Where code written in cells renders (the engine with ``workers=0``); None: here.
        self.sandbox: Any = None
        #: Set when the patch should be built again as it is (the sandbox came back).
        self.rebalance_wanted = False
        self._compile()

    # -- what the engine asks of every renderer (jupysynth/engine/renderers.py) ------------

    #: It renders in the calling process (the worker pool does not: see ``engine/workers.py``).
    in_process = True
    workers = 0  # worker processes
    restarts = 0  # workers replaced
    late_parts = 0  # blocks with a late worker's part silent

    @property
    def generation(self) -> int:
        """Bumped by every install and revive: a plan prepared before it is stale."""
        return self._generation

    def define_type(self, name: str, blob: bytes) -> None:
        """Nothing to do: this process registered the class already."""

    def abandon_prepare(self) -> None:
        """Nothing to do: a prepare here builds in one go and is never waited for."""

    def column_of(self, output: tuple[int, int]) -> int | None:
        """The column of :attr:`bus` holding ``output``, ``(module id, port)`` (None: not
        rendered)."""
        return self.schedule.slot_of.get(output)

    def close(self) -> None:
        """End the sandbox, if one renders code written in cells."""
        if self.sandbox is not None:
            self.sandbox.close()

    # -- building ------------------------------------------------------------------------

    def _compile(self) -> None:
        """Rebuild schedule, bus and state for the current patch, at once (state kept)."""
        self._install(
            self._build(
                (self.nodes, self.outputs, 0),
                self.nodes,
                self.outputs,
                frozenset(self.disabled),
                self._fade,
                self._where,
                self._processors,
            )
        )

    def _build(
        self,
        request: tuple,
        nodes: dict[int, NodeSpec],
        outputs: list[tuple[int, int, int]],
        disabled: frozenset[int],
        fade: Crossfade | None,
        old: dict[int, tuple[_Runtime, int]],
        processors: dict[int, Module],
    ) -> Plan:
        """Schedule, bus and state for ``nodes``, carrying state over from ``old`` by id.

        The bus holds, after the modules' outputs, a column per instance for every
        parameter set to a number (filled once, rewritten only when it changes)
        and for every parameter mixing numbers and signals (gathered per block),
        so each kernel reads all its parameters as adjacent columns.

        Reads the renderer only through its arguments, and writes nothing it
        renders with: :meth:`prepare` runs this on another thread.  The plan's
        basis (generation, muted modules, set() count) is the renderer's now;
        :meth:`prepare` puts the one it read before anything else instead.
        """
        generation, basis, setseq = self._generation, frozenset(self.disabled), self._setseq
        sched: Schedule = compile_schedule(nodes, outputs, disabled)
        layout: list[tuple[Group, list[_Param]]] = []
        ncols = sched.nslots
        for g in sched.groups:
            params = []
            for pdecl in g.cls.params:
                b = g.bindings[pdecl.name]
                vals = np.asarray(b.values, dtype=np.float32)
                if b.kind == "bus":
                    params.append(_Param(pdecl.name, b, vals, b.start))
                else:
                    p = _Param(pdecl.name, b, vals, ncols)
                    if b.kind == "gather":
                        p.slots = np.asarray(b.slots, dtype=np.int64)
                    ncols += g.size
                    params.append(p)
            layout.append((g, params))
        sandbox, bus_key, keys = self._sandbox_for(sched), None, []
        if sandbox is not None:
            bus, bus_key = self._shared(sandbox, (self.blocksize, ncols), np.float32)
            keys.append(bus_key)
        else:
            bus = np.zeros((self.blocksize, ncols), dtype=np.float32)
        runtimes: list[_Runtime] = []
        where: dict[int, tuple[_Runtime, int]] = {}
        # the Python objects of muted modules wait for their revival; freed ones go
        objects = {i: obj for i, obj in processors.items() if i in nodes}
        carry: dict[Any, tuple] = {}
        takeovers: list[tuple[Module, Module]] = []
        setup_faults: list[tuple[int, str]] = []
        for g, params in layout:
            specs = [nodes[i] for i in g.ids]
            for p in params:
                if p.binding.kind == "const":
                    _FILL(bus, p.col, p.vals)
            user = g.kernel in (PYTHON_KERNEL, SAMPLE_KERNEL)
            slots_key = None
            if user and self.sandbox is not None and g.kernel == SAMPLE_KERNEL and bus_key:
                # the sandbox runs the loop on this state: shared, carried here as any other
                held: list[int] = []

                def alloc(shape: tuple, dtype: Any, held: list[int] = held) -> np.ndarray:
                    arr, key = self._shared(sandbox, shape, dtype)
                    held.append(key)
                    return arr

                state = self._make_state(g, specs, old, carry, alloc)
                keys += held
                slots_key = held[0] if held else None
            else:
                state = self._make_state(g, specs, old, carry)
            extra: tuple = ()
            if g.cls.reads_bus:
                ins = g.bindings["__inputs__"]
                ptr = [int(v) for v in ins.values]
                runs: list[tuple[int, int]] = []
                rptr = [0]
                for k in range(g.size):
                    runs.extend(_runs(ins.slots[ptr[k] : ptr[k + 1]]))
                    rptr.append(len(runs))
                extra = (
                    np.asarray(runs, dtype=np.int64).reshape(-1, 2),
                    np.asarray(rptr, dtype=np.int64),
                )
            args = (g.size, g.out_start, *(p.col for p in params), *state, *extra)
            if user and self.sandbox is not None:
                general = self._remote_group(g, specs, params, bus_key, slots_key, setup_faults)
                if general.key is not None:
                    keys.append(general.key)
            elif g.kernel == PYTHON_KERNEL:
                general = self._python_group(g, specs, params, objects, takeovers, setup_faults)
            elif g.kernel == SAMPLE_KERNEL:
                general = _sample_group(g, params, state, bus)
            else:
                general = kernels.load(g.kernel)
            fixed = None
            if g.cls.fixed_kernel and all(
                g.bindings[name].kind == "const" for name in g.cls.fixed_params
            ):
                fixed = kernels.load(g.cls.fixed_kernel)
            rt = _Runtime(
                g,
                fixed or general,
                kernels.load(g.post_kernel) if g.post_kernel else None,
                params,
                state,
                args,
                general,
                fixed,
            )
            rt.gathers = [p for p in params if p.binding.kind == "gather"]
            runtimes.append(rt)
            for k, i in enumerate(g.ids):
                where[i] = (rt, k)
        # outputs in the order compile_schedule mixes them
        lanes = fade.lanes(outputs) if fade is not None else None
        copies = [
            (dst, src, None, None) if ks is None else (dst, src, _index(ks), _index(js))
            for dst, src, ks, js in carry.values()
        ]
        return Plan(
            request,
            generation,
            basis,
            setseq,
            [(type_name(g.cls), g.cls) for g in sched.groups],
            nodes,
            outputs,
            fade,
            disabled,
            sched,
            bus,
            runtimes,
            where,
            objects,
            copies,
            takeovers,
            np.asarray(sched.left, dtype=np.int64),
            np.asarray(sched.right, dtype=np.int64),
            lanes,
            FEEDBACK_CHUNK if sched.has_feedback else self.blocksize,
            setup_faults=setup_faults,
            sandbox_keys=keys,
        )

    def _install(self, plan: Plan) -> None:
        """Make ``plan`` the patch rendered: state of the modules that stay copied now.

        A glide set for the next block (``set(..., ramp=True)``) still glides.
        """
        glides = [
            (rt.group.ids[k], p.name, float(p.ramp_from[k]))
            for rt in self._ramping
            for p in rt.ramps
            for k in range(rt.group.size)
            if p.ramp_from[k] != p.vals[k]
        ]
        for dst, src, ks, js in plan.carry:
            if ks is None:
                dst[...] = src  # state shared by the group (a write position)
            else:
                dst[..., ks] = src[..., js]
        for obj, old in plan.takeovers:
            # a redefined class: the new object takes over what the old one holds now
            d = obj.__dict__
            for key, value in old.__dict__.items():
                if key in d and _same_kind(d[key], value):
                    d[key] = value
        self.nodes = plan.nodes
        self.outputs = plan.outputs
        self._fade = plan.fade
        self._after = plan.after
        self.disabled = set(plan.disabled)
        for i in [i for i in self.faults if i not in self.nodes]:
            del self.faults[i]  # freed: an id used again is a new module
        if self.sandbox is not None and plan.sandbox_keys:
            after = plan.after.sandbox_keys if plan.after is not None else []
            self.sandbox.retain(plan.sandbox_keys + after)
        if plan.setup_faults:
            for i, why in plan.setup_faults:  # muted alone; dropped from the schedule next span
                self._fault([i], why, rebuild=False)
        self.schedule = plan.schedule
        self.bus = plan.bus
        self._runtimes = plan.runtimes
        self._ramping = []  # the new runtimes start from their target values
        self._posts = [rt for rt in plan.runtimes if rt.post is not None]
        self._where = plan.where
        for node_id, name, start in glides:
            self._glide_from(node_id, name, start)
        self._processors = plan.processors
        self._left = plan.left
        self._right = plan.right
        if plan.lanes is not None:
            self._lanes = plan.lanes
        self._chunk = plan.chunk
        self._changed.clear()
        self._generation += 1

    # -- code written in cells, in the sandbox (the engine) ---------------------------------

    def _sandbox_for(self, sched: Schedule) -> Any:
        """The sandbox, running, if this schedule has cell code to render there; else None.

        Off the block thread (a prepare), or with nothing playing, it waits for a
        sandbox that is starting; on a playing block thread it does not, and the
        cell code is silent until the sandbox is up and the patch built again.
        """
        sandbox = self.sandbox
        if sandbox is None or not any(
            g.kernel in (PYTHON_KERNEL, SAMPLE_KERNEL) for g in sched.groups
        ):
            return None
        if not sandbox.ready.is_set():
            sandbox.ensure_started()
            if not self._on_block_thread():
                from .engine.sandbox import START_TIMEOUT

                sandbox.ready.wait(START_TIMEOUT)
        return sandbox if sandbox.ready.is_set() else None

    def _on_block_thread(self) -> bool:
        """True on the engine's playing block thread, which must not wait for the sandbox."""
        return threading.current_thread() is threading.main_thread() and bool(self._runtimes)

    def _shared(self, sandbox: Any, shape: tuple, dtype: Any) -> tuple[np.ndarray, int]:
        """A zeroed array the sandbox maps too (with the next group it defines), and its key."""
        from .engine.sandbox import shared_zeros

        arr, fd = shared_zeros(tuple(shape), dtype)
        key = sandbox.key()
        sandbox.map_later(key, tuple(shape), np.dtype(dtype).str, fd)
        return arr, key

    def _remote_group(
        self,
        g: Group,
        specs: list[NodeSpec],
        params: list[_Param],
        bus_key: int | None,
        slots_key: int | None,
        setup_faults: list[tuple[int, str]],
    ) -> Any:
        """A callable with a kernel's signature that has the sandbox render group ``g``.

        Its ``key`` attribute is the group's key in the sandbox (None when the
        sandbox was not there to define it: the group renders silence).
        """
        from .engine.sandbox import SandboxGone

        sandbox = self.sandbox
        out, chans, n = g.out_start, g.channels, g.size
        ids = list(g.ids)
        cols = [p.col for p in params]
        key = None
        if bus_key:
            key = sandbox.key()
            if g.kernel == PYTHON_KERNEL:
                instances = [(sp.id, sp.name, dict(sp.values), dict(sp.options)) for sp in specs]
                budget = self.user_budget or sandbox.budget
                payload: tuple = (
                    [p.name for p in params],
                    out,
                    chans,
                    n,
                    instances,
                    self.samplerate,
                    budget,
                )
            else:
                payload = (n, out)
            try:
                blob = sandbox.blob(g.cls)
                msg = ("group", key, g.kernel, type_name(g.cls), blob, bus_key, slots_key, cols)
                answer = sandbox.request((*msg, payload), wait=not self._on_block_thread())
            except (SandboxGone, JupysynthError) as exc:
                answer = ("error", str(exc))
            if answer[0] == "error":
                if isinstance(answer[1], str) and "busy" in answer[1]:
                    self.rebalance_wanted = True  # not its fault: built again in a moment
                else:
                    setup_faults.extend((i, answer[1]) for i in ids)
                key = None
            else:
                setup_faults.extend((ids[k], why) for k, why in answer[1])
                sandbox.owners[key] = ids
        generation = sandbox.generation

        def silent(a: int, b: int, sr: float, bus: np.ndarray, *_: Any) -> None:
            bus[a:b, out : out + chans * n] = 0.0
            if sandbox.ready.is_set():  # it is back (or was busy): build the patch on it
                self.rebalance_wanted = True
            else:
                sandbox.ensure_started()

        def run(a: int, b: int, sr: float, bus: np.ndarray, *_: Any) -> None:
            if key is None or sandbox.generation != generation or not sandbox.ready.is_set():
                silent(a, b, sr, bus)
                return
            try:
                faults = sandbox.run(key, a, b)
            except SandboxGone as exc:
                bus[a:b, out : out + chans * n] = 0.0
                gone = [i for i in exc.culprits if i in self.nodes]
                if gone:
                    self._fault(gone, str(exc), rebuild=False)
                sandbox.restart_later()  # its groups are silent until the patch is built on it
                return
            if faults is None:  # late: this span is silence
                bus[a:b, out : out + chans * n] = 0.0
                return
            for i, why in faults:
                if i in self.nodes:
                    self._fault([i], why, rebuild=False)

        run.key = key  # type: ignore[attr-defined]
        return run

    def _python_group(
        self,
        g: Group,
        specs: list[NodeSpec],
        params: list[_Param],
        objects: dict[int, Module],
        takeovers: list[tuple[Module, Module]],
        setup_faults: list[tuple[int, str]],
    ) -> Any:
        """A callable with a kernel's signature that runs each instance's ``process``.

        Each instance is an object of the module's class living in this process:
        its attributes are its state.  When the class was redefined (a cell run
        again), the new object takes over the old one's attributes that it also
        has (when the plan is installed), so a running sound keeps its state.
        An instance that raises is muted alone, in ``setup()`` (listed in
        ``setup_faults``, muted when the plan is installed) as in ``process()``.
        With :attr:`user_budget` set (the engine), anything it raises counts,
        ``SystemExit`` and ``KeyboardInterrupt`` too, and a call that takes
        longer than the budget is stopped (:mod:`jupysynth.guard`).
        """
        budget = self.user_budget
        catch: type[BaseException] = BaseException if budget is not None else Exception
        objs: list[Module] = []
        for spec in specs:
            old = objects.get(spec.id)
            if old is not None and type(old) is g.cls:
                objs.append(old)
                continue
            obj = object.__new__(g.cls)
            obj.__dict__.update(
                id=spec.id,
                name=spec.name,
                _values=dict(spec.values),
                _opts=dict(spec.options),
                _listeners=[],
                _rendering=True,
                samplerate=self.samplerate,
            )
            setup = getattr(obj, "setup", None)
            if callable(setup):
                try:
                    if budget is None:
                        setup()
                    else:
                        guard.call(setup, {}, SETUP_BUDGET)
                except catch:
                    setup_faults.append((spec.id, "setup() failed:\n" + traceback.format_exc()))
                    objs.append(obj)  # never called: muted from the install on
                    continue
            if old is not None:
                takeovers.append((obj, old))
            objects[spec.id] = obj
            objs.append(obj)
        names = [p.name for p in params]
        cols = [p.col for p in params]
        out, chans, n = g.out_start, g.channels, g.size

        def run(a: int, b: int, sr: float, bus: np.ndarray, *_: Any) -> None:
            for k, obj in enumerate(objs):
                if obj.id in self.disabled:
                    continue
                kwargs = process_inputs(bus, a, b, names, cols, k)
                try:
                    if budget is None:
                        y = obj.process(**kwargs)
                    else:
                        y = guard.call(obj.process, kwargs, budget)
                    write_output(bus, a, b, y, out, n, chans, k)
                except catch:
                    for c in range(chans):
                        bus[a:b, out + c * n + k] = 0.0
                    self._fault([obj.id], traceback.format_exc(), rebuild=False)

        return run

    def _make_state(
        self,
        g: Group,
        specs: list[NodeSpec],
        old: dict[int, tuple[_Runtime, int]],
        carry: dict[Any, tuple],
        alloc: Any = None,
    ) -> list[np.ndarray]:
        """New state arrays for group ``g``: initial values for new modules, and in
        ``carry`` what to copy from the old arrays of the modules that stay."""
        n = g.size
        arrays = []
        for sdecl in g.cls.state:
            lead = g.cls.state_lead(sdecl, specs, self.samplerate)
            shape = lead if sdecl.shared else (*lead, n)
            if alloc is None:
                arr = np.zeros(shape, dtype=np.dtype(sdecl.dtype))
            else:
                arr = alloc(shape, np.dtype(sdecl.dtype))
            arrays.append(arr)
        names = [s.name for s in g.cls.state]
        for k, spec in enumerate(specs):
            prev = old.get(spec.id)
            if prev is not None and prev[0].group.kernel == g.kernel:
                rt, j = prev
                for sdecl, src, dst in zip(g.cls.state, rt.state, arrays):
                    if sdecl.shared:
                        if src.shape == dst.shape:
                            carry[id(dst)] = (dst, src, None, None)  # the last module's wins
                    elif src.shape[:-1] == dst.shape[:-1]:  # else resized: start it empty
                        entry = carry.get((id(dst), id(src)))
                        if entry is None:
                            entry = carry[(id(dst), id(src))] = (dst, src, [], [])
                        entry[2].append(k)
                        entry[3].append(j)
            else:
                for name, value in g.cls.init_state(spec).items():
                    arrays[names.index(name)][..., k] = value
        return arrays

    # -- control -------------------------------------------------------------------------

    def set(
        self, node_id: int, name: str, value: float | tuple[int, int], ramp: bool = False
    ) -> None:
        """Change a parameter now (``ramp``: glide to it across the next block).

        A number lands on the next frame rendered; connecting or disconnecting
        a signal rebuilds the schedule (state is kept).
        """
        spec = self.nodes.get(node_id)
        if spec is None:
            raise PatchError(f"module #{node_id} is not in this patch")
        if name not in spec.values:
            cls = module_types()[spec.type]
            raise ParamError(
                f"unknown parameter {name!r} for {spec.type}; valid: "
                + ", ".join(p.name for p in cls.params)
            )
        was = spec.values[name]
        spec.values[name] = value
        self._setseq += 1
        self._changed[(node_id, name)] = self._setseq  # a plan being prepared takes it too
        placed = self._where.get(node_id)
        if placed is None:
            return  # muted or unreachable: the value is kept for a rebuild
        rt, k = placed
        p = next(p for p in rt.params if p.name == name)
        if isinstance(value, tuple) or isinstance(was, tuple) or p.binding.kind == "bus":
            self._compile()
            return
        if ramp and p.binding.kind == "const":
            self._glide(rt, p)
            p.vals[k] = value
            return
        p.vals[k] = value
        if p.ramp_from is not None:
            p.ramp_from[k] = value
        if p.binding.kind == "const":
            # rows already rendered this block are spent: rewrite the whole column
            self.bus[:, p.col + k] = value

    def update(
        self, nodes: dict[int, NodeSpec], outputs: list[tuple[int, int, int]], fade: int = 0
    ) -> None:
        """Replace the patch; modules that stay keep their state (no click, no reset).

        The same as ``apply(prepare(nodes, outputs, fade))``.

        Parameters
        ----------
        nodes, outputs
            The new patch, as from :func:`jupysynth.graph.snapshot`.
        fade : int
            Crossfade over this many frames: outputs that leave fade out while
            the ones that arrive fade in (linear, so re-running an unchanged
            cell sounds unchanged), then the modules only the old patch used
            are dropped.  0 switches at once.
        """
        self.apply(self.prepare(nodes, outputs, fade))

    def prepare(
        self, nodes: dict[int, NodeSpec], outputs: list[tuple[int, int, int]], fade: int = 0
    ) -> Plan:
        """Build what :meth:`update` would install, without touching what renders now.

        Safe to call on another thread while :meth:`process` runs: it compiles
        the schedule, allocates the bus and state, loads the kernels (numba
        compiles a module's per-sample function here) and makes the objects of
        modules written in Python, all of which takes milliseconds (a second
        for a new per-sample function).  :meth:`apply` then installs it between
        two blocks in microseconds.

        Parameters
        ----------
        nodes, outputs, fade
            As for :meth:`update`.  The renderer keeps ``nodes``' specs: a
            caller that edits them afterwards should pass copies.

        Returns
        -------
        Plan
            For :meth:`apply`.

        Examples
        --------
        >>> import jupysynth as js
        >>> from jupysynth.graph import snapshot
        >>> r = js.Renderer(*snapshot(js.Sine(freq=220)))
        >>> plan = r.prepare(*snapshot(js.Saw(freq=110)))  # e.g. on a worker thread
        >>> r.apply(plan)  # between two blocks
        True
        """
        # the basis first: _install bumps the generation last, so whatever the block
        # thread changes after this read makes the plan stale, never silently wrong
        generation, basis, setseq = self._generation, frozenset(self.disabled), self._setseq
        cur_nodes, cur_outputs = self.nodes, self.outputs
        request = (nodes, outputs, int(fade))
        fading, new_nodes, new_outputs = Crossfade.begin(
            cur_nodes, cur_outputs, nodes, outputs, int(fade)
        )
        disabled = frozenset(i for i in basis if i in new_nodes)
        plan = self._build(
            request, new_nodes, new_outputs, disabled, fading, self._where, self._processors
        )
        plan.generation, plan.basis, plan.setseq = generation, basis, setseq
        if fading is not None:
            # what remains once faded, built now so the end of the fade costs no compile
            final = fading.nodes
            after = self._build(
                (final, fading.outputs, 0),
                final,
                fading.outputs,
                frozenset(i for i in disabled if i in final),
                None,
                plan.where,
                plan.processors,
            )
            after.generation = plan.generation + 1
            after.basis = plan.disabled
            plan.after = after
        return plan

    def apply(self, plan: Plan, redo: bool = True) -> bool:
        """Install a plan from :meth:`prepare`, between two blocks (cheap).

        The modules that stay carry their state as it is now, and the parameter
        values :meth:`set` since the plan was prepared are kept.

        Parameters
        ----------
        plan : Plan
            From :meth:`prepare` on this renderer.
        redo : bool, default True
            When the renderer's structure changed since the plan was prepared
            (another update, a module muted for a fault, a crossfade that
            ended) or a module class it compiled was redefined, the plan is
            stale: prepare it again now and install that (True), or install
            nothing and return False.

        Returns
        -------
        bool
            True if a patch was installed.
        """
        registry = Module._registry
        if (
            plan.generation != self._generation
            or plan.basis != self.disabled
            or any(registry.get(name) is not cls for name, cls in plan.types)
        ):
            if not redo:
                return False
            plan = self.prepare(*plan.request)
        late = []
        for (node_id, name), seq in self._changed.items():
            spec = self.nodes.get(node_id)
            if seq > plan.setseq and spec is not None:
                late.append((node_id, name, spec.values.get(name)))
        self._install(plan)
        for node_id, name, value in late:
            self.keep_value(node_id, name, value)
        return True

    def _glide_from(self, node_id: int, name: str, start: float) -> None:
        """Have a number parameter glide from ``start`` to its value across the next block."""
        placed = self._where.get(node_id)
        if placed is None:
            return
        rt, k = placed
        p = next((p for p in rt.params if p.name == name), None)
        if p is None or p.binding.kind != "const":
            return  # a signal there now: nothing to glide
        self._glide(rt, p)
        p.ramp_from[k] = start

    def _glide(self, rt: _Runtime, p: _Param) -> None:
        """Have ``p`` glide across the next block, from its values as they are now."""
        if p.ramp_from is None:
            p.ramp_from = p.vals.copy()
            if not rt.ramps:
                self._ramping.append(rt)
            rt.ramps.append(p)

    def keep_value(self, node_id: int, name: str, value: Any) -> None:
        """Write a number set while the installed plan was prepared into its runtime
        (no glide: the value it had in the renderer that played the block before)."""
        placed = self._where.get(node_id)
        spec = self.nodes.get(node_id)
        if placed is None or spec is None or not isinstance(value, numbers.Real):
            return
        if not isinstance(spec.values.get(name), numbers.Real):
            return  # a signal there now (or no such parameter): the plan's patch stands
        spec.values[name] = value
        rt, k = placed
        for p in rt.params:
            if p.name == name and p.binding.kind != "bus":
                p.vals[k] = value
                if p.binding.kind == "const":
                    self.bus[:, p.col + k] = value

    def revive(self, ids: Iterable[int]) -> None:
        """Unmute modules whose code was replaced (a redefined class); they render again.

        Takes effect at the next :meth:`update`, which also swaps them to the new class.
        """
        for i in ids:
            self.disabled.discard(i)
            self.faults.pop(i, None)
        self._generation += 1  # a plan prepared with them muted is stale

    def export_state(self, ids: Iterable[int]) -> States:
        """Copies of the state of modules ``ids``, to hand to another renderer.

        A group at a time (see :class:`States`); for a module written in
        Python with ``process``, the attributes of its object that pickle come
        along.  Modules not rendered here (muted, unknown) are left out.
        """
        by_group: dict[int, tuple[_Runtime, list[int], list[int]]] = {}
        for i in ids:
            placed = self._where.get(i)
            if placed is not None:
                rt, k = placed
                got = by_group.setdefault(id(rt), (rt, [], []))
                got[1].append(i)
                got[2].append(k)
        out = States()
        for rt, gids, ks in by_group.values():
            cols = np.asarray(ks, dtype=np.int64)
            arrays = [
                arr.copy() if decl.shared else arr[..., cols]
                for decl, arr in zip(rt.group.cls.state, rt.state)
            ]
            shared = [bool(decl.shared) for decl in rt.group.cls.state]
            out.chunks.append((np.asarray(gids, dtype=np.int64), arrays, shared))
            if self._processors:
                for i in self._processors.keys() & set(gids):
                    out.attrs[i] = _picklable_attrs(self._processors[i])
        return out

    def import_state(self, states: States) -> None:
        """Write states from :meth:`export_state` into this renderer's same modules.

        An array whose shape differs (a resized delay line) is skipped; state
        shared by a whole group (a Delay's write position) is taken only when
        every module of the group here comes from one group there, or it would
        move the others'.  Chunks apply in order: a later one wins.
        """
        for gids, arrays, shared in states.chunks:
            here: dict[int, tuple[_Runtime, list[int], list[int]]] = {}
            for p, i in enumerate(gids.tolist()):
                placed = self._where.get(i)
                if placed is not None:
                    rt, k = placed
                    got = here.setdefault(id(rt), (rt, [], []))
                    got[1].append(p)
                    got[2].append(k)
            for rt, ps, ks in here.values():
                alone = len(ks) == len(rt.group.ids)
                pick = np.asarray(ps, dtype=np.int64)
                cols = np.asarray(ks, dtype=np.int64)
                for arr, src, is_shared in zip(rt.state, arrays, shared):
                    if is_shared:
                        if alone and arr.shape == src.shape:
                            arr[...] = src
                    elif arr.shape[:-1] == src.shape[:-1]:
                        arr[..., cols] = src[..., pick]
        for i, attrs in states.attrs.items():
            obj = self._processors.get(i)
            if obj is not None and attrs:
                obj.__dict__.update(attrs)

    # -- rendering -----------------------------------------------------------------------

    def process(
        self,
        frames: int,
        events: Sequence[tuple[int, int, str, Any]] = (),
        due: Callable[[], float] | None = None,
    ) -> np.ndarray:
        """Render ``frames`` (at most the block size) and return the stereo block.

        Parameters
        ----------
        frames : int
            How many frames to render.
        events : sequence
            ``(offset, node_id, name, value)`` sorted by offset < frames: each
            change lands exactly at that frame of this block.
        due : callable, optional
            Seconds left until a device needs the block.  This renderer renders
            everything in this thread, so it cannot be late in part; a worker
            pool plays a late worker's part as silence once none are left.

        Returns
        -------
        numpy.ndarray
            A float32 view ``(frames, 2)`` of the renderer's output buffer,
            overwritten by the next call.
        """
        if frames > self.blocksize:
            raise ParamError(f"cannot render {frames} frames in one block of {self.blocksize}")
        # no list is built per block unless something glides (RT-04: no allocation)
        ramps = self._ramping
        if ramps:
            self._ramping = []
        for rt in ramps:
            for p in rt.ramps:
                _RAMP(0, frames, self.bus, p.col, p.ramp_from, p.vals)
                if p.name in rt.group.cls.fixed_params:
                    rt.fn = rt.general  # the value glides: read it per sample
        a = 0
        ev = 0
        sr = self.samplerate
        while a < frames:
            while ev < len(events) and events[ev][0] <= a:
                _, nid, name, value = events[ev]
                self.set(nid, name, value)
                ev += 1
            b = min(frames, (a // self._chunk + 1) * self._chunk)
            if ev < len(events):
                b = min(b, max(events[ev][0], a + 1))
            self._render_span(a, b, sr)
            a = b
        for rt in ramps:
            for p in rt.ramps:
                p.ramp_from = None
                _FILL(self.bus, p.col, p.vals)
            rt.ramps.clear()
            rt.fn = rt.fixed or rt.general
        self.frame += frames
        return self.out if frames == self.blocksize else self.out[:frames]

    def _render_span(self, a: int, b: int, sr: float) -> None:
        bus = self.bus
        timing = self.timing
        for rt in self._runtimes:
            for p in rt.gathers:
                _GATHER(a, b, bus, p.col, p.slots, p.vals)
            try:
                if timing:
                    t = _clock()
                    rt.fn(a, b, sr, bus, *rt.args)
                    rt.spent += _clock() - t
                    rt.timed += b - a
                else:
                    rt.fn(a, b, sr, bus, *rt.args)
            except Exception:  # a kernel that raises is muted, the rest plays on
                g = rt.group
                bus[a:b, g.out_start : g.out_start + g.channels * g.size] = 0.0
                self._fault(g.ids, traceback.format_exc(), rebuild=False)
        for rt in self._posts:
            rt.post(a, b, sr, bus, *rt.args)
        fade = self._fade
        if fade is None:
            _MIX_OUT(a, b, bus, self._left, self._right, self.out)
        elif fade.mix(a, b, bus, self._left, self._right, self._lanes, self.out):
            # faded: drop what only the old patch used (prepared with the fade)
            after = self._after
            if after is not None and after.generation == self._generation:
                self.apply(after)
            else:
                self.update(fade.nodes, fade.outputs)
        if not _ALL_SANE(self.out, a, b, ABSURD):
            self._find_culprit(a, b)
        elif self._stale:
            self._rebuild_after_fault()

    def take_costs(self) -> dict[str, tuple[float, int]]:
        """What each module type cost since the last call, while :attr:`timing` is on.

        Returns ``{type name: (seconds, instance-frames)}``: the time in its
        kernels and the frames its instances rendered in that time.
        """
        out: dict[str, tuple[float, int]] = {}
        for rt in self._runtimes:
            if rt.timed:
                name = type_name(rt.group.cls)
                spent, frames = out.get(name, (0.0, 0))
                out[name] = (spent + rt.spent, frames + rt.timed * rt.group.size)
                rt.spent, rt.timed = 0.0, 0
        return out

    # -- faults --------------------------------------------------------------------------

    def _find_culprit(self, a: int, b: int) -> None:
        """Mute the module that made the output NaN, infinite or absurdly loud; clean the span."""
        culprit, why = None, ""
        when = (self.frame + a) / self.samplerate
        for rt in self._runtimes:
            g = rt.group
            cols = self.bus[a:b, g.out_start : g.out_start + g.channels * g.size]
            bad = ~np.isfinite(cols).all(axis=0)
            if bad.any():
                culprit = g.ids[int(np.argmax(bad)) % g.size]
                why = f"produced NaN or infinity at {when:.4f} s"
                break
        if culprit is None:  # finite: an output module far louder than any sound
            played = {o[0] for o in self.outputs}
            for rt in self._runtimes:
                g = rt.group
                for k, i in enumerate(g.ids):
                    if i not in played:
                        continue
                    cols = g.out_start + k + g.size * np.arange(g.channels)
                    peak = float(np.abs(self.bus[a:b, cols]).max())
                    if peak > ABSURD:
                        culprit = i
                        why = (
                            f"produced {peak:.3g} at {when:.4f} s, more than {ABSURD:g} "
                            "(+80 dBFS): 1.0 is full scale; check its amp"
                        )
                        break
                if culprit is not None:
                    break
        if culprit is not None:
            self._fault([culprit], why)
        seg = self.out[a:b]
        np.nan_to_num(seg, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        seg[np.abs(seg) > ABSURD] = 0.0

    def _fault(self, ids: Iterable[int], why: str, rebuild: bool = True) -> None:
        ids = [i for i in ids if i not in self.disabled]
        if not ids:
            return
        for i in ids:
            label = self.nodes[i].label()
            self.faults[i] = f"{label} {why.strip()}"
            self.disabled.add(i)
            warnings.warn(
                f"{label} {why.strip().splitlines()[-1]}; it is muted, the rest plays on",
                JupysynthWarning,
                stacklevel=4,
            )
        self._stale = True
        if rebuild:
            self._rebuild_after_fault()

    def _rebuild_after_fault(self) -> None:
        """Drop the muted modules from the schedule (after the span that caught them)."""
        self._stale = False
        for rt in self._runtimes:
            for arr in rt.state:
                if arr.dtype.kind == "f":
                    _SCRUB(arr.reshape(-1))
        self._compile()


_GATHER = kernels.load("bus.gather")
_MIX_OUT = kernels.load("bus.mix_out")
_ALL_SANE = kernels.load("bus.all_sane")
_SCRUB = kernels.load("bus.scrub")
_RAMP = kernels.load("bus.ramp")
_FILL = kernels.load("bus.fill")


def _events_for(
    events: Iterable[Event], nodes: dict[int, NodeSpec], samplerate: float
) -> list[tuple[int, int, str, Any]]:
    out = []
    for item in events:
        try:
            t, module, name, value = item
        except (TypeError, ValueError):
            raise ParamError(
                f"an event is (time_seconds, module, param_name, value), got {item!r}"
            ) from None
        if not isinstance(module, Module):
            raise ParamError(f"event {item!r}: the second item must be a module")
        if module.id not in nodes:
            raise PatchError(f"event {item!r}: {module._short()} is not part of the rendered patch")
        if not isinstance(t, (int, float)) or not np.isfinite(t) or t < 0:
            raise ParamError(f"event {item!r}: time must be a number of seconds >= 0")
        if name not in module._param_index:
            raise module._unknown(name)
        checked = module._checked(name, value)
        if isinstance(checked, Port):
            if checked.module.id not in nodes:
                nodes.update(snapshot(checked.module)[0])
            checked = (checked.module.id, checked.index)
        frame = int(round(t * samplerate))
        out.append((frame, module.id, name, checked))
    out.sort(key=lambda e: e[0])
    return out


def render(
    patch: Module | Port | Iterable[Module | Port],
    seconds: float,
    samplerate: int = 48000,
    blocksize: int = 64,
    events: Iterable[Event] | None = None,
) -> np.ndarray:
    """Render a patch offline into a stereo float32 array, deterministically.

    Parameters
    ----------
    patch : Module or list of Module
        What to hear: modules summed to the output; a mono module goes to both
        channels, a stereo one (``Pan``) to its own sides.
    seconds : float
        Duration.
    samplerate : int, default 48000
        Sample rate in Hz.
    blocksize : int, default 64
        Frames per block.  The output does not depend on it.
    events : iterable of (time_seconds, module, param_name, value), optional
        Parameter changes, each applied at its exact sample ``round(t * sr)``.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(frames, 2)``.

    Examples
    --------
    >>> import jupysynth as js
    >>> osc = js.Sine(freq=220, amp=0.5)
    >>> x = js.render(osc, 0.5, events=[(0.25, osc, "freq", 330)])
    >>> x.shape, x.dtype
    ((24000, 2), dtype('float32'))
    """
    if not isinstance(seconds, (int, float)) or not np.isfinite(seconds) or seconds < 0:
        raise ParamError(f"seconds must be a number >= 0, got {seconds!r}")
    nodes, outputs = snapshot(patch)
    evs = _events_for(events or (), nodes, samplerate)
    renderer = Renderer(nodes, outputs, samplerate, blocksize)
    total = int(round(seconds * samplerate))
    result = np.empty((total, 2), dtype=np.float32)
    pos = 0
    ev = 0
    while pos < total:
        n = min(blocksize, total - pos)
        start = ev
        while ev < len(evs) and evs[ev][0] < pos + n:
            ev += 1
        block_events = [(f - pos, i, k, v) for f, i, k, v in evs[start:ev]]
        result[pos : pos + n] = renderer.process(n, block_events)
        pos += n
    return result


def write_wav(
    path: str | Path, samples: np.ndarray, samplerate: int = 48000, format: str = "int16"
) -> Path:
    """Write samples to a WAV file.

    Parameters
    ----------
    path : str or Path
        Where to write.
    samples : numpy.ndarray
        ``(frames,)`` or ``(frames, channels)``, floats in [-1, 1].
    samplerate : int
        Sample rate in Hz.
    format : {"int16", "float32"}
        16-bit PCM (plays everywhere; clipped to [-1, 1]) or 32-bit float (lossless).

    Returns
    -------
    Path
        The file written.
    """
    import wave

    path = Path(path)
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ParamError(f"samples must be (frames,) or (frames, channels), got {x.shape}")
    if format == "int16":
        pcm = np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2")
        with wave.open(str(path), "wb") as w:
            w.setnchannels(x.shape[1])
            w.setsampwidth(2)
            w.setframerate(int(samplerate))
            w.writeframes(pcm.tobytes())
    elif format == "float32":
        import struct

        data = x.astype("<f4").tobytes()
        ch = x.shape[1]
        header = b"RIFF" + struct.pack("<I", 4 + 26 + 12 + 8 + len(data)) + b"WAVE"
        fmt = struct.pack(
            "<HHIIHHH", 3, ch, int(samplerate), int(samplerate) * 4 * ch, 4 * ch, 32, 0
        )
        fact = b"fact" + struct.pack("<II", 4, x.shape[0])
        path.write_bytes(
            header
            + b"fmt "
            + struct.pack("<I", len(fmt))
            + fmt
            + fact
            + b"data"
            + struct.pack("<I", len(data))
            + data
        )
    else:
        raise ParamError(f"format={format!r} is not supported; use 'int16' or 'float32'")
    return path
