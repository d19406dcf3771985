"""The IPython extension: ``%load_ext jupysynth`` and the ``%synth`` magics.

Loading starts the engine (or attaches to the one already running in this
kernel) and prints one line saying where the sound goes.  With no engine
(its packages missing, or it cannot start) the notebook works in offline
mode: patches render with :func:`jupysynth.render` and play in ``Audio``
players.

Environment variables choose before loading: ``JUPYSYNTH_OFFLINE=1`` (offline
mode without trying), ``JUPYSYNTH_HEADLESS=1`` (an engine clocked by time,
nothing heard: tests, servers), ``JUPYSYNTH_DEVICE=3`` or a device name,
``JUPYSYNTH_OUTPUT=device|browser|none`` (default: the sound card if there is
one, else the browser: the page plays it through the jupysynth lab extension).

Examples
--------
In a notebook::

    %load_ext jupysynth
    jupysynth: engine pid 4242 on headless (no audio device: nothing is heard), 48000 Hz, ...
    %synth status
    %synth record 10 take.wav
    %synth panic
"""

from __future__ import annotations

import importlib
import json
import os
import shlex
import subprocess
import sys
from typing import Any

from IPython.core.magic import Magics, line_magic, magics_class

from ..errors import JupysynthError
from ..graph import Module
from . import browser, live

# the package re-exports the functions knobs() and scope() under the same names
knobs_mod = importlib.import_module(".knobs", __package__)
scope_mod = importlib.import_module(".scope", __package__)

__all__ = ["SynthMagics", "load_ipython_extension", "unload_ipython_extension", "load_line"]

USAGE = (
    "usage: %synth status | stop | panic | devices | restart | record SECONDS FILE.wav\n"
    "  status   the engine's state: device, load, xruns, latency, faults\n"
    "  stop     stop the engine (all sound)\n"
    "  panic    silence everything now, keep the engine\n"
    "  devices  the audio output devices PortAudio sees\n"
    "  restart  stop the engine and start a new one\n"
    "  record   record the engine's output to a WAV file, e.g. %synth record 10 take.wav"
)


_DEVICES_SCRIPT = """
import json, sounddevice as sd
outs = [
    {"index": i, "name": d["name"], "api": sd.query_hostapis(d["hostapi"])["name"],
     "channels": d["max_output_channels"], "rate": d["default_samplerate"]}
    for i, d in enumerate(sd.query_devices()) if d["max_output_channels"] > 0
]
print(json.dumps({"outputs": outs, "default": sd.default.device[1]}))
"""


def _start_engine() -> tuple[Any, str, bool]:
    """Start or attach to an engine: (engine or None, why not, whether we started it)."""
    if os.environ.get("JUPYSYNTH_OFFLINE", "").strip() not in ("", "0"):
        return None, "JUPYSYNTH_OFFLINE is set", False
    try:
        from ..player import Engine, running_engines
    except ImportError as exc:
        return (
            None,
            f"the live engine's packages are missing ({exc.name}): pip install jupysynth[live]",
            False,
        )
    running = running_engines()
    if running:
        return running[-1], "", False
    device: int | str | None = os.environ.get("JUPYSYNTH_DEVICE") or None
    if isinstance(device, str) and device.isdigit():
        device = int(device)
    headless = os.environ.get("JUPYSYNTH_HEADLESS", "").strip() not in ("", "0")
    # a sound card if there is one, else the page plays it (the browser extension)
    output = os.environ.get("JUPYSYNTH_OUTPUT", "").strip() or "auto"
    # a public OSC port (knobs, play/stop, status; never code) only when asked for
    public = os.environ.get("JUPYSYNTH_OSC_PORT", "").strip()
    if public and not public.isdigit():
        return None, f"JUPYSYNTH_OSC_PORT={public!r} must be a port number (0: any free one)", False
    try:
        token = os.environ.get("JUPYSYNTH_OSC_TOKEN", "").strip() or None
        engine = Engine(
            device=device,
            headless=headless,
            output=output,
            port=int(public) if public else None,
            token=token,
        )
        return engine.start(), "", True
    except (JupysynthError, OSError) as exc:
        return None, f"the engine could not start: {exc}", False


