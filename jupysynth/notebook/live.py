"""Live coding: a cell, or an explicit name, owns the sound it plays.

Re-running a cell that plays a patch replaces that cell's previous sound
instead of stacking a second copy on it, like a SuperCollider ``Ndef``; a
cell that raises keeps the old sound and takes back whatever it started
before the error.  ``play(patch, name="bass")`` gives the sound a name
instead, so any cell can replace it.

The :class:`Session` is the kernel's view of the engine: which modules each
owner played, what to show on a knob panel's state line, the engine's errors
printed in the cell that caused them.  A module that faults in the engine is
pushed to the kernel's OSC client (``/fault``, see
:mod:`jupysynth.control.notify`); the client's thread calls the session, which
prints the error with the traceback's last lines in the output of the cell
that created the module (an ``ipywidgets.Output`` that cell shows, empty until
then; in a terminal, a plain print) and redraws the module's knob panels
("faulted: ValueError: ...").  No poll and no thread of its own.

It talks to the engine only through :mod:`jupysynth.engine`'s public API
(``play``, ``stop``, ``panic``, ``Engine.client``, ``Engine.record``); with no
engine (offline mode) it plays nothing and says so.

Examples
--------
>>> import jupysynth as js
>>> from jupysynth.notebook.live import Session
>>> session = Session(engine=None, reason="no device")
>>> session.play(js.Saw(freq=110), name="bass")
offline mode: bass is not played (no device); hear it with Audio(js.render(patch, 2).T, rate=48000)
"""

from __future__ import annotations

import inspect
import textwrap
import threading
import time
from collections.abc import Iterable
from typing import Any

from ..control.client import Fault
from ..errors import EngineError, JupysynthError
from ..graph import Module, Port, as_outputs
from .knobs import panels

__all__ = ["Session", "current", "play", "stop"]

#: Seconds of crossfade when a sound replaces another, if the engine can fade.
FADE = 0.05
#: Lines of a traceback printed for a fault: the exception and where it was raised.
FAULT_LINES = 4

_current: Session | None = None


def current() -> Session | None:
    """The session of the loaded extension, or None before ``%load_ext jupysynth``."""
    return _current


def _set_current(session: Session | None) -> None:
    global _current
    _current = session


