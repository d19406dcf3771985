"""The engine process: ``python -m jupysynth.engine.child <fd> <config-json>``.

Started by :class:`jupysynth.player.Engine`, never by hand.  It loads the
kernels, opens the device, starts the OSC server, says ``ready`` on the
lifecycle pipe and runs the block loop in its main thread until told to stop.
A thread of its own looks at the muted modules every few tens of milliseconds
and pushes ``/fault`` and ``/fault/cleared`` to the clients that should know
(:mod:`jupysynth.control.notify`), so the block loop does nothing for them.

It dies with its parent, however the parent dies: ``PR_SET_PDEATHSIG``
delivers SIGTERM when the parent goes (even on SIGKILL), and the lifecycle
pipe reads end-of-file, which stops the loop too; a watchdog ends the process
if an orderly stop takes longer than a few seconds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["main"]

log = logging.getLogger("jupysynth.engine")

_PR_SET_PDEATHSIG = 1  # <sys/prctl.h>
_EXIT_GRACE = 3.0  # seconds an orderly stop may take before the process ends itself
# below JACK's own threads (which default to 10 above their server's, often 70-80)
_RT_PRIORITY = 20


def _die_with_parent(parent_pid: int, signum: int = signal.SIGTERM) -> None:
    """Ask the kernel for ``signum`` when the parent dies; exit now if it already has."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed; relying on the lifecycle pipe alone")
    # the parent may have died before prctl: the signal would then never come
    if os.getppid() != parent_pid:
        os._exit(0)


def _watchdog(reason: str) -> None:
    def bail() -> None:
        time.sleep(_EXIT_GRACE)
        log.warning("engine did not stop within %.0f s after %s; exiting", _EXIT_GRACE, reason)
        os._exit(0)

    threading.Thread(target=bail, name="jupysynth-watchdog", daemon=True).start()