def load_line(session: live.Session) -> str:
    """The one line printed on load: device, sample rate, block, latency, workers, or offline."""
    engine = session.engine
    if engine is None or not engine.running:
        return (
            f"jupysynth: offline mode: no audio device ({session.reason or 'no engine'}); "
            "render with jupysynth.render(patch, seconds) and listen with Audio(...)"
        )
    info = engine.info
    if info.get("headless"):
        where = "headless (no audio device: nothing is heard; %synth record still works)"
    elif info.get("output") == "browser":
        where = (
            "the browser (the page plays the sound: the jupysynth extension; "
            "click the ♪ item in the status bar if the browser asks to allow sound)"
        )
    else:
        where = f"device {info.get('device') or engine.device!r}"
    latency = float(info.get("latency", 0.0)) * 1000.0
    osc = (
        f"public OSC {info.get('host', '127.0.0.1')}:{engine.port}"
        if engine.port
        else "private (no public OSC port)"
    )
    workers = "workers when they pay" if engine.workers == "auto" else f"{engine.workers} workers"
    return (
        f"jupysynth: engine pid {engine.pid} on {where}, {engine.samplerate} Hz, "
        f"block {engine.blocksize}, latency {latency:.1f} ms, {workers}, {osc}"
    )


def _display_module(module: Module) -> None:
    """Show a module as its panel: knobs above a live scope."""
    import ipywidgets as w
    from IPython.display import display

    panel = knobs_mod.knobs(module)
    try:
        view = scope_mod.scope(module)
    except JupysynthError as exc:  # a module that cannot render alone (a Feedback loop)
        display(w.VBox([panel, w.Label(f"no scope: {exc}")]))
        return
    display(w.VBox([panel, view]))


@magics_class
class SynthMagics(Magics):
    """``%synth``: status, stop, panic, devices, restart and record for the engine."""

    def __init__(self, shell: Any, session: live.Session) -> None:
        super().__init__(shell)
        self.session = session

    @line_magic
    def synth(self, line: str) -> None:
        """Control the jupysynth engine: %synth status|stop|panic|devices|restart|record N FILE."""
        try:
            args = shlex.split(line)
        except ValueError as exc:
            print(f"jupysynth: {exc}\n{USAGE}")
            return
        if not args:
            print(USAGE)
            return
        cmd, rest = args[0], args[1:]
        handler = getattr(self, f"_cmd_{cmd}", None)
        if handler is None:
            print(f"jupysynth: unknown command {cmd!r}\n{USAGE}")
            return
        try:
            handler(rest)
        except JupysynthError as exc:
            print(f"jupysynth: {exc}")

    # -- commands ------------------------------------------------------------------------------

    def _cmd_status(self, rest: list[str]) -> None:
        s = self.session
        if s.engine is None:
            print(load_line(s))
            return
        st = s.engine.status()
        if not st.get("running"):
            print(
                f"jupysynth: engine stopped (exit code {st.get('exit_code')}); "
                "%synth restart starts a new one"
            )
            return
        where = "headless (no audio device)" if st["headless"] else f"device {st['device']!r}"
        if st["headless"] and st["device"]:  # the device it had is lost
            where = (
                f"headless: {st['device']}, nothing is heard; once the device is back, "
                "%synth restart plays through it again"
            )
        if st.get("output") == "browser":
            where = "the browser" + ("" if st.get("listening") else " (no page listening)")
        faults = st.get("faults") or {}
        lines = [
            f"engine    pid {st['pid']} on {where}, OSC 127.0.0.1:{st['port']}",
            f"audio     {st['samplerate']} Hz, block {st['blocksize']}, "
            f"latency {st['latency'] * 1000:.1f} ms, {st['workers']} workers",
            f"load      DSP {st['dsp_load'] * 100:.1f} % (peak {st['dsp_peak'] * 100:.1f} %), "
            f"xruns {st['xruns']}, underflows {st['device_underflows']}, late {st['late']}",
            f"patch     {st['modules']} modules, {st['outputs']} output channels, "
            f"{len(s.owners)} owners ({', '.join(sorted(s.owners)) or 'none'})",
            f"faults    {len(faults)}"
            + "".join(f"\n  #{mid}: {msg}" for mid, msg in sorted(faults.items())),
        ]
        print("\n".join(lines))

    def _cmd_stop(self, rest: list[str]) -> None:
        s = self.session
        if s.engine is None or not s.engine.running:
            print("jupysynth: no engine is running")
            return
        pid = s.engine.pid
        s.engine.stop()
        s.forget()
        s._reported_death = True  # stopped on purpose: no "the engine stopped" in the next cell
        print(f"jupysynth: engine pid {pid} stopped; %synth restart starts a new one")

    def _cmd_panic(self, rest: list[str]) -> None:
        print(f"jupysynth: {panic(self.session)}")

    def _cmd_devices(self, rest: list[str]) -> None:
        # a fresh process: PortAudio lists devices once, when it starts, so a card
        # plugged in (or a JACK server started) later is only seen by a new one
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _DEVICES_SCRIPT],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            print("jupysynth: listing the devices took over 30 s; is the audio server stuck?")
            return
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
            print(f"jupysynth: cannot list devices ({why}); pip install jupysynth[live]")
            return
        found = json.loads(proc.stdout)
        if not found["outputs"]:
            print("jupysynth: no audio output device (PortAudio found none); offline mode")
            return
        for d in found["outputs"]:
            mark = "*" if d["index"] == found["default"] else " "
            print(
                f"{mark} {d['index']:>2} {d['name']} ({d['api']}, {d['channels']} out, "
                f"{d['rate']:.0f} Hz)"
            )

    def _cmd_restart(self, rest: list[str]) -> None:
        print(restart(self.session))

    def _cmd_record(self, rest: list[str]) -> None:
        if len(rest) != 2:
            print(f"jupysynth: record takes SECONDS and a file name\n{USAGE}")
            return
        try:
            seconds = float(rest[0])
        except ValueError:
            print(f"jupysynth: record: {rest[0]!r} is not a number of seconds")
            return
        s = self.session
        if not s.live:
            print(
                "jupysynth: offline mode: no engine to record; use "
                "jupysynth.write_wav(path, jupysynth.render(patch, seconds))"
            )
            return
        import numpy as np

        x = s.engine.record(seconds, rest[1])
        peak = float(np.max(np.abs(x))) if x.size else 0.0
        level = f"{20 * np.log10(peak):.1f} dBFS" if peak > 0 else "silence"
        print(
            f"jupysynth: recorded {x.shape[0] / s.engine.samplerate:g} s "
            f"to {rest[1]} (peak {level})"
        )


