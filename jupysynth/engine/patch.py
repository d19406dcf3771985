"""The engine's authoritative patch: modules by id, connections and outputs.

Every structural OSC message (``/module/new``, ``/param/connect``,
``/out/add``...) lands here, is checked against the module classes, and only
then changes the table, so a bad message leaves the patch as it was.  The
renderer is rebuilt from the whole table: a module runs from its
``/module/new`` to its ``/module/free``, heard or not, as every module of a
patch runs from the first frame of an offline render.

Examples
--------
>>> from jupysynth.engine.patch import PatchTable
>>> table = PatchTable()
>>> table.new(1, "Sine", '{"values": {"freq": 440}}')
>>> table.out_add(1)
>>> table.outputs
[(1, 0, 1)]
"""

from __future__ import annotations

import json
import math
import numbers
from collections import Counter
from collections.abc import Iterator
from typing import Any

from ..compile import find_cycle
from ..control.address import MAX_MODULES
from ..errors import ParamError, PatchError
from ..graph import Module, NodeSpec, register_type

__all__ = ["MAX_SPEC_CHARS", "MAX_SPEC_DEPTH", "PatchTable"]

#: A module spec's JSON: characters, nesting and digits of one number at most.
MAX_SPEC_CHARS = 1 << 20
MAX_SPEC_DEPTH = 6
MAX_SPEC_DIGITS = 40
_MAX_ID = 2**31 - 1
_SPEC_KEYS = ("values", "options", "inputs", "name")


def _check_id(what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_ID:
        raise PatchError(f"{what} must be an integer from 1 to {_MAX_ID}, got {value!r}")
    return value


def _pair(what: str, item: Any) -> tuple[int, int]:
    if (
        not isinstance(item, (list, tuple))
        or len(item) != 2
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in item)
    ):
        raise PatchError(f"{what} must be a [source_id, port] pair of integers, got {item!r}")
    return int(item[0]), int(item[1])


def _load_spec(type_name: str, spec_json: str) -> Any:
    """The JSON spec of a ``/module/new``, within bounds that keep a hostile one cheap.

    Raises
    ------
    ParamError
        For invalid JSON, more than :data:`MAX_SPEC_CHARS` characters, nesting
        deeper than :data:`MAX_SPEC_DEPTH` or a number of more than
        :data:`MAX_SPEC_DIGITS` digits, saying which.
    """
    if not spec_json.strip():
        return {}
    if len(spec_json) > MAX_SPEC_CHARS:
        raise ParamError(
            f"{type_name} spec is {len(spec_json)} characters, more than {MAX_SPEC_CHARS}; "
            "send a Mix's inputs in parts with /mix/add"
        )
    depth = deepest = 0
    quoted = escaped = False
    for ch in spec_json:  # nesting outside strings, before the recursive parser sees it
        if quoted:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    if deepest > MAX_SPEC_DEPTH:
        raise ParamError(
            f"{type_name} spec nests {deepest} deep, more than {MAX_SPEC_DEPTH}; "
            'a spec is {"values": {...}, "options": {...}, "inputs": [[id, port], ...]}'
        )

    def number(text: str) -> float | int:
        if len(text.lstrip("-")) > MAX_SPEC_DIGITS:
            raise ParamError(
                f"{type_name} spec has a number of {len(text)} digits ({text[:20]}...); "
                f"use at most {MAX_SPEC_DIGITS}"
            )
        return int(text)

    try:
        return json.loads(spec_json, parse_int=number)
    except ParamError:
        raise
    except ValueError as exc:
        raise ParamError(
            f"{type_name} spec is not valid JSON ({exc}): {spec_json[:80]!r}"
        ) from None


def _read_ids(spec: NodeSpec) -> Iterator[int]:
    """The ids ``spec`` reads, once per connection."""
    for value in spec.values.values():
        if isinstance(value, tuple):
            yield value[0]
    for sid, _ in spec.inputs:
        yield sid


