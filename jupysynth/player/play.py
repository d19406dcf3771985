"""``module.play()``, ``module.stop()``, ``jupysynth.panic()``: the kernel's side of live patching.

A :class:`Player` remembers which modules an engine holds.  Playing a module
sends ``/module/new`` for every module of its graph the engine does not have
yet (sources first), then ``/out/add``; from then on, every parameter change
on those modules (seen through :meth:`Module.observe`) is sent as
``/param/set`` or, for a new modulator, ``/module/new`` + ``/param/connect``.
Stopping sends ``/out/remove`` and frees the modules nothing else plays.

Examples
--------
>>> import jupysynth as js
>>> from jupysynth.player import play, stop
>>> osc = js.Sine(freq=220, amp=0.2)
>>> play(osc)              # doctest: +SKIP
>>> osc.freq = 330         # heard at the next block, glided
>>> stop(osc)              # doctest: +SKIP
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from typing import Any

from ..control.address import MAX_MODULES
from ..control.typedefs import dump_type, is_builtin
from ..errors import EngineError
from ..graph import Module, Port, as_outputs, type_name, watch_types
from .engine import Engine, check_fade, check_time, default_engine
from .throttle import Throttle

__all__ = ["Player", "panic", "play", "stop"]

#: Bytes per bundle: under what one UDP datagram carries (65507), with room to spare.
MAX_BUNDLE = 60000
#: Inputs of a Mix sent in its ``/module/new``; more follow in ``/mix/add`` parts of this many.
MIX_PART = 2000
#: Seconds to wait for the engine after sending a module class: it compiles a new
#: ``sample`` function with numba (about a second) before it answers.
DEFINE_SYNC_TIMEOUT = 30.0


def _spec_json(m: Module, with_signals: bool = True, with_inputs: bool = True) -> str:
    values: dict[str, Any] = {}
    for k, v in m._values.items():
        if isinstance(v, Port):
            if with_signals:
                values[k] = [v.module.id, v.index]
        else:
            values[k] = v
    raw: dict[str, Any] = {"values": values}
    if m._opts:
        raw["options"] = dict(m._opts)
    inputs = [[p.module.id, p.index] for p in m.extra_sources()] if with_inputs else []
    if inputs:
        raw["inputs"] = inputs
    if m.name:
        raw["name"] = m.name
    return json.dumps(raw)


def _build_wait(modules: int) -> float:
    """Seconds to wait for the engine to rebuild a patch after ``modules`` were added or freed.

    About 0.1 ms a module here (10 000 sines: 1.1 s), and a wide margin for a busy machine.
    """
    return 2.0 + modules / 1000


def _reads(m: Module) -> list[Module]:
    return [p.module for _, p in m.sources()] + [p.module for p in m.extra_sources()]


class Player:
    """What one engine plays, as the kernel knows it.

    Parameters
    ----------
    engine : Engine
        The engine to send to.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.modules: dict[int, Module] = {}  # on the engine, by id
        self.roots: dict[int, list[Port]] = {}  # played outputs by module id
        self._lock = threading.RLock()
        # a dragged slider fires hundreds of changes a second: send ~60, and the last
        self._throttle = Throttle(self._send_param)
        # module classes written in Python that the engine process (by pid) holds, by name
        self._sent: dict[str, type[Module]] = {}
        self._sent_pid: int | None = None
        watch_types(self._redefined)

    # -- what to send ------------------------------------------------------------------------

    def _new(self, roots: Iterable[Module]) -> tuple[list[Module], list[tuple]]:
        """Modules the engine lacks, sources first, and connections to send after them.

        A cycle-breaking module (Feedback) is created without its signal and
        connected at the end, since what it reads is usually created after it.
        """
        order: list[Module] = []
        deferred: list[tuple] = []
        seen: set[int] = set(self.modules)
        for root in roots:
            stack: list[tuple[Module, bool]] = [(root, False)]
            while stack:
                m, expanded = stack.pop()
                if expanded:
                    order.append(m)
                    continue
                if m.id in seen:
                    continue
                seen.add(m.id)
                if m.breaks_cycles:
                    order.append(m)
                    for pname, port in m.sources():
                        deferred.append(("/param/connect", m.id, pname, port.module.id, port.index))
                    stack.extend((src, False) for src in _reads(m))
                    continue
                stack.append((m, True))
                stack.extend((src, False) for src in reversed(_reads(m)))
        messages: list[tuple] = self._definitions(order)
        for m in order:
            sources = m.extra_sources()
            small = len(sources) <= MIX_PART
            messages.append(
                ("/module/new", m.id, type_name(type(m)), _spec_json(m, not m.breaks_cycles, small))
            )
            if not small:  # one datagram could not carry them: in parts
                for k in range(0, len(sources), MIX_PART):
                    pairs = [v for p in sources[k : k + MIX_PART] for v in (p.module.id, p.index)]
                    messages.append(("/mix/add", m.id, *pairs))
        return order, messages + deferred

    def _definitions(self, mods: Iterable[Module]) -> list[tuple]:
        """``/type/define`` for the classes written in Python that the engine lacks.

        The engine gets the class the kernel's registry holds under the name,
        the latest definition, even for a module made before a cell re-ran:
        one name has one class, as in an offline render.
        """
        if self.engine.pid != self._sent_pid:  # a new engine process knows none of them
            self._sent.clear()
            self._sent_pid = self.engine.pid
        todo: dict[str, type[Module]] = {}
        for m in mods:
            cls = type(m)
            if is_builtin(cls):
                continue
            name = type_name(cls)
            current = Module._registry.get(name, cls)
            if self._sent.get(name) is not current:
                todo[name] = current
        # pickle them all before marking any as sent: a class that fails sends nothing
        messages = [("/type/define", name, dump_type(cls)) for name, cls in todo.items()]
        self._sent.update(todo)
        return messages

    def _redefined(self, cls: type[Module]) -> None:
        """A class was (re)defined in the kernel: if the engine runs an older one, replace it.

        Called from the class statement, so a cell that only redefines a class
        swaps the running instances; errors become a warning in that cell.
        """
        name = type_name(cls)
        with self._lock:
            old = self._sent.get(name)
            if old is None or old is cls or not self.engine.running:
                return
            if self.engine.pid != self._sent_pid:
                return  # that engine is gone; the next play sends it
            blob = dump_type(cls)
            self._sent[name] = cls
            try:
                self.engine.send("/type/define", name, blob)
                self.engine.sync(DEFINE_SYNC_TIMEOUT)
            except EngineError:
                self._sent[name] = old  # the engine kept the old one: try again next time
                raise

    def _send(self, messages: list[tuple], at: float | None) -> None:
        client = self.engine._client()
        chunk: list[bytes] = []
        size = 0
        for m in messages:
            data = client.message(*m)
            if chunk and size + len(data) + 4 > MAX_BUNDLE:
                client.send_bundle(chunk, at)
                chunk, size = [], 0
            chunk.append(data)
            size += len(data) + 4
        if chunk:
            client.send_bundle(chunk, at)

    # -- play / stop -------------------------------------------------------------------------

    def play(
        self,
        patch: Module | Port | Iterable[Module | Port],
        at: float | None = None,
        fade: float = 0.0,
    ) -> None:
        """Send what the engine lacks of ``patch`` and add it to the output.

        Parameters
        ----------
        patch : Module, Port or list of them
            What to hear, as for :func:`jupysynth.render`.
        at : float, optional
            Unix time to start at, to the sample; default: the next block.
        fade : float, optional
            Seconds to fade in over (0: start at once).

        Raises
        ------
        EngineError
            If the engine rejects part of it, or the patch is larger than the
            engine holds (then none of it plays, and the engine keeps nothing of it).
        """
        ports = as_outputs(patch)
        at = check_time("at", at)
        fade = check_fade(fade)
        with self._lock:
            order, messages = self._new(p.module for p in ports)
            if len(self.modules) + len(order) > MAX_MODULES:
                raise EngineError(
                    f"this patch has {len(order)} new modules; with the {len(self.modules)} "
                    f"playing, that is more than the {MAX_MODULES} an engine holds; "
                    "play fewer voices (or stop some first)"
                )
            if fade > 0:
                messages.append(("/fade", float(fade)))
            messages += [("/out/add", p.module.id, p.index) for p in ports]
            for m in order:
                self.modules[m.id] = m
                m.observe(self._changed)
            for p in ports:
                played = self.roots.setdefault(p.module.id, [])
                if p not in played:
                    played.append(p)
            defined = [m[1] for m in messages if m[0] == "/type/define"]
            try:
                self._send(messages, at)
                if at is None:
                    # a large patch takes the engine a while to build
                    wait = _build_wait(len(order))
                    self.engine.sync(DEFINE_SYNC_TIMEOUT if defined else wait)
            except (EngineError, OSError) as exc:
                self._forget_types(defined)
                try:
                    self._undo(ports, order)
                except EngineError:
                    pass  # the engine is gone: nothing of it is left there either
                if isinstance(exc, OSError):
                    raise EngineError(f"sending the patch failed: {exc}") from None
                raise

    def _forget_types(self, names: list[str]) -> None:
        # not known to have reached the engine: send them again next time
        for name in names:
            self._sent.pop(name, None)

    def _undo(self, ports: list[Port], order: list[Module]) -> None:
        """Take back a failed play: its outputs and every module it created (sent or not)."""
        for p in ports:
            self.roots.pop(p.module.id, None)
        for m in order:
            m.unobserve(self._changed)
            self.modules.pop(m.id, None)
        undo = [("/out/remove", p.module.id) for p in ports]
        undo += [("/module/free", m.id) for m in reversed(order)]
        self._send(undo, None)  # an id the engine never got is refused: harmless
        self.engine._client().sync(_build_wait(len(order)))

    def stop(self, patch: Module | Port | Iterable[Module | Port], fade: float = 0.0) -> None:
        """Take ``patch`` off the output and free the modules nothing else plays.

        ``fade`` is in seconds: the modules play on, fading out, until it ends.

        Raises
        ------
        EngineError
            If it is not playing on this engine.
        """
        fade = check_fade(fade)
        ids = list(dict.fromkeys(p.module.id for p in as_outputs(patch)))
        with self._lock:
            missing = [i for i in ids if i not in self.roots]
            if missing:
                names = ", ".join(
                    self.modules[i]._short() if i in self.modules else f"#{i}" for i in missing
                )
                raise EngineError(f"{names} is not playing on this engine; nothing to stop")
            messages: list[tuple] = [("/fade", float(fade))] if fade > 0 else []
            messages += [("/out/remove", i) for i in ids]
            for i in ids:
                del self.roots[i]
            keep: set[int] = set()
            stack = [p.module for ports in self.roots.values() for p in ports]
            while stack:
                m = stack.pop()
                if m.id not in keep:
                    keep.add(m.id)
                    stack.extend(_reads(m))
            gone = {i: m for i, m in self.modules.items() if i not in keep}
            # loops through a Feedback: open them first, or nothing in them can be freed
            for m in gone.values():
                if m.breaks_cycles:
                    for pname, _ in m.sources():
                        messages.append(("/param/set", m.id, pname, 0.0))
            messages += [("/module/free", m.id) for m in self._consumers_first(gone)]
            for m in gone.values():
                m.unobserve(self._changed)
                del self.modules[m.id]
            self._send(messages, None)
            self.engine.sync(_build_wait(len(gone)))

    @staticmethod
    def _consumers_first(mods: dict[int, Module]) -> list[Module]:
        order: list[Module] = []
        done: set[int] = set()
        for root in mods.values():
            stack: list[tuple[Module, bool]] = [(root, False)]
            while stack:
                m, expanded = stack.pop()
                if expanded:
                    order.append(m)
                    continue
                if m.id in done:
                    continue
                done.add(m.id)
                stack.append((m, True))
                if not m.breaks_cycles:
                    stack.extend((s, False) for s in _reads(m) if s.id in mods)
        return order[::-1]

    def forget(self) -> None:
        """Stop following every module (after ``/panic`` or when the engine stops)."""
        with self._lock:
            for m in self.modules.values():
                m.unobserve(self._changed)
            self.modules.clear()
            self.roots.clear()

    # -- live changes ------------------------------------------------------------------------

    def _changed(self, module: Module, name: str, value: Any) -> None:
        """Send a parameter change made in the kernel; never raises (a knob callback)."""
        with self._lock:
            if module.id not in self.modules or not self.engine.running:
                return
            try:
                if isinstance(value, Port):
                    order, messages = self._new([value.module])
                    for m in order:
                        self.modules[m.id] = m
                        m.observe(self._changed)
                    # a number still waiting must not land after the connection
                    self._throttle.cancel((module.id, name))
                    messages.append(
                        ("/param/connect", module.id, name, value.module.id, value.index)
                    )
                    self._send(messages, None)
                else:
                    self._throttle.submit((module.id, name), float(value))
            except EngineError as exc:
                # errors from the engine itself arrive as /error and are kept by the client
                self.engine._client().errors.append((name, str(exc)))

    def _send_param(self, key: tuple[int, str], value: float) -> None:
        """Send one (throttled) number; dropped if the module left the engine meanwhile."""
        module_id, name = key
        with self._lock:
            if module_id not in self.modules or not self.engine.running:
                return
            try:
                self.engine._client().send("/param/set", module_id, name, value)
            except EngineError as exc:
                self.engine._client().errors.append((name, str(exc)))

    def flush(self) -> None:
        """Send the parameter changes the throttle still holds, now."""
        self._throttle.flush()


def _player(engine: Engine | None, start: bool = True) -> Player:
    engine = engine if engine is not None else default_engine(start=start)
    if engine.player is None:
        engine.player = Player(engine)
    return engine.player


def play(
    patch: Module | Port | Iterable[Module | Port],
    engine: Engine | None = None,
    at: float | None = None,
    fade: float = 0.0,
) -> None:
    """Play ``patch`` on ``engine`` (default: :func:`default_engine`, started if needed).

    ``at`` is a Unix time to start at, to the sample; ``fade`` seconds of fade-in.
    """
    _player(engine).play(patch, at, fade)


def stop(
    patch: Module | Port | Iterable[Module | Port],
    engine: Engine | None = None,
    fade: float = 0.0,
) -> None:
    """Stop ``patch`` on ``engine`` (default: :func:`default_engine`); ``fade`` in seconds."""
    _player(engine, start=False).stop(patch, fade)


def panic(engine: Engine | None = None) -> None:
    """Silence ``engine`` at once: every module and output is removed.

    Does nothing when no engine runs.
    """
    if engine is None:
        try:
            engine = default_engine(start=False)
        except EngineError:
            return
    engine.send("/panic")
    if engine.player is not None:
        engine.player.forget()
