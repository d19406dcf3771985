"""The kernel-side handle of a live engine: start, stop, status, record.

Examples
--------
>>> import jupysynth as js
>>> from jupysynth.player import Engine
>>> with Engine(headless=True) as engine:          # doctest: +SKIP
...     js.Sine(freq=440, amp=0.2).play(engine)
...     samples = engine.record(1.0)
"""

from __future__ import annotations

import atexit
import itertools
import json
import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from ..control import local
from ..control.address import MAX_AHEAD_SECONDS, MAX_FADE_SECONDS
from ..control.client import Client
from ..control.packets import ntp_from_unix, unix_from_ntp
from ..errors import EngineError, ParamError
from ..launch import launcher

__all__ = ["Engine", "check_fade", "check_time", "default_engine", "running_engines"]

_running: list[Engine] = []
_requests = itertools.count(1)


#: Where an engine's sound can go (``Engine(output=...)``).
OUTPUTS = ("device", "browser", "auto", "none")


def check_time(what: str, at: float | None) -> float | None:
    """``at`` as a float if it is a Unix time within an hour of now (or None); else ParamError.

    Checked in the kernel, before anything is sent, so a mistake (``nan``, a time
    in milliseconds, ``time.monotonic()``) fails in the cell that made it.
    """
    if at is None:
        return None
    if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
        raise ParamError(f"{what}={at!r} must be a Unix time in seconds, e.g. time.time() + 0.1")
    now = time.time()
    if abs(at - now) > MAX_AHEAD_SECONDS:
        raise ParamError(
            f"{what}={at!r} is {at - now:+.0f} s from now; give a Unix time in seconds within "
            f"{MAX_AHEAD_SECONDS:.0f} s of time.time() (not time.monotonic(), not milliseconds)"
        )
    return float(at)


def check_fade(fade: float) -> float:
    """``fade`` as a float if it is from 0 to :data:`MAX_FADE_SECONDS` seconds; else ParamError."""
    if (
        isinstance(fade, bool)
        or not isinstance(fade, (int, float))
        or not 0.0 <= fade <= MAX_FADE_SECONDS
    ):
        raise ParamError(
            f"fade={fade!r} must be a number of seconds from 0 to {MAX_FADE_SECONDS:g}"
        )
    return float(fade)


def running_engines() -> list[Engine]:
    """The engines started in this process and not stopped, oldest first."""
    return [e for e in _running if e.running]


def default_engine(start: bool = True) -> Engine:
    """The engine that ``module.play()`` and ``jupysynth.panic()`` use.

    The most recently started engine that still runs; if there is none and
    ``start`` is true, a new ``Engine()`` with default settings is started.

    Raises
    ------
    EngineError
        If none runs and ``start`` is false.
    """
    live = running_engines()
    if live:
        return live[-1]
    if not start:
        raise EngineError("no engine is running; start one with jupysynth.Engine().start()")
    return Engine().start()