class PatchTable:
    """Modules, connections and outputs as the engine holds them.

    Attributes
    ----------
    nodes : dict
        ``{id: NodeSpec}`` of every module created and not freed.
    outputs : list
        ``[(id, port, channels)]`` summed to the stereo output, in the order
        added (which is the summing order, as in :func:`jupysynth.render`).
    """

    def __init__(self) -> None:
        self.nodes: dict[int, NodeSpec] = {}
        self.outputs: list[tuple[int, int, int]] = []
        # looked up live, never copied: /type/define adds and replaces types while it runs
        self._types = Module._registry
        # how many connections read each id, built by the first free after any other change
        # and kept by frees: freeing a 10 000-voice patch costs 10 000 scans of it otherwise
        self._readers: Counter[int] | None = None

    # -- lookups ---------------------------------------------------------------------------

    def spec(self, node_id: int) -> NodeSpec:
        """The module ``node_id``, or a PatchError saying it does not exist."""
        spec = self.nodes.get(node_id)
        if spec is None:
            raise PatchError(
                f"no module #{node_id} in the engine; create it first with /module/new"
            )
        return spec

    def cls(self, spec: NodeSpec) -> type[Module]:
        return self._types[spec.type]

    def _param(self, spec: NodeSpec, name: str):
        param = self.cls(spec)._param_index.get(name)
        if param is None:
            valid = ", ".join(self.cls(spec)._param_index) or "none"
            raise ParamError(f"unknown parameter {name!r} for {spec.label()}; valid: {valid}")
        return param

    def _source(self, owner: str, src: tuple[int, int]) -> None:
        sid, port = src
        spec = self.nodes.get(sid)
        if spec is None:
            raise PatchError(f"{owner} reads module #{sid}, which does not exist in the engine")
        channels = self.cls(spec).channels
        if not 0 <= port < channels:
            raise PatchError(
                f"{owner} reads port {port} of {spec.label()}, which has "
                f"{channels} output(s) (ports 0..{channels - 1})"
            )

    def _reader_counts(self) -> Counter[int]:
        """Connections reading each id.  Never too low: only frees keep it, other changes drop it.

        (A parameter disconnected in place by the engine can leave a count too high, which
        only costs a full look at :meth:`users`.)
        """
        if self._readers is None:
            counts: Counter[int] = Counter()
            for spec in self.nodes.values():
                counts.update(_read_ids(spec))
            self._readers = counts
        return self._readers

    def users(self, node_id: int) -> list[str]:
        """Labels of the modules reading ``node_id`` (``"LowPass#4.cutoff"``)."""
        found = []
        for spec in self.nodes.values():
            for name, value in spec.values.items():
                if isinstance(value, tuple) and value[0] == node_id:
                    found.append(f"{spec.label()}.{name}")
            if any(sid == node_id for sid, _ in spec.inputs):
                found.append(f"{spec.label()}.inputs")
        return found

    # -- changes ---------------------------------------------------------------------------

    def new(self, node_id: int, type_name: str, spec_json: str = "") -> NodeSpec:
        """Create module ``node_id`` of ``type_name`` from a JSON spec (see docs/osc.md).

        Raises
        ------
        PatchError, ParamError
            Saying what is wrong; the table is unchanged.
        """
        self._readers = None
        _check_id("module id", node_id)
        if node_id in self.nodes:
            raise PatchError(
                f"module #{node_id} already exists ({self.nodes[node_id].label()}); "
                "/module/free it first or pick another id"
            )
        if len(self.nodes) >= MAX_MODULES:
            raise PatchError(f"the engine holds {MAX_MODULES} modules already; free some first")
        cls = self._types.get(type_name)
        if cls is None or getattr(cls, "internal", False):
            valid = sorted(n for n, c in self._types.items() if not getattr(c, "internal", False))
            raise PatchError(f"unknown module type {type_name!r}; valid: {', '.join(valid)}")
        raw = _load_spec(type_name, spec_json)
        if not isinstance(raw, dict) or any(k not in _SPEC_KEYS for k in raw):
            raise ParamError(
                f"{type_name} spec must be a JSON object with keys among "
                f"{', '.join(_SPEC_KEYS)}; got {spec_json[:80]!r}"
            )
        values = raw.get("values", {})
        options = raw.get("options", {})
        name = raw.get("name")
        if not isinstance(values, dict) or not isinstance(options, dict):
            raise ParamError(f"{type_name} spec: 'values' and 'options' must be JSON objects")
        if name is not None and not isinstance(name, str):
            raise ParamError(f"{type_name} spec: 'name' must be a string, got {name!r}")
        label = name or f"{type_name}#{node_id}"
        numbers_: dict[str, Any] = {}
        signals: dict[str, tuple[int, int]] = {}
        for key, value in values.items():
            if key not in cls._param_index:
                valid = ", ".join(cls._param_index) or "none"
                raise ParamError(f"unknown parameter {key!r} for {type_name}; valid: {valid}")
            if isinstance(value, list):
                src = _pair(f"{label}.{key}", value)
                if not cls._param_index[key].signal:
                    raise ParamError(f"{type_name}.{key} takes a number, not a signal")
                self._source(f"{label}.{key}", src)
                signals[key] = src
            else:
                numbers_[key] = value
        inputs_raw = raw.get("inputs", [])
        if inputs_raw and not cls.reads_bus:
            raise ParamError(f"{type_name} takes no 'inputs' (only Mix does)")
        if not isinstance(inputs_raw, list):
            raise ParamError(f"{type_name} spec: 'inputs' must be a list of [source_id, port]")
        inputs = [_pair(f"{label}.inputs", item) for item in inputs_raw]
        for src in inputs:
            self._source(f"{label}.inputs", src)
        for key in options:
            if key in cls._param_index:
                raise ParamError(f"{type_name}: {key!r} is a parameter; put it in 'values'")
        for key in numbers_:
            if key in options:
                raise ParamError(f"{type_name}: {key!r} given twice")
        try:
            proxy = cls(**options, **numbers_, name=name)
        except TypeError as exc:
            raise ParamError(f"cannot create {type_name}: {exc}") from None
        spec_values: dict[str, float | tuple[int, int]] = {}
        for key, value in proxy._values.items():
            spec_values[key] = signals.get(key, value)
        spec = NodeSpec(
            node_id, type_name, proxy.kernel_name(), spec_values, dict(proxy._opts), inputs, name
        )
        self.nodes[node_id] = spec
        return spec

    def define(self, type_name: str, cls: type[Module]) -> bool:
        """Register ``cls`` as ``type_name`` and move the modules of that type onto it.

        Modules of the type keep their values; a parameter the new class adds
        takes its default, one it drops is forgotten.

        Returns
        -------
        bool
            True if modules of this type exist (the renderer must be rebuilt to
            swap them to the new code).

        Raises
        ------
        PatchError, ParamError
            If the new class does not fit the modules already made of the type;
            nothing is registered then.
        """
        self._readers = None
        specs = [s for s in self.nodes.values() if s.type == type_name]
        kernels = {}
        for spec in specs:
            for key, value in spec.values.items():
                param = cls._param_index.get(key)
                if isinstance(value, tuple) and param is not None and not param.signal:
                    raise ParamError(
                        f"the new {type_name}.{key} takes a number, but {spec.label()}.{key} "
                        "is connected to a signal; disconnect it (set a number) first"
                    )
            if spec.inputs and not cls.reads_bus:
                raise PatchError(f"{spec.label()} has inputs and the new {type_name} takes none")
            try:
                kernels[spec.id] = cls(**spec.options, name=spec.name).kernel_name()
            except (TypeError, ValueError) as exc:
                raise ParamError(
                    f"the new {type_name} cannot take over {spec.label()} "
                    f"(options {spec.options}): {exc}"
                ) from None
        if specs and cls.channels != self.cls(specs[0]).channels:
            raise PatchError(
                f"the new {type_name} has {cls.channels} output(s) where the playing one has "
                f"{self.cls(specs[0]).channels}; stop its modules before changing that"
            )
        register_type(cls)
        for spec in specs:
            spec.values = {p.name: spec.values.get(p.name, p.default) for p in cls.params}
            spec.kernel = kernels[spec.id]
        return bool(specs)

    def free(self, node_id: int) -> None:
        """Delete a module nothing reads; it leaves the outputs too."""
        spec = self.spec(node_id)
        readers = self._reader_counts()
        if readers[node_id]:
            users = [u for u in self.users(node_id) if not u.startswith(f"{spec.label()}.")]
            if users:
                raise PatchError(
                    f"{spec.label()} is still read by {', '.join(users)}; "
                    "disconnect or free those first"
                )
        if any(o[0] == node_id for o in self.outputs):
            self.outputs = [o for o in self.outputs if o[0] != node_id]
        del self.nodes[node_id]
        readers.subtract(_read_ids(spec))
        readers.pop(node_id, None)

    def check_value(self, spec: NodeSpec, name: str, value: Any) -> float:
        """``value`` as a float for parameter ``name`` of ``spec``, or a ParamError."""
        param = self._param(spec, name)
        if isinstance(value, numbers.Real) and not math.isfinite(float(value)):
            raise ParamError(f"{spec.label()}.{name} must be a finite number, got {value}")
        return param.check(spec.label(), value)

    def set(self, node_id: int, name: str, value: Any) -> bool:
        """Set a parameter to a number; returns True if it was a signal (a rebuild is due)."""
        spec = self.spec(node_id)
        v = self.check_value(spec, name, value)
        was = spec.values[name]
        spec.values[name] = v
        return isinstance(was, tuple)

    def connect(self, node_id: int, name: str, src_id: int, port: int) -> None:
        """Drive parameter ``name`` by output ``port`` of ``src_id``."""
        self._readers = None
        spec = self.spec(node_id)
        param = self._param(spec, name)
        if not param.signal:
            raise ParamError(f"{spec.type}.{name} takes a number, not a signal")
        src = (src_id, port)
        self._source(f"{spec.label()}.{name}", src)
        was = spec.values[name]
        spec.values[name] = src
        cycle = find_cycle(self.nodes)
        if cycle is not None:
            spec.values[name] = was
            names = " -> ".join(self.nodes[i].label() for i in cycle)
            raise PatchError(
                f"connecting {spec.label()}.{name} would close a loop ({names}); "
                "put a Feedback module in it"
            )

    def mix_inputs(self, node_id: int, pairs: list[tuple[int, int]]) -> None:
        """Replace the inputs of a Mix."""
        self._readers = None
        spec = self.spec(node_id)
        if not self.cls(spec).reads_bus:
            raise PatchError(f"{spec.label()} is not a Mix; /mix/inputs only applies to Mix")
        for src in pairs:
            self._source(f"{spec.label()}.inputs", src)
        was = spec.inputs
        spec.inputs = list(pairs)
        cycle = find_cycle(self.nodes)
        if cycle is not None:
            spec.inputs = was
            names = " -> ".join(self.nodes[i].label() for i in cycle)
            raise PatchError(f"these inputs would close a loop ({names}); use a Feedback module")

    def mix_add(self, node_id: int, pairs: list[tuple[int, int]]) -> None:
        """Append inputs to a Mix (a Mix with thousands of inputs arrives in parts)."""
        spec = self.spec(node_id)
        if len(spec.inputs) + len(pairs) > MAX_MODULES:
            raise PatchError(f"{spec.label()} would have more than {MAX_MODULES} inputs")
        self.mix_inputs(node_id, spec.inputs + list(pairs))

    def out_add(self, node_id: int, port: int | None = None) -> None:
        """Add every channel of a module, or one port, to the output (again: no change)."""
        spec = self.spec(node_id)
        channels = self.cls(spec).channels
        if port is None:
            ports = range(channels)
        else:
            if not 0 <= port < channels:
                raise PatchError(
                    f"{spec.label()} has {channels} output(s); port {port} does not exist"
                )
            ports = range(port, port + 1)
        for p in ports:
            entry = (node_id, p, channels)
            if entry not in self.outputs:
                self.outputs.append(entry)

    def out_remove(self, node_id: int) -> None:
        """Take every channel of a module off the output."""
        spec = self.spec(node_id)
        kept = [o for o in self.outputs if o[0] != node_id]
        if len(kept) == len(self.outputs):
            raise PatchError(f"{spec.label()} is not in the output")
        self.outputs = kept

    def clear(self) -> None:
        """Forget every module and output (``/panic``)."""
        self._readers = None
        self.nodes.clear()
        self.outputs.clear()