def _raise_priority() -> str:
    """Give the block loop (this thread) precedence over the kernel and the rest of the machine.

    Real-time FIFO scheduling where the system allows it (root, or an rtprio limit),
    else a lower nice value, else nothing.  The loop sleeps most of each block, so it
    cannot starve the machine, and Linux caps real-time threads at 95 % of a core anyway.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(_RT_PRIORITY))
        return f"SCHED_FIFO {_RT_PRIORITY}"
    except (OSError, AttributeError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), -10)
        return "nice -10"
    except (OSError, AttributeError):
        return "normal (no permission to raise it)"


def _output_of(driver: Any) -> str:
    """Where the sound goes: ``device``, ``browser`` or ``none`` (headless)."""
    if driver.device_name == "browser":
        return "browser"
    return "none" if driver.headless else "device"


class ChildEngine:
    """Everything the engine process runs: core, driver, OSC server, lifecycle pipe."""

    def __init__(self, cfg: dict[str, Any], conn: Connection, stop: threading.Event) -> None:
        from ..control.address import STATUS_FIELDS
        from ..control.server import OscServer
        from ..errors import EngineError
        from ..warmup import warm_live, warmup
        from .core import EngineCore
        from .drivers import open_driver

        self.cfg = cfg
        self.conn = conn
        self.stop = stop
        self._send_lock = threading.Lock()
        self._status_types = "".join(t for _, t, _ in STATUS_FIELDS)
        t = time.perf_counter()
        if not cfg["workers"] or cfg["workers"] == "auto":  # else workers render (and warm up)
            warmup()
            warm_live(cfg["samplerate"], cfg["blocksize"])
        self.warmup_seconds = time.perf_counter() - t
        try:
            self.server = OscServer(
                self._submit,
                self._status,
                port=cfg["port"],
                host=cfg["host"],
                token=cfg["token"],
                resolve=self._named,
                heard=self._heard,
            )
        except OSError as exc:
            raise EngineError(exc.strerror or str(exc)) from None
        self.pool = None
        try:
            sr, bs = cfg["samplerate"], cfg["blocksize"]
            if cfg["workers"] == "auto":
                from .auto import AutoRenderer
                from .core import local_renderer
                from .workers import PoolRenderer

                self.pool = AutoRenderer(
                    local_renderer(sr, bs, cfg["code_budget"]),
                    lambda n: PoolRenderer(sr, bs, n),
                )
            elif cfg["workers"] > 0:
                from .workers import PoolRenderer

                self.pool = PoolRenderer(sr, bs, cfg["workers"])
            self.core = EngineCore(
                cfg["samplerate"],
                cfg["blocksize"],
                0,
                self.server.error,
                self.server.reply,
                self.pool,
                limiter=cfg["limiter"],
                code_budget=cfg["code_budget"],
            )
            self.driver = open_driver(
                self.core,
                cfg["device"],
                cfg["device_blocksize"],
                cfg["lead_blocks"],
                cfg["headless"],
                cfg.get("output") or "device",
            )
        except BaseException:
            self.server.close()
            if self.pool is not None:
                self.pool.close()
            raise
        self.running = False

    # -- OSC hooks (server thread) ---------------------------------------------------------

    def _submit(self, timetag: int | None, address: str, args: tuple, sender: Any) -> None:
        self.core.submit(timetag, address, args, sender)

    def _heard(self, frame: int, target: int) -> None:
        """``/out/heard``: a page plays the browser output (OSC thread)."""
        from ..errors import EngineError

        heard = getattr(self.driver, "heard", None)
        if heard is None:
            raise EngineError("/out/heard: this engine plays on a device, not in a browser")
        heard(frame, target)

    def _named(self, name: str) -> int | None:
        """The id of the module named ``name`` (the public port's play, stop and knobs)."""
        for i, spec in list(self.core.table.nodes.items()):
            if spec.name == name:
                return i
        return None

    def _faults(self) -> dict[int, tuple[str, str]]:
        """``{id: (label, text)}`` of the muted modules the patch still holds (any thread).

        The renderer's dict is written by the block loop; copying it is one C call,
        which the GIL keeps whole.  A fault of a module freed since is left out.
        """
        nodes = self.core.table.nodes
        out = {}
        for i, text in self.core.faults().items():
            spec = nodes.get(i)
            if spec is not None:
                out[i] = (spec.label(), text)
        return out

    def _watch_faults(self) -> None:
        """Push new and cleared faults until the engine stops (its own thread)."""
        from ..control.notify import POLL_SECONDS

        notifier = self.server.notifier
        failed = False
        while not self.stop.wait(POLL_SECONDS):
            try:
                self.server.push(notifier.poll(self._faults()))
            except Exception:  # noqa: BLE001 - a bug here must not end the pushes for good
                if not failed:
                    log.exception("pushing faults failed (logged once)")
                failed = True

    def _status(self) -> tuple[tuple, str]:
        from ..control.packets import unix_from_ntp

        core, driver = self.core, self.driver
        faults = {str(i): text for i, (_, text) in self._faults().items()}
        values = (
            int(self.running),
            int(driver.headless),
            core.samplerate,
            core.blocksize,
            core.frame,
            unix_from_ntp(core.t0_ntp),
            driver.latency,
            driver.dsp_load,
            driver.take_peak(),
            driver.xruns,
            driver.device_underflows,
            core.late,
            driver.drift_ppm,
            driver.offset_ms,
            core.renderer.workers,
            core.renderer.restarts,
            len(core.table.nodes),
            len(core.table.outputs),
            self.server.messages,
            self.server.errors,
            driver.device_name,
            json.dumps(faults),
            core.limited,
            _output_of(driver),
            int(getattr(driver, "listening", False)),
            getattr(driver, "target", 0),
            core.renderer.late_parts,
        )
        return values, self._status_types

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self) -> None:
        from ..control.packets import ntp_from_unix

        core, driver = self.core, self.driver
        t0 = driver.start()
        core.t0_ntp = ntp_from_unix(t0)
        self.server.start()
        self.running = True
        jack = driver.jack_client_name() if hasattr(driver, "jack_client_name") else None
        threading.Thread(target=self._pipe, name="jupysynth-lifecycle", daemon=True).start()
        threading.Thread(target=self._watch_faults, name="jupysynth-faults", daemon=True).start()
        # nothing allocated so far is garbage: keep the collector off it for good
        gc.collect()
        gc.freeze()
        # raised last, for this thread only: threads started from it would inherit it
        priority = _raise_priority()
        info = {
            "pid": os.getpid(),
            "socket": self.server.path,
            "host": self.server.host,
            "port": self.server.port,
            "samplerate": core.samplerate,
            "blocksize": core.blocksize,
            "headless": driver.headless,
            "device": driver.device_name,
            "latency": driver.latency,
            "t0": t0,
            "jack_client": jack,
            "output": _output_of(driver),
            "out_ring": getattr(getattr(driver, "ring", None), "name", None),
            "out_capacity": getattr(getattr(driver, "ring", None), "capacity", 0),
            "warmup_seconds": self.warmup_seconds,
            "priority": priority,
        }
        self._send(("ready", info))
        try:
            driver.run(self.stop)
        finally:
            self.running = False
            if core.renderer.sandbox is not None:
                core.renderer.sandbox.close()  # at once: a stopping engine leaves none behind
            self.server.close()
            driver.close()
            # the block loop has ended: no write can race this (a dead kernel leaves none)
            core.taps.close_all()
            core.close()
            core.renderer.close()

    def _send(self, msg: tuple) -> None:
        with self._send_lock:
            self.conn.send(msg)

    def _pipe(self) -> None:
        while not self.stop.is_set():
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                log.info("parent gone: stopping the engine")
                self.stop.set()
                _watchdog("the parent died")
                return
            if msg[0] == "stop":
                self.stop.set()
                _watchdog("stop")
                return
            if msg[0] == "record":
                threading.Thread(
                    target=self._record, args=msg[1:], name="jupysynth-record", daemon=True
                ).start()

    def _record(self, req: int, at: float | None, frames: int) -> None:
        from ..control.packets import ntp_from_unix
        from .core import RecordJob

        core = self.core
        start = None if at is None else core.frame_of(ntp_from_unix(at))
        job = RecordJob(start, frames)
        core.record(job)
        wait = frames / core.samplerate + 10.0
        if start is not None:
            wait += max(0.0, (start - core.frame) / core.samplerate)
        if not job.done.wait(wait):
            job.error = f"the recording did not finish within {wait:.1f} s"
        try:
            if job.error is not None:
                self._send(("recorded", req, None, job.error))
            else:
                self._send(("recorded", req, job.buf, job.start))
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    """Run the engine process (see the module docstring)."""
    from .. import guard

    argv = sys.argv if argv is None else argv
    fd, cfg = int(argv[1]), json.loads(argv[2])
    _die_with_parent(cfg["parent_pid"])
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="jupysynth engine: %(message)s"
    )
    # Ctrl-C in the terminal is for the parent, which stops the engine in order
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()

    # A signal handler runs between two bytecodes of the main thread, possibly
    # inside Event.set() holding its lock: calling stop.set() there deadlocked
    # the engine for good (seen when a kernel died).  The handler only writes a
    # byte; a thread turns it into stop.set(), and SIGALRM's default action ends
    # the process if the clean stop stalls.
    wake_r, wake_w = os.pipe()

    def on_term(signum: int, frame: Any) -> None:
        guard.exit_after(int(_EXIT_GRACE) + 1)
        try:
            os.write(wake_w, b"\0")
        except OSError:
            pass

    def relay() -> None:
        os.read(wake_r, 1)
        stop.set()
        _watchdog("SIGTERM")

    threading.Thread(target=relay, name="jupysynth-sigterm", daemon=True).start()
    signal.signal(signal.SIGTERM, on_term)
    # a cell's process() runs on this thread: give it a time budget, refuse its os._exit
    guard.install()
    # the OSC thread must never hold the GIL for long while a block is due
    sys.setswitchinterval(0.0005)
    conn = Connection(fd)
    try:
        engine = ChildEngine(cfg, conn, stop)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        from ..errors import JupysynthError

        detail = str(exc) if isinstance(exc, JupysynthError) else traceback.format_exc()
        try:
            conn.send(("error", detail))
        except OSError:
            pass
        return 1
    try:
        engine.run()
    except Exception:  # noqa: BLE001
        log.error("engine failed:\n%s", traceback.format_exc())
        try:
            conn.send(("error", traceback.format_exc()))
        except OSError:
            pass
        return 1
    try:
        engine._send(("stopped", {}))
    except OSError:
        pass
    conn.close()
    if getattr(engine.driver, "lost", ""):
        # PortAudio's exit handler would wait on the audio server that went away
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