class Engine:
    """A real-time engine in its own process, controlled over OSC.

    Parameters
    ----------
    samplerate : int, default 48000
        Frames per second.
    blocksize : int, default 128
        Frames per rendered block: time-tagged changes land at any frame,
        untagged ones at the next block.
    device : int or str, optional
        PortAudio output device (index or name, see ``python -m sounddevice``).
        None uses the default output; if there is none, the engine runs headless.
    workers : int or "auto", default 0
        Worker processes rendering parts of the patch (one more is kept warm as
        a spare); 0 renders in the engine process, best for small patches and
        small machines.  ``"auto"`` renders in the engine process and moves the
        patch to a pool of workers while it takes more than half of the block
        time there and the machine has the cores (at least three), and back
        when the pool does not pay (:mod:`jupysynth.engine.auto`).  The samples
        are the same for any count, and across every move.
    port : int, optional
        Open a public OSC port on UDP for other programs (``oscsend``, a phone
        app): 0 picks a free one (see :attr:`port`).  It accepts only knobs,
        play and stop of modules, status, ping and sync
        (:data:`jupysynth.control.address.PUBLIC`): never code, audio or
        files.  None (the default) opens no port: the kernel talks to the
        engine over a Unix socket only its user can reach
        (:attr:`socket_path`, see docs/osc.md).
    host : str, default "127.0.0.1"
        Interface of the public port; another address opens it to the network.
    token : str, optional
        A secret for the public port: its messages must start their address with
        it (``/<token>/param/set``).  At least 8 letters, digits, ``-`` or ``_``.
    output : {"device", "browser", "none"}, optional
        Where the sound goes: a sound card (``device``, the default; with no
        card the engine runs headless), the notebook page
        (``browser``: the kernel streams it to the jupysynth JupyterLab
        extension, whose audio clock then leads; see docs/browser-audio.md),
        the card if there is one and else the page (``auto``, what
        ``%load_ext jupysynth`` uses), or nowhere (``none``, as ``headless=True``).  None reads
        ``JUPYSYNTH_OUTPUT``, else ``device``.
    headless : bool, default False
        Run without a device: clocked by time, nothing heard (tests, servers).
    lead_blocks : int, default 2
        Blocks rendered ahead of the device.  More survive a slower machine,
        fewer cut latency.
    device_blocksize : int, default 0
        Frames per device callback; 0 lets the host API choose (on JACK: its period).
    limiter : bool, default True
        A safety limiter on the output: exactly transparent below full scale,
        it turns down (instant attack, 50 ms release) whatever would exceed
        it, so a wrong ``amp`` never reaches ears at full blast.  Off
        (measurements), :meth:`record` gets the output as rendered and the
        device gets it clipped at +-1.  ``status()["limited"]`` counts the
        blocks it turned down.
    code_budget : float, optional
        Seconds one ``process()`` call of a module written in a cell may take
        on the block thread before it is stopped and muted (``workers=0``);
        default two blocks, at least 5 ms (:func:`jupysynth.engine.core.user_budget`).
    start_timeout : float, default 120
        Seconds :meth:`start` waits for the engine (the first start compiles
        the kernels when numba's cache is empty).

    Examples
    --------
    >>> from jupysynth.player import Engine
    >>> engine = Engine(blocksize=128).start()      # doctest: +SKIP
    >>> engine.status()["dsp_load"]                 # doctest: +SKIP
    0.001
    >>> engine.stop()                               # doctest: +SKIP
    """

    def __init__(
        self,
        samplerate: int = 48000,
        blocksize: int = 128,
        device: int | str | None = None,
        workers: int | str = 0,
        port: int | None = None,
        host: str = "127.0.0.1",
        *,
        token: str | None = None,
        output: str | None = None,
        headless: bool = False,
        lead_blocks: int = 2,
        device_blocksize: int = 0,
        limiter: bool = True,
        code_budget: float | None = None,
        start_timeout: float = 120.0,
    ) -> None:
        if not isinstance(samplerate, int) or not 8000 <= samplerate <= 192000:
            raise ParamError(f"samplerate={samplerate!r} must be an integer from 8000 to 192000 Hz")
        if not isinstance(blocksize, int) or not 16 <= blocksize <= 4096:
            raise ParamError(f"blocksize={blocksize!r} must be an integer from 16 to 4096 frames")
        if workers != "auto" and (
            not isinstance(workers, int) or isinstance(workers, bool) or not 0 <= workers <= 64
        ):
            raise ParamError(
                f"workers={workers!r} must be an integer from 0 (the engine renders "
                'everything itself) to 64, or "auto" (workers when they pay)'
            )
        if port is not None and (
            not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535
        ):
            raise ParamError(
                f"port={port!r} must be None (no public OSC port), 0 (pick a free one) "
                "or a port from 1 to 65535"
            )
        if not isinstance(lead_blocks, int) or not 1 <= lead_blocks <= 64:
            raise ParamError(f"lead_blocks={lead_blocks!r} must be an integer from 1 to 64")
        if output is None:
            output = os.environ.get("JUPYSYNTH_OUTPUT", "").strip() or "device"
        if output not in OUTPUTS:
            raise ParamError(
                f"output={output!r} must be one of {', '.join(map(repr, OUTPUTS))} "
                "(a sound card, the notebook page, the card if any else the page, or nowhere)"
            )
        if output == "none":
            headless = True
        self.output = "none" if headless else output
        self.samplerate = samplerate
        self.blocksize = blocksize
        self.device = device
        self.workers = workers
        self.host = host
        self.headless = headless
        self.lead_blocks = lead_blocks
        self.device_blocksize = device_blocksize
        if code_budget is not None and (
            isinstance(code_budget, bool)
            or not isinstance(code_budget, (int, float))
            or not 0.001 <= code_budget <= 60
        ):
            raise ParamError(f"code_budget={code_budget!r} must be from 0.001 to 60 seconds")
        if token is not None and not re.fullmatch(r"[A-Za-z0-9_-]{8,128}", str(token)):
            raise ParamError(
                "token must be 8 to 128 letters, digits, '-' or '_' (it is the first part "
                "of an OSC address), e.g. secrets.token_urlsafe(12)"
            )
        self.token = token
        self.limiter = bool(limiter)
        self.code_budget = code_budget
        self.start_timeout = start_timeout
        self._port = port
        self.info: dict[str, Any] = {}
        self.client: Client | None = None
        self._proc: subprocess.Popen | None = None
        self._exit_code: int | None = None
        self._conn: Connection | None = None
        self._pipe_lock = threading.Lock()
        self.player: Any = None  # the kernel-side record of what is playing (play.py)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the engine process lives."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The engine process id, while it runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def port(self) -> int | None:
        """The public OSC port (UDP) the engine listens on, or None when it opened none."""
        port = self.info.get("port", self._port)
        return None if port is None else int(port)

    @property
    def socket_path(self) -> str | None:
        """The engine's private Unix socket, the owner's channel (known once started)."""
        return self.info.get("socket")

    def start(self) -> Engine:
        """Start the engine process and wait until it plays (or runs headless).

        Returns
        -------
        Engine
            ``self``, for chaining.

        Raises
        ------
        EngineError
            If it cannot start: the device cannot be opened, the port is
            taken, or it does not answer within ``start_timeout``.
        """
        if self.running:
            return self
        self.stop()  # clean up after an engine that died on its own
        local.sweep()  # sockets of kernels and engines killed before they could clean up
        ours, theirs = socket.socketpair()
        cfg = {
            "samplerate": self.samplerate,
            "blocksize": self.blocksize,
            "device": self.device,
            "device_blocksize": self.device_blocksize,
            "lead_blocks": self.lead_blocks,
            "workers": self.workers,
            "host": self.host,
            "port": self._port,
            "headless": self.headless,
            "output": self.output,
            "limiter": self.limiter,
            "code_budget": self.code_budget,
            "token": self.token,
            "parent_pid": os.getpid(),
        }
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        try:
            # a fresh interpreter, not multiprocessing: no re-import of the notebook's
            # __main__ and no resource-tracker process left behind
            self._proc = launcher.popen(
                [
                    sys.executable,
                    "-m",
                    "jupysynth.engine.child",
                    str(theirs.fileno()),
                    json.dumps(cfg),
                ],
                pass_fds=(theirs.fileno(),),
                env=env,
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        try:
            self.info = self._wait_ready()
            self.client = Client(path=self.info["socket"])
            self.client.ping(timeout=5.0)
        except BaseException:
            self.stop()
            raise
        _running.append(self)
        return self

    def _wait_ready(self) -> dict[str, Any]:
        conn, proc = self._conn, self._proc
        assert conn is not None and proc is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                ready = conn.poll(0.1)
            except (EOFError, OSError):
                ready = True
            if ready:
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    code = proc.wait(5)
                    raise EngineError(
                        f"the engine process exited with code {code} before it was ready; "
                        "its error is on this process's stderr"
                    ) from None
                if msg[0] == "ready":
                    return msg[1]
                if msg[0] == "error":
                    proc.wait(5)
                    raise EngineError(f"the engine could not start: {msg[1]}")
            if time.monotonic() > deadline:
                raise EngineError(
                    f"the engine did not start within {self.start_timeout:g} s; "
                    "if numba is compiling the kernels for the first time, run "
                    "`python -m jupysynth warmup` once, or pass a longer start_timeout"
                )

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the engine: close the device, end the process, leave nothing behind.

        Safe to call more than once, and on an engine that died.
        """
        if self in _running:
            _running.remove(self)
        if self.player is not None:
            self.player.forget()
        proc, conn = self._proc, self._conn
        if conn is not None:
            if proc is not None and proc.poll() is None:
                try:
                    with self._pipe_lock:
                        conn.send(("stop",))
                except OSError:
                    pass
        if proc is not None:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(2.0)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if conn is not None:
            conn.close()
        if self.client is not None:
            self.client.close()
        if proc is not None:
            self._exit_code = proc.returncode
        self._proc = self._conn = self.client = None

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        if not self.running:
            return f"<Engine stopped, {self.samplerate} Hz, block {self.blocksize}>"
        where = "headless" if self.info.get("headless") else self.info.get("device", "")
        if self.info.get("output") == "browser":
            where = "the browser"
        public = f", public OSC {self.info.get('host')}:{self.port}" if self.port else ""
        return (
            f"<Engine pid {self.pid} on {where}, {self.samplerate} Hz, block {self.blocksize}"
            f"{public}>"
        )

    # -- talking to it -----------------------------------------------------------------------

    def _client(self) -> Client:
        if not self.running or self.client is None:
            raise EngineError("the engine is not running; call engine.start() first")
        return self.client

    def status(self) -> dict[str, Any]:
        """The engine's state: running, DSP load, xruns, latency, workers, faults...

        See :data:`jupysynth.control.address.STATUS_FIELDS` for every key.
        A stopped engine gives ``{"running": False}``.
        """
        if not self.running:
            code = self._proc.poll() if self._proc is not None else self._exit_code
            return {"running": False, "exit_code": code}
        out = self._client().status()
        out["pid"] = self.pid
        out["port"] = self.port
        return out

    def send(self, address: str, *args: object) -> None:
        """Send one OSC message (applied at the next block)."""
        self._client().send(address, *args)

    def send_bundle(self, messages: list[tuple], at: float | None = None) -> None:
        """Send ``[(address, *args), ...]`` as one bundle, at Unix time ``at`` to the sample."""
        at = check_time("at", at)
        client = self._client()
        client.send_bundle([client.message(*m) for m in messages], at)

    def sync(self, timeout: float = 2.0) -> None:
        """Wait until the engine applied everything sent before.

        Parameter changes the player's throttle still holds (a knob dragged
        faster than it sends) are sent first, so they count as sent before.

        Raises
        ------
        EngineError
            Carrying the engine's ``/error`` replies, if it rejected any.
        """
        client = self._client()
        if self.player is not None:
            self.player.flush()
        errors = client.sync(timeout)
        if errors:
            raise EngineError("; ".join(f"{a or 'packet'}: {m}" for a, m in errors))

    # -- the clock ---------------------------------------------------------------------------

    def time_of(self, frame: int) -> float:
        """Unix time at which ``frame`` plays (for bundle time tags).

        Uses the engine's current ``t0``, which follows the device's clock
        (see docs/clock.md): asks the engine, one OSC round trip.
        """
        return self._t0() + frame / self.samplerate

    def frame_at(self, t: float) -> int:
        """The frame that plays at Unix time ``t``, as the engine rounds a time tag now."""
        t0 = ntp_from_unix(self._t0())
        return ((ntp_from_unix(t) - t0) * self.samplerate + (1 << 31)) >> 32

    def _t0(self) -> float:
        if not self.running or "t0" not in self.info:
            raise EngineError("the engine is not running; call engine.start() first")
        # the live t0, not the one of the start: the clock estimator moves it when the
        # device drifts or loses time, and tags are mapped with the live one
        t0 = self._client().status()["t0"]
        # the engine keeps t0 as an NTP tag: round-trip it to get the same float
        return unix_from_ntp(ntp_from_unix(t0))

    # -- recording ---------------------------------------------------------------------------

    def record(
        self,
        seconds: float,
        path: str | os.PathLike | None = None,
        at: float | None = None,
        format: str = "float32",
    ) -> np.ndarray:
        """Record the engine's output as the device gets it (after the safety limiter, which
        is exactly transparent below full scale; ``Engine(limiter=False)``: as rendered).

        Parameters
        ----------
        seconds : float
            How long.
        path : str or Path, optional
            Also write a WAV file there (see :func:`jupysynth.write_wav`).
        at : float, optional
            Unix time of the first frame (e.g. a bundle's time tag); default:
            the next block the engine renders.
        format : {"float32", "int16"}
            WAV sample format when ``path`` is given.

        Returns
        -------
        numpy.ndarray
            float32, shape ``(frames, 2)``.

        Raises
        ------
        EngineError
            If ``at`` has already been rendered, or the engine stops meanwhile.
        """
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not 1.0 / self.samplerate <= seconds <= 3600
        ):
            raise ParamError(
                f"seconds={seconds!r} must be a number from one frame "
                f"({1.0 / self.samplerate:.2g} s) to 3600"
            )
        at = check_time("at", at)
        frames = int(round(seconds * self.samplerate))
        self._client()
        conn = self._conn
        assert conn is not None
        req = next(_requests)
        wait = seconds + 15.0 + (max(0.0, at - time.time()) if at is not None else 0.0)
        with self._pipe_lock:
            try:
                conn.send(("record", req, at, frames))
                if not conn.poll(wait):
                    raise EngineError(f"the engine sent no recording within {wait:.0f} s")
                msg = conn.recv()
            except (EOFError, OSError):
                raise EngineError("the engine stopped while recording") from None
        _, got, data, extra = msg
        if got != req or data is None:
            raise EngineError(f"recording failed: {extra}")
        if path is not None:
            from ..renderer import write_wav

            write_wav(path, data, self.samplerate, format=format)
        return data


@atexit.register
def _stop_all() -> None:
    for engine in list(_running):
        engine.stop()