def _accepts(fn: Any, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


class Session:
    """What the kernel knows about the live engine and who owns which sound.

    Parameters
    ----------
    engine : jupysynth.player.Engine or None
        The running engine, or None for offline mode.
    reason : str
        Why there is no engine (offline mode), for messages.
    started : bool
        Whether this session started the engine (and so stops it on unload).
    fade : float
        Crossfade in seconds when a sound replaces another (used when the
        engine's ``play``/``stop`` accept ``fade=``).

    Attributes
    ----------
    widgets : bool
        Whether a front end shows widgets (the extension sets it in a kernel):
        a fault is then written into an ``Output`` in the creating cell, else printed.
    """

    def __init__(
        self, engine: Any = None, reason: str = "", started: bool = False, fade: float = FADE
    ) -> None:
        self.engine = engine
        self.reason = reason
        self.started = started
        self.fade = fade
        #: ``{owner: [ports]}``: a cell id ("cell:...") or a name, to what it plays.
        self.owners: dict[str, list[Port]] = {}
        self._cell: str | None = None
        self._in_cell = False
        self.cell_ended = 0.0  # monotonic time the last cell ended
        self._before: set[int] = set()
        self._named_now: set[int] = set()
        self._pending: dict[str, list[Port]] = {}
        self._reported_death = False
        self.widgets = False
        # pushed faults arrive on the OSC client's thread: these are shared with it
        self._lock = threading.Lock()
        self._client: Any = None  # the client whose pushes this session hears
        self._reported_faults: set[int] = set()
        self._writers: dict[int, _CellOutput] = {}  # module id -> output of the cell that made it
        self._modules_before: set[int] = set()

    # -- the engine ----------------------------------------------------------------------------

    @property
    def live(self) -> bool:
        """True while an engine runs for this session."""
        return self.engine is not None and self.engine.running

    def _player(self) -> Any:
        return getattr(self.engine, "player", None) if self.engine is not None else None

    def playing_ids(self) -> set[int]:
        """Ids of the modules on the engine's output."""
        player = self._player()
        return set(player.roots) if player is not None else set()

    def _ports_of(self, ids: Iterable[int]) -> list[Port]:
        player = self._player()
        if player is None:
            return []
        return [p for i in ids for p in player.roots.get(i, [])]

    def _engine_play(self, ports: list[Port]) -> None:
        from ..player import play as engine_play

        if _accepts(engine_play, "fade"):
            engine_play(ports, self.engine, fade=self.fade)
        else:
            engine_play(ports, self.engine)

    def _engine_stop(self, ports: list[Port]) -> None:
        """Stop what of ``ports`` still plays (a user may have stopped some by hand)."""
        from ..player import stop as engine_stop

        playing = self.playing_ids()
        ports = [p for p in ports if p.module.id in playing]
        if not ports or not self.live:
            return
        if _accepts(engine_stop, "fade"):
            engine_stop(ports, self.engine, fade=self.fade)
        else:
            engine_stop(ports, self.engine)

    # -- playing by name -----------------------------------------------------------------------

    def play(self, patch: Module | Port | Iterable[Module | Port], name: str | None = None) -> None:
        """Play ``patch``; with ``name``, replace what that name played before.

        Inside a cell the swap happens when the cell finishes without an
        error (so a cell that raises keeps the old sound); outside a cell,
        at once.
        """
        ports = as_outputs(patch)
        if not self.live:
            what = name or ", ".join(p.module._short() for p in ports)
            print(
                f"offline mode: {what} is not played ({self.reason or 'no engine'}); "
                "hear it with Audio(js.render(patch, 2).T, rate=48000)"
            )
            return
        self._engine_play(ports)
        if name is None:
            return  # the running cell owns it (see post_run_cell)
        self._named_now.update(p.module.id for p in ports)
        if self._in_cell:
            self._pending.setdefault(name, []).extend(ports)
        else:
            self._replace(name, ports)

    def stop(self, what: str | Module | Port | Iterable[Module | Port] | None = None) -> None:
        """Stop a name's sound, a patch, or (no argument) everything this session played."""
        if isinstance(what, str):
            if what not in self.owners:
                known = ", ".join(sorted(k for k in self.owners if not k.startswith("cell:")))
                raise JupysynthError(
                    f"nothing plays under the name {what!r}; names playing: {known or 'none'}"
                )
            self._engine_stop(self.owners.pop(what))
            return
        if what is None:
            for owner in list(self.owners):
                self._engine_stop(self.owners.pop(owner))
            return
        ports = as_outputs(what)
        self._engine_stop(ports)
        ids = {p.module.id for p in ports}
        for owner, owned in list(self.owners.items()):
            kept = [p for p in owned if p.module.id not in ids]
            if kept:
                self.owners[owner] = kept
            else:
                del self.owners[owner]

    def _replace(self, owner: str, ports: list[Port]) -> None:
        new_ids = {p.module.id for p in ports}
        old = [p for p in self.owners.get(owner, []) if p.module.id not in new_ids]
        self.owners[owner] = list(ports)
        self._engine_stop(old)

    def forget(self) -> None:
        """Drop every owner (after a panic or an engine restart)."""
        self.owners.clear()
        self._pending.clear()

    # -- cells ---------------------------------------------------------------------------------

    def pre_run_cell(self, info: Any) -> None:
        """IPython ``pre_run_cell`` hook: note what plays before the cell."""
        cell_id = getattr(info, "cell_id", None)
        self._cell = f"cell:{cell_id}" if cell_id else None
        self._in_cell = True
        self._before = self.playing_ids()
        player = self._player()
        self._modules_before = set(player.modules) if player is not None else set()
        self._named_now = set()
        self._pending = {}
        self._attach()
        self._check_engine_alive()

    def post_run_cell(self, result: Any) -> None:
        """IPython ``post_run_cell`` hook: swap the cell's sound, or undo it on error."""
        self._in_cell = False
        self.cell_ended = time.monotonic()  # the page's messages waited until now
        failed = bool(getattr(result, "error_before_exec", None)) or bool(
            getattr(result, "error_in_exec", None)
        )
        pending, self._pending = self._pending, {}
        started = self.playing_ids() - self._before - self._named_now
        try:
            if failed:
                # the old sound plays on; what this run started before raising goes
                undo = self._ports_of(started) + [p for ps in pending.values() for p in ps]
                self._engine_stop(undo)
                if undo:
                    names = ", ".join(dict.fromkeys(p.module._short() for p in undo))
                    print(f"jupysynth: the cell raised; stopped what it started ({names})")
            else:
                for name, ports in pending.items():
                    self._replace(name, ports)
                if started and self._cell is not None:
                    self._replace(self._cell, self._ports_of(started))
        except JupysynthError as exc:
            print(f"jupysynth: {exc}")
        self._attach()
        made = self._adopt_new_modules()
        self._report_engine(made)
        for panel in panels():
            panel.refresh_state()

    # -- reporting in the cell -----------------------------------------------------------------

    def _check_engine_alive(self) -> None:
        if self.engine is None or self.engine.running or self._reported_death:
            return
        self._reported_death = True
        proc = getattr(self.engine, "_proc", None)
        code = proc.returncode if proc is not None else None
        print(
            f"jupysynth: the engine stopped (exit code {code}); nothing plays. "
            "`%synth restart` starts a new one"
        )

    def _report_engine(self, made: set[int] = frozenset()) -> None:
        """Print the engine's errors, and the faults no cell has shown yet, in this cell.

        ``made``: the modules this cell made.  A fault of a module an earlier cell
        made is left to :meth:`_on_fault`, which writes it in that cell: claiming it
        here, while the push is still on its way to that cell, would print it in
        the wrong one.
        """
        if not self.live:
            self._check_engine_alive()
            return
        client = getattr(self.engine, "client", None)
        if client is None:
            return
        errors: list[tuple[str, str]] = []
        try:
            errors = list(client.sync(timeout=1.0))  # what this cell sent was answered
        except EngineError as exc:
            print(f"jupysynth: {exc}")
        errors += [e for e in client.take_errors() if e not in errors]
        for where, why in errors:
            print(f"jupysynth engine error: {where}: {why}")
        # pushed while this cell ran (its own modules: no output to write to yet),
        # or for a module no cell made
        with self._lock:
            todo = [
                f
                for i, f in list(client.faults.items())
                if i not in self._reported_faults and (i in made or i not in self._writers)
            ]
            self._reported_faults.update(f.id for f in todo)
        for fault in todo:
            print(self._fault_text(fault))

    # -- faults pushed by the engine (the OSC client's thread) ---------------------------------

    def _attach(self) -> None:
        """Hear the pushes of the engine's current client (a restart makes a new one)."""
        client = getattr(self.engine, "client", None) if self.engine is not None else None
        if client is None or client is self._client:
            return
        with self._lock:
            self._client = client
            self._reported_faults.clear()  # a new engine: its faults are all news
        client.on_fault = self._on_fault

    def _adopt_new_modules(self) -> set[int]:
        """The modules this cell sent to the engine report their faults in its output.

        Returns their ids.
        """
        player = self._player()
        if player is None:
            return set()
        made = set(player.modules) - self._modules_before
        write = _CellOutput(self.widgets) if made else None
        with self._lock:
            for i in made:
                self._writers[i] = write
            gone = [self._writers.pop(i) for i in list(self._writers) if i not in player.modules]
            kept = {id(w) for w in self._writers.values()}
            for w in {id(w): w for w in gone if id(w) not in kept}.values():
                w.release()
        return made

    def _on_fault(self, module_id: int, fault: Fault | None) -> None:
        """A push from the engine: redraw the module's panels, tell the cell that made it."""
        for panel in panels(module_id):
            panel.refresh_state()
        with self._lock:
            if fault is None:
                self._reported_faults.discard(module_id)
                return
            write = self._writers.get(module_id)
            if write is None or module_id in self._reported_faults:
                return  # the cell running now prints it when it ends
            self._reported_faults.add(module_id)
            # under the lock: a cell ending now must not release this output meanwhile
            write(self._fault_text(fault))

    def _fault_text(self, fault: Fault) -> str:
        player = self._player()
        module = player.modules.get(fault.id) if player is not None else None
        name = module._short() if module is not None else fault.label
        lines = fault.message.strip().splitlines()
        if len(lines) <= 1:
            return f"jupysynth: {name} is muted, the rest plays on: {fault.last_line}"
        tail = textwrap.indent(fault.tail(FAULT_LINES), "  ")
        return f"jupysynth: {name} raised and is muted, the rest plays on:\n{tail}"

    def _fault_of(self, module: Module) -> str | None:
        """The last line of the module's fault, as pushed (a stand-in engine is asked)."""
        client = getattr(self.engine, "client", None)
        if client is not None:
            fault = client.faults.get(module.id)
            return fault.last_line if fault is not None else None
        try:
            message = self.engine.status().get("faults", {}).get(module.id)
        except EngineError:
            return None
        return Fault(module.id, "", message).last_line if message is not None else None

    def state_of(self, module: Module) -> str:
        """The state line of a knob panel: playing, faulted, feeding, not playing, offline.

        Called from the OSC client's thread too (a pushed fault): it never waits on the engine.
        """
        if self.engine is None:
            return f"offline mode ({self.reason or 'no engine'}): not played"
        if not self.engine.running:
            return "engine stopped: %synth restart"
        player = self._player()
        if player is None:
            return "not playing"
        if module.id in player.modules:
            fault = self._fault_of(module)
            if fault is not None:
                return f"faulted: {fault}"
        if module.id in player.roots:
            return "playing"
        if module.id in player.modules:
            return "in the engine, feeding another module"
        return "not playing"

    def scope_tap(self, patch: Any) -> Any:
        """The engine's scope tap for ``patch`` if the engine plays it, else None.

        A tap reads what the engine renders from shared memory
        (:class:`jupysynth.control.tap.Tap`); None (the scope renders the patch
        in the kernel instead) for several outputs, a module the engine does
        not hold, or a tap the engine refuses.
        """
        from ..control.tap import Tap

        player = self._player()
        if not self.live or player is None:
            return None
        ports = as_outputs(patch)
        if len({p.module.id for p in ports}) != 1:
            return None
        port = ports[0]  # a stereo module shows its left channel
        if port.module.id not in player.modules:
            return None
        try:
            return Tap(self.engine, port.module.id, port.index)
        except EngineError:
            return None


class _CellOutput:
    """Writes into the output of the cell that made it, from any thread, after the cell ended.

    With widgets, an ``ipywidgets.Output`` shown in the cell (empty, so invisible,
    until something is written); without, a plain print (a terminal).  The Output
    is shown without its text form (``Output()``): a front end without widgets
    (nbconvert, nbval, GitHub) shows nothing, and a cell's checked output is unchanged.
    """

    def __init__(self, widgets: bool) -> None:
        self._out: Any = None
        self._written = False
        if widgets:
            import ipywidgets as w
            from IPython.display import display

            self._out = w.Output()
            bundle = self._out._repr_mimebundle_()
            bundle.pop("text/plain", None)
            display(bundle, raw=True)

    def __call__(self, text: str) -> None:
        self._written = True
        if self._out is not None:
            self._out.append_stdout(text + "\n")
        else:
            print(text, flush=True)

    def release(self) -> None:
        """None of its modules is in the engine any more: close it unless it shows an error."""
        if self._out is not None and not self._written:
            self._out.close()


def play(patch: Module | Port | Iterable[Module | Port], name: str | None = None) -> None:
    """Play ``patch`` through the loaded extension's engine, owned by ``name`` or the cell.

    Parameters
    ----------
    patch : Module, Port or list of them
        What to hear.
    name : str, optional
        Replace what this name played before (any cell may use the name).
        Without it, the cell that plays owns the sound: re-running the cell
        replaces it.

    Raises
    ------
    JupysynthError
        Before ``%load_ext jupysynth``.
    """
    session = _require()
    session.play(patch, name=name)


def stop(what: str | Module | Port | Iterable[Module | Port] | None = None) -> None:
    """Stop a name's sound, a patch, or everything played in this notebook."""
    _require().stop(what)


def _require() -> Session:
    if _current is None:
        raise JupysynthError("run %load_ext jupysynth first: it starts the engine")
    return _current