def panic(session: live.Session) -> str:
    """Silence everything the session's engine plays, keep the engine; what happened."""
    if not session.live:
        return "nothing plays (no engine running)"
    from ..player import panic as engine_panic

    engine_panic(session.engine)
    session.forget()
    return "panic: everything silenced"


def restart(session: live.Session) -> str:
    """Stop the session's engine and start a new one; the load line."""
    if session.engine is not None:
        session.engine.stop()
    session.forget()
    session.engine, session.reason, session.started = _start_engine()
    session._reported_death = False
    return load_line(session)


def load_ipython_extension(ip: Any) -> None:
    """Start or attach to the engine, register ``%synth``, show modules as panels.

    A second call in the same kernel attaches to the same engine and says so.
    """
    session = live.current()
    if session is not None:
        if session.engine is not None and not session.engine.running:
            print("jupysynth: already loaded, but the engine stopped: %synth restart")
        else:
            print(load_line(session) + " (already loaded)")
        return
    engine, reason, started = _start_engine()
    session = live.Session(engine, reason, started)
    live._set_current(session)
    knobs_mod.state_provider = session.state_of
    scope_mod.tap_provider = session.scope_tap
    ip.register_magics(SynthMagics(ip, session))
    ip.events.register("pre_run_cell", session.pre_run_cell)
    ip.events.register("post_run_cell", session.post_run_cell)
    if getattr(ip, "kernel", None) is not None:  # widgets need a front end
        ip.display_formatter.ipython_display_formatter.for_type(Module, _display_module)
        session.widgets = True  # faults are written into the cell that made the module
        browser.attach(session)  # the lab extension's status, commands and sound
    print(load_line(session))


def unload_ipython_extension(ip: Any) -> None:
    """Stop the engine this extension started and undo what loading did."""
    session = live.current()
    if session is None:
        return
    browser.detach()
    for name, hook in (
        ("pre_run_cell", session.pre_run_cell),
        ("post_run_cell", session.post_run_cell),
    ):
        try:
            ip.events.unregister(name, hook)
        except ValueError:
            pass
    ip.display_formatter.ipython_display_formatter.type_printers.pop(Module, None)
    ip.magics_manager.magics["line"].pop("synth", None)
    knobs_mod.state_provider = None
    scope_mod.tap_provider = None
    for panel in knobs_mod.panels():
        panel.refresh_state()
    if session.started and session.engine is not None:
        session.engine.stop()
    session.forget()
    live._set_current(None)
