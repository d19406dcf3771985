"""Describing a patch: modules, their parameters, connections and arithmetic.

Nothing here renders sound or imports numba: a :class:`Module` is a light proxy
holding a type, an id, parameter values and connections.  ``snapshot`` turns the
modules reachable from some outputs into plain :class:`NodeSpec` records, which
is all the renderer (offline or in the engine process) needs.

Examples
--------
>>> from jupysynth import Sine, LowPass, Saw
>>> lfo = Sine(freq=0.5)
>>> voice = LowPass(Saw(freq=110), cutoff=1000 + 500 * lfo, q=2)
>>> voice.cutoff
MulAdd(input=Sine#..., mul=500.0, add=1000.0)#...
"""

from __future__ import annotations

import difflib
import itertools
import math
import numbers
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .errors import JupysynthWarning, ParamError, PatchError

__all__ = [
    "Param",
    "State",
    "Port",
    "Module",
    "MulAdd",
    "Mix",
    "NodeSpec",
    "snapshot",
    "module_types",
    "register_type",
    "type_name",
    "watch_types",
]

_ids = itertools.count(1)


@dataclass(frozen=True)
class Param:
    """A parameter's declaration: name, default, range, unit and scale.

    Parameters
    ----------
    name : str
        The name musicians use (``freq``, ``cutoff``, ``q``, ``attack``).
    default : float
        Value when the constructor does not give one.
    min, max : float
        The accepted range for a number; a modulating signal is clamped by the
        kernel where the math needs it (a cutoff above Nyquist, a Q of zero).
    unit : str
        Shown next to knobs: ``"Hz"``, ``"s"``, ``"cycles"``, ``""``.
    scale : {"lin", "log"}
        How a knob maps to the value.
    doc : str
        One line for panels and ``help``.
    signal : bool
        Whether another module's output may drive it per sample.
    """

    name: str
    default: float
    min: float
    max: float
    unit: str = ""
    scale: str = "lin"
    doc: str = ""
    signal: bool = True

    def check(self, owner: str, value: float) -> float:
        """Return ``value`` as a float, or raise :class:`ParamError` saying what is wrong."""
        if isinstance(value, bool):
            value = float(value)
        if not isinstance(value, numbers.Real):
            raise ParamError(
                f"{owner}.{self.name} takes a number or a module, "
                f"not {type(value).__name__} {value!r}"
            )
        v = float(value)
        if not math.isfinite(v):
            raise ParamError(f"{owner}.{self.name} must be a finite number, got {v}")
        if not (self.min <= v <= self.max):
            unit = f" {self.unit}" if self.unit else ""
            raise ParamError(
                f"{owner}.{self.name}={v:g}{unit} is out of range; "
                f"use a value from {self.min:g} to {self.max:g}{unit}"
            )
        return v


@dataclass(frozen=True)
class State:
    """A kernel's state array: per instance (last axis) unless ``shared`` by the group.

    ``lead`` is the shape before the instance axis (``(7,)`` for seven filter
    poles); a module may compute it from its instances in ``state_lead``.
    """

    name: str
    dtype: str
    lead: tuple[int, ...] = ()
    shared: bool = False


@dataclass(frozen=True)
class Port:
    """One output channel of a module, used as a signal source."""

    module: Module
    index: int = 0

    # arithmetic on a port builds the same modules as arithmetic on a module
    def __add__(self, other: Any) -> Module:
        return _add(self, other)

    __radd__ = __add__

    def __mul__(self, other: Any) -> Module:
        return _mul(self, other)

    __rmul__ = __mul__

    def __sub__(self, other: Any) -> Module:
        return _add(self, _neg(other))

    def __rsub__(self, other: Any) -> Module:
        return _add(_neg(self), other)

    def __neg__(self) -> Module:
        return _neg(self)

    def __truediv__(self, other: Any) -> Module:
        return _mul(self, _reciprocal(other))

    def __repr__(self) -> str:
        names = self.module.port_names
        return f"{self.module._short()}.{names[self.index]}"


Value = float | Port


def _as_source(owner: str, pname: str, value: Any) -> Port | None:
    """The port a value refers to, or None if it is not a signal."""
    if isinstance(value, Port):
        port = value
    elif isinstance(value, Module):
        if value.channels != 1:
            raise PatchError(
                f"{owner}.{pname} needs a mono signal but {value._short()} is stereo; "
                f"use {value._short()}.left or .right"
            )
        port = Port(value, 0)
    else:
        return None
    return port


class Module:
    """Base class of every module: an oscillator, a filter, an envelope, arithmetic.

    A subclass declares ``params`` (a tuple of :class:`Param`), the names that
    positional arguments bind to (``positional``), its number of output
    ``channels``, its per-instance ``state`` (name, dtype, shape before the
    instance axis) and the ``kernel`` that renders all its instances at once,
    as ``"family.function"`` in :mod:`jupysynth.kernels`.

    Any parameter takes a number or another module's output.  Arithmetic on
    modules builds arithmetic modules: ``440 + 100 * lfo``, ``a * env``, ``-a``.

    A module written in a notebook cell declares ``params`` and, instead of a
    kernel, either a per-sample function ``sample(*params)`` (compiled by numba
    and batched over all instances; with ``sample_state = k`` it receives ``k``
    float64 slots of its own first) or a ``process(**params)`` method over numpy
    blocks (state in attributes, set up in an optional ``setup()``).  Running the
    cell again swaps the running instances to the new code, keeping their state.

    Examples
    --------
    >>> from jupysynth import Sine
    >>> osc = Sine(freq=440, amp=0.5)
    >>> osc.freq = 330
    >>> osc.freq
    330.0
    >>> import math
    >>> class Fold(Module):
    ...     params = (Param("input", 0.0, -1e30, 1e30), Param("drive", 1.0, 0.1, 20.0))
    ...     positional = ("input",)
    ...     @staticmethod
    ...     def sample(x, drive):
    ...         return math.sin(x * drive)
    """

    params: ClassVar[tuple[Param, ...]] = ()
    positional: ClassVar[tuple[str, ...]] = ()
    channels: ClassVar[int] = 1
    port_names: ClassVar[tuple[str, ...]] = ("out",)
    kernel: ClassVar[str] = ""
    post_kernel: ClassVar[str] = ""
    # a faster kernel with the same arguments, used while every instance of the
    # group has these parameters set to numbers (not signals, not gliding)
    fixed_kernel: ClassVar[str] = ""
    fixed_params: ClassVar[tuple[str, ...]] = ()
    state: ClassVar[tuple[State, ...]] = ()
    options: ClassVar[dict[str, Any]] = {}
    breaks_cycles: ClassVar[bool] = False
    reads_bus: ClassVar[bool] = False
    # a module written in a cell: a per-sample function (compiled, batched) with
    # ``sample_state`` float64 slots per instance, or a ``process`` over numpy blocks
    sample_state: ClassVar[int] = 0

    _registry: ClassVar[dict[str, type[Module]]] = {}
    _param_index: ClassVar[dict[str, Param]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._param_index = {p.name: p for p in cls.params}
        if "process" in cls.__dict__ and "kernel" not in cls.__dict__:
            cls.kernel = PYTHON_KERNEL
        elif "sample" in cls.__dict__ and "kernel" not in cls.__dict__:
            cls.kernel = SAMPLE_KERNEL
            if cls.sample_state:
                cls.state = (State("slots", "f8", (int(cls.sample_state),)),)
        if cls.kernel:
            # redefining a class (a cell run again) replaces it: running
            # instances are swapped to the new code at the next rebuild
            register_type(cls)
            _announce(cls)

    def __init__(self, *args: Any, name: str | None = None, **kwargs: Any) -> None:
        object.__setattr__(self, "id", next(_ids))
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "_values", {p.name: p.default for p in self.params})
        object.__setattr__(self, "_opts", dict(self.options))
        object.__setattr__(self, "_listeners", [])
        tname = type(self).__name__
        if len(args) > len(self.positional):
            raise ParamError(
                f"{tname} takes at most {len(self.positional)} positional argument(s) "
                f"({', '.join(self.positional) or 'none'}); pass the rest by name"
            )
        for pname, value in zip(self.positional, args):
            if pname in kwargs:
                raise ParamError(f"{tname} got {pname!r} both by position and by name")
            kwargs[pname] = value
        for key, value in kwargs.items():
            if key in self._param_index:
                self._values[key] = self._checked(key, value)
            elif key in self._opts:
                self._opts[key] = self._check_option(key, value)
            else:
                raise self._unknown(key)

    # -- introspection -------------------------------------------------------------

    @classmethod
    def spec(cls) -> dict[str, Param]:
        """The declared parameters by name, in order."""
        return dict(cls._param_index)

    @property
    def values(self) -> dict[str, Value]:
        """Current parameter values: numbers, or ports of modulating modules."""
        return dict(self._values)

    def option(self, key: str) -> Any:
        """The value of a construction option (an LFO's ``shape``, a noise ``seed``)."""
        return self._opts[key]

    def sources(self) -> Iterator[tuple[str, Port]]:
        """The (parameter, port) pairs through which other modules feed this one."""
        for pname, value in self._values.items():
            if isinstance(value, Port):
                yield pname, value

    def _short(self) -> str:
        return self.name or f"{type(self).__name__}#{self.id}"

    def __repr__(self) -> str:
        vals = ", ".join(
            f"{k}={v._short() if isinstance(v, Module) else v!r}" for k, v in self._shown().items()
        )
        return f"{type(self).__name__}({vals})#{self.id}"

    def _shown(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in self._values.items():
            out[k] = v.module if isinstance(v, Port) and v.module.channels == 1 else v
        return out

    # -- setting values --------------------------------------------------------------

    def _unknown(self, key: str) -> ParamError:
        valid = list(self._param_index) + list(self._opts)
        hint = difflib.get_close_matches(key, valid, n=1)
        did = f" (did you mean {hint[0]!r}?)" if hint else ""
        return ParamError(
            f"unknown parameter {key!r} for {type(self).__name__}{did}; "
            f"valid: {', '.join(valid) or 'none'}"
        )

    def _checked(self, key: str, value: Any) -> Value:
        param = self._param_index[key]
        port = _as_source(self._short(), key, value)
        if port is not None:
            if not param.signal:
                raise ParamError(f"{type(self).__name__}.{key} takes a number, not a signal")
            return port
        return param.check(type(self).__name__, value)

    def _check_option(self, key: str, value: Any) -> Any:
        default = self.options[key]
        if isinstance(default, str):
            choices = getattr(self, f"{key}_choices", None)
            if not isinstance(value, str) or (choices and value not in choices):
                raise ParamError(
                    f"{type(self).__name__} {key}={value!r} is not valid; "
                    f"choose one of {', '.join(choices or ())}"
                )
            return value
        if isinstance(default, bool) or not isinstance(value, numbers.Real):
            raise ParamError(f"{type(self).__name__} {key} takes a number, not {value!r}")
        return type(default)(value)

    def set(self, **kwargs: Any) -> Module:
        """Set several parameters at once; returns the module for chaining."""
        for key, value in kwargs.items():
            setattr(self, key, value)
        return self

    def __getattr__(self, key: str) -> Any:
        # only called when normal lookup fails: parameters live in _values
        if key.startswith("_"):
            raise AttributeError(key)
        values = self.__dict__.get("_values", {})
        if key in values:
            v = values[key]
            return v.module if isinstance(v, Port) and v.module.channels == 1 else v
        raise AttributeError(str(self._unknown(key)))

    def __setattr__(self, key: str, value: Any) -> None:
        if self.__dict__.get("_rendering"):
            object.__setattr__(self, key, value)  # a processor keeps its own state
            return
        if key in self._param_index:
            checked = self._checked(key, value)
            self._values[key] = checked
            for listener in list(self._listeners):
                listener(self, key, checked)
        elif key.startswith("_") or key in type(self).__dict__ or hasattr(type(self), key):
            object.__setattr__(self, key, value)
        else:
            raise self._unknown(key)

    def observe(self, callback: Callable[[Module, str, Value], None]) -> None:
        """Call ``callback(module, name, value)`` after every parameter change."""
        self._listeners.append(callback)

    def unobserve(self, callback: Callable[[Module, str, Value], None]) -> None:
        """Stop calling ``callback``."""
        if callback in self._listeners:
            self._listeners.remove(callback)

    # -- playing and showing (the engine and the notebook load only when used) ----------

    def play(self, engine: Any = None, at: float | None = None, fade: float = 0.0) -> Module:
        """Play this module on the live engine (the default one, started if needed)."""
        from .player.play import play

        play(self, engine, at=at, fade=fade)
        return self

    def stop(self, engine: Any = None, fade: float = 0.0) -> Module:
        """Stop playing this module (``fade`` seconds of fade-out)."""
        from .player.play import stop

        stop(self, engine, fade=fade)
        return self

    def knobs(self) -> Any:
        """A panel of sliders, one per parameter, linked both ways (ipywidgets)."""
        from .notebook.knobs import knobs

        return knobs(self)

    def scope(self, window: float = 0.02) -> Any:
        """A live, triggered oscilloscope of this module's output (bqplot)."""
        from .notebook.scope import scope

        return scope(self, window=window)

    def spectrum(self) -> Any:
        """A live spectrum of this module's output, log frequency and dB (bqplot)."""
        from .notebook.scope import spectrum

        return spectrum(self)

    # -- ports and arithmetic ------------------------------------------------------------

    @property
    def left(self) -> Port:
        """The first output channel."""
        return Port(self, 0)

    @property
    def right(self) -> Port:
        """The second output channel of a stereo module (the first of a mono one)."""
        return Port(self, 1 if self.channels > 1 else 0)

    def __add__(self, other: Any) -> Module:
        return _add(self, other)

    __radd__ = __add__

    def __mul__(self, other: Any) -> Module:
        return _mul(self, other)

    __rmul__ = __mul__

    def __sub__(self, other: Any) -> Module:
        return _add(self, _neg(other))

    def __rsub__(self, other: Any) -> Module:
        return _add(_neg(self), other)

    def __neg__(self) -> Module:
        return _neg(self)

    def __truediv__(self, other: Any) -> Module:
        return _mul(self, _reciprocal(other))

    # modules are graph nodes: identity, not value, decides equality
    __hash__ = object.__hash__

    # -- rendering hooks (used by the renderer, never per sample) ------------------------

    def kernel_name(self) -> str:
        """The kernel that renders this instance; instances sharing it are batched."""
        return self.kernel

    def extra_sources(self) -> list[Port]:
        """Signal inputs beyond parameters (a :class:`Mix`'s list of inputs)."""
        return []

    @classmethod
    def init_state(cls, spec: NodeSpec) -> dict[str, Any]:
        """Initial per-instance state values (default: zeros) for one instance."""
        return {}

    @classmethod
    def state_lead(cls, state: State, specs: list[NodeSpec], samplerate: float) -> tuple:
        """The shape of ``state`` before the instance axis, for a group of ``specs``."""
        return state.lead


_UNBOUNDED = 1e30
PYTHON_KERNEL = "python"
SAMPLE_KERNEL = "sample"


def register_type(cls: type[Module]) -> None:
    """Make ``cls`` the module type of its :func:`type_name`, replacing any earlier one.

    Defining a subclass registers it; this is for a class that arrives without
    running its class statement (unpickled in the engine, where cloudpickle
    builds it empty and fills it afterwards, so ``__init_subclass__`` saw no kernel).
    """
    Module._registry[type_name(cls)] = cls


# bound methods called with every module class defined in this process, held weakly
# so a forgotten engine's player does not live on in the class machinery
_type_watchers: list[weakref.WeakMethod] = []


def watch_types(method: Callable[[type[Module]], None]) -> None:
    """Call ``method(cls)`` whenever a module class with a kernel is (re)defined here.

    Parameters
    ----------
    method : bound method
        Held weakly: it stops being called when its object is collected.
        It runs inside the class statement, so it must not raise; an exception
        it raises becomes a warning.
    """
    _type_watchers[:] = [w for w in _type_watchers if w() is not None]
    _type_watchers.append(weakref.WeakMethod(method))  # type: ignore[arg-type]


def _announce(cls: type[Module]) -> None:
    for ref in list(_type_watchers):
        method = ref()
        if method is None:
            continue
        try:
            method(cls)
        except Exception as exc:  # noqa: BLE001 - a class statement must not fail for it
            warnings.warn(f"{cls.__qualname__}: {exc}", JupysynthWarning, stacklevel=4)


def type_name(cls: type[Module]) -> str:
    """The registry key of a module class: its name, qualified unless it is built in."""
    if cls.__module__.split(".")[0] == "jupysynth":
        return cls.__name__
    return f"{cls.__module__}.{cls.__qualname__}"


class MulAdd(Module):
    """``input * mul + add``: what arithmetic on modules builds.

    Examples
    --------
    >>> from jupysynth import Sine
    >>> cutoff = 1000 + 500 * Sine(freq=0.5)   # one MulAdd(input=Sine, mul=500, add=1000)
    """

    params = (
        Param("input", 0.0, -_UNBOUNDED, _UNBOUNDED, doc="the signal to scale"),
        Param("mul", 1.0, -_UNBOUNDED, _UNBOUNDED, doc="multiplier"),
        Param("add", 0.0, -_UNBOUNDED, _UNBOUNDED, doc="offset added after scaling"),
    )
    positional = ("input", "mul", "add")
    kernel = "arith.muladd"

    def __repr__(self) -> str:
        shown = self._shown()
        return (
            f"MulAdd(input={_brief(shown['input'])}, mul={_brief(shown['mul'])}, "
            f"add={_brief(shown['add'])})#{self.id}"
        )


class Mix(Module):
    """The sum of any number of signals, times ``amp``.

    ``sum(voices)`` and ``a + b`` build one flat ``Mix``, not a chain.

    Examples
    --------
    >>> from jupysynth import Mix, Saw
    >>> chord = Mix(Saw(freq=220), Saw(freq=277.2), Saw(freq=329.6), amp=0.3)
    """

    params = (Param("amp", 1.0, -_UNBOUNDED, _UNBOUNDED, doc="gain applied to the sum"),)
    kernel = "arith.mix"
    reads_bus = True

    def __init__(self, *inputs: Any, amp: Any = 1.0, name: str | None = None) -> None:
        super().__init__(amp=amp, name=name)
        ports = []
        for k, item in enumerate(inputs):
            port = _as_source(self._short(), f"inputs[{k}]", item)
            if port is None:
                raise ParamError(
                    f"Mix inputs must be modules, got {type(item).__name__} {item!r}; "
                    "add constants with + instead"
                )
            ports.append(port)
        object.__setattr__(self, "inputs", tuple(ports))

    def extra_sources(self) -> list[Port]:
        return list(self.inputs)

    def __repr__(self) -> str:
        names = ", ".join(_brief(p.module if p.module.channels == 1 else p) for p in self.inputs)
        return f"Mix({names}, amp={_brief(self._shown()['amp'])})#{self.id}"


def _brief(v: Any) -> str:
    return v._short() if isinstance(v, Module) else repr(v)


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _sig(x: Any) -> Port:
    port = _as_source("arithmetic", "operand", x)
    if port is None:
        raise PatchError(f"cannot do arithmetic with {type(x).__name__} {x!r}")
    return port


def _const_muladd(m: Any) -> MulAdd | None:
    """``m`` if it is a MulAdd whose mul and add are numbers (so it can be folded)."""
    if isinstance(m, Port):
        m = m.module if m.module.channels == 1 else None
    if isinstance(m, MulAdd) and m.name is None:
        v = m._values
        if not isinstance(v["mul"], Port) and not isinstance(v["add"], Port):
            return m
    return None


def _add(a: Any, b: Any) -> Module:
    if _is_number(a):
        a, b = b, a
    if _is_number(b):
        b = float(b)
        if b == 0.0 and isinstance(a, Module):
            return a  # sum() starts from 0
        folded = _const_muladd(a)
        if folded is not None:
            v = folded._values
            return MulAdd(v["input"], v["mul"], v["add"] + b)
        return MulAdd(_sig(a), 1.0, b)
    # two signals: x*m + s is one MulAdd; otherwise a flat Mix
    for x, y in ((a, b), (b, a)):
        folded = _const_muladd(x)
        if folded is not None and folded._values["add"] == 0.0 and folded._values["mul"] != 1.0:
            return MulAdd(folded._values["input"], folded._values["mul"], _sig(y))
    parts: list[Port] = []
    for x in (a, b):
        m = x.module if isinstance(x, Port) and x.module.channels == 1 else x
        if isinstance(m, Mix) and m.name is None and m._values["amp"] == 1.0:
            parts.extend(m.inputs)
        else:
            parts.append(_sig(x))
    return Mix(*parts)


def _mul(a: Any, b: Any) -> Module:
    if _is_number(a):
        a, b = b, a
    if _is_number(b):
        b = float(b)
        folded = _const_muladd(a)
        if folded is not None:
            v = folded._values
            return MulAdd(v["input"], v["mul"] * b, v["add"] * b)
        return MulAdd(_sig(a), b, 0.0)
    return MulAdd(_sig(a), _sig(b), 0.0)


def _neg(a: Any) -> Any:
    if _is_number(a):
        return -float(a)
    return _mul(a, -1.0)


def _reciprocal(x: Any) -> float:
    if not _is_number(x):
        raise PatchError(
            "dividing by a signal is not supported; multiply by a signal or divide by a number"
        )
    if x == 0:
        raise ParamError("division by zero in a patch")
    return 1.0 / float(x)


def module_types() -> dict[str, type[Module]]:
    """Every module type that has a kernel, by name (used to rebuild a patch elsewhere)."""
    return dict(Module._registry)


# -- snapshots: what the renderer consumes ------------------------------------------------


@dataclass
class NodeSpec:
    """A module as the renderer sees it: plain data, picklable, no proxies.

    ``values`` holds numbers or ``(source_id, port)`` pairs.
    """

    id: int
    type: str
    kernel: str
    values: dict[str, float | tuple[int, int]]
    options: dict[str, Any] = field(default_factory=dict)
    inputs: list[tuple[int, int]] = field(default_factory=list)
    name: str | None = None

    def label(self) -> str:
        return self.name or f"{self.type}#{self.id}"

    def sources(self) -> Iterator[tuple[int, int]]:
        for v in self.values.values():
            if isinstance(v, tuple):
                yield v
        yield from self.inputs


def _spec(m: Module) -> NodeSpec:
    values: dict[str, float | tuple[int, int]] = {}
    for k, v in m._values.items():
        values[k] = (v.module.id, v.index) if isinstance(v, Port) else v
    inputs = [(p.module.id, p.index) for p in m.extra_sources()]
    return NodeSpec(
        m.id, type_name(type(m)), m.kernel_name(), values, dict(m._opts), inputs, m.name
    )


def as_outputs(patch: Module | Port | Iterable[Module | Port]) -> list[Port]:
    """Normalise what may be played or rendered into a list of ports (stereo kept whole)."""
    items = [patch] if isinstance(patch, (Module, Port)) else list(patch)
    if not items:
        raise PatchError("nothing to render: give a module or a list of modules")
    ports = []
    for item in items:
        if isinstance(item, Module):
            ports.extend(Port(item, c) for c in range(item.channels))
        elif isinstance(item, Port):
            ports.append(item)
        else:
            raise PatchError(f"cannot render {type(item).__name__} {item!r}; give modules")
    return ports


def snapshot(patch: Module | Port | Iterable[Module | Port]) -> tuple[dict[int, NodeSpec], list]:
    """Collect every module reachable from ``patch`` as NodeSpecs.

    Returns
    -------
    nodes : dict
        ``{id: NodeSpec}`` for every module the outputs depend on.
    outputs : list
        ``[(id, port, channel_count)]``: what is summed to the stereo output.
    """
    ports = as_outputs(patch)
    nodes: dict[int, NodeSpec] = {}
    stack: list[Module] = [p.module for p in ports]
    while stack:
        m = stack.pop()
        if m.id in nodes:
            continue
        nodes[m.id] = _spec(m)
        for _, port in m.sources():
            stack.append(port.module)
        for port in m.extra_sources():
            stack.append(port.module)
    outputs = [(p.module.id, p.index, p.module.channels) for p in ports]
    return nodes, outputs
