"""A virtual sound card for tests: a JACK server on its "dummy" backend.

The JACK dummy backend is clocked by the system timer, so PortAudio (and
therefore ``sounddevice`` and ``rtmixer``) sees a real-time, full-duplex
device on a headless machine without any sound hardware.  Connecting a
PortAudio client's output ports to its own input ports turns it into a
loopback cable: whatever a stream plays comes back in its input.

Typical use in a test::

    with VirtualSoundCard(samplerate=48000, period=128) as card:
        with sd.Stream(device=card.device_index(), ...) as stream:
            card.connect_loopback()
            ...

Requires the Debian packages ``jackd2`` and ``libportaudio2`` (see
``scripts/install-system-deps.sh``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import IO

import numpy as np
import sounddevice as sd

__all__ = ["JACK_HOSTAPI_NAME", "VirtualSoundCard", "VirtualSoundCardError"]

#: Name under which PortAudio reports its JACK host API.
JACK_HOSTAPI_NAME = "JACK Audio Connection Kit"

# Linux <sys/prctl.h>.
_PR_SET_PDEATHSIG = 1

# Resolved once, in the parent, because a preexec_fn runs between fork() and
# exec() where loading a library (malloc, locks) is not safe.
_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _die_with_parent(parent_pid: int) -> None:
    """Make the current (child) process receive SIGTERM when its parent dies.

    Parameters
    ----------
    parent_pid : int
        PID of the process that forked us, taken before the fork.

    Notes
    -----
    SIGTERM rather than SIGKILL, so jackd can remove its entry from JACK's
    shared-memory server registry.  It does not always manage: when the dead
    parent also held a client (PortAudio), jackd 1.9.21 often dies of
    SIGPIPE while shutting down -- it installs its own SIGPIPE handler, so
    ignoring the signal here would not help.  The stale entry is reclaimed
    by the next server *of the same name*, which is why server names must
    not be unique per run (see :class:`VirtualSoundCard`).

    The kernel delivers the signal when the *thread* that forked exits, so
    start the card from a thread that lives as long as the tests do.
    """
    if _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        os._exit(127)
    # The parent may have died between fork() and prctl(); the death signal
    # would then never come, so give up instead of leaking a server.
    if os.getppid() != parent_pid:
        os._exit(1)


class VirtualSoundCardError(RuntimeError):
    """The virtual sound card could not be started, found or wired."""


class VirtualSoundCard:
    """A JACK dummy-backend server that PortAudio can play into and record from.

    If a JACK server is already running it is used as is (and left running
    by :meth:`stop`); otherwise ``jackd --no-realtime -d dummy`` is started
    as a child process that dies with the test process.

    Parameters
    ----------
    samplerate : int, optional
        Sample rate of the started server, in Hz.
    period : int, optional
        JACK period (frames per process cycle) of the started server.
    server_name : str or None, optional
        JACK server name.  ``None`` uses the default server.  Another name
        gives a separate server; it is exported as ``JACK_DEFAULT_SERVER``
        to this process (for PortAudio) while the card is started.  Use a
        *fixed* name, never one unique per run: JACK's registry has only 8
        server slots, and a slot left by a jackd that died uncleanly is
        reclaimed only by a later server of the same name.
    startup_timeout : float, optional
        Seconds to wait for a started server to accept clients.
    jackd : str, optional
        The jackd executable.

    Attributes
    ----------
    started : bool
        True if :meth:`start` launched jackd itself (False if it reused a
        running server).
    pid : int or None
        PID of the jackd this object started, if any.

    Notes
    -----
    :meth:`start` and :meth:`stop` re-initialise PortAudio, because PortAudio
    enumerates host APIs only in ``Pa_Initialize`` and ``sounddevice`` calls
    that once at import time.  No PortAudio stream may be open at that
    moment: ``Pa_Terminate`` closes them behind ``sounddevice``'s back.
    """

    def __init__(
        self,
        samplerate: int = 48000,
        period: int = 128,
        *,
        server_name: str | None = None,
        startup_timeout: float = 10.0,
        jackd: str = "jackd",
    ) -> None:
        self.samplerate = int(samplerate)
        self.period = int(period)
        self.server_name = server_name
        self.startup_timeout = float(startup_timeout)
        self.jackd = jackd
        self.started = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._saved_server_env: str | None = None
        self._env_changed = False

    # ------------------------------------------------------------------ #
    # lifecycle

    def __enter__(self) -> VirtualSoundCard:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """PID of the jackd started by this object, or None."""
        return self._proc.pid if self._proc is not None else None

    def is_server_running(self) -> bool:
        """Tell whether a JACK server (of our server name) accepts clients.

        Returns
        -------
        bool
            True if ``jack_lsp`` could connect to it.
        """
        try:
            result = subprocess.run(
                ["jack_lsp"],
                env=self._jack_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=5,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False
        return result.returncode == 0

    def start(self) -> VirtualSoundCard:
        """Start (or reuse) the JACK server and make PortAudio see it.

        Returns
        -------
        VirtualSoundCard
            ``self``, for chaining.

        Raises
        ------
        VirtualSoundCardError
            If jackd or the JACK tools are missing, or the server does not
            answer within ``startup_timeout`` (the message includes jackd's
            output).
        """
        if self._proc is not None:
            return self
        for tool in (self.jackd, "jack_lsp", "jack_connect", "jack_disconnect"):
            if shutil.which(tool) is None:
                raise VirtualSoundCardError(
                    f"{tool!r} not found; run scripts/install-system-deps.sh"
                )
        self._export_server_name()
        if self.is_server_running():
            self.started = False
        else:
            self._launch()
            self.started = True
        # sounddevice initialised PortAudio at import, probably before the
        # server existed, so its device list has no JACK host API yet.
        _reinitialize_portaudio()
        self._check_portaudio_has_jack()
        return self

    def _launch(self) -> None:
        """Spawn jackd and wait until it accepts clients."""
        cmd = [self.jackd, "--no-realtime"]
        if self.server_name is not None:
            cmd += ["--name", self.server_name]
        cmd += ["-d", "dummy", "-r", str(self.samplerate), "-p", str(self.period)]
        # A file, not a pipe: jackd logs an "XRun" line for every late cycle
        # and would block on a full pipe nobody reads.
        self._log = tempfile.TemporaryFile(prefix="jackd-", suffix=".log")
        parent_pid = os.getpid()
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self._jack_env(),
            # Own session: a Ctrl-C in the terminal reaches pytest, whose
            # teardown then stops jackd in order, instead of killing jackd
            # under a stream that is still open.
            start_new_session=True,
            preexec_fn=lambda: _die_with_parent(parent_pid),
        )
        deadline = time.monotonic() + self.startup_timeout
        while True:
            status = self._proc.poll()
            if status is not None:
                output = self._read_log()
                self._proc = None
                self._close_log()
                raise VirtualSoundCardError(
                    f"jackd exited with status {status}{self._hint(output)}; "
                    f"command: {' '.join(cmd)}\n--- jackd output ---\n{output}"
                )
            if self.is_server_running():
                return
            if time.monotonic() > deadline:
                output = self._read_log()
                self._terminate_process()
                raise VirtualSoundCardError(
                    f"jackd did not answer within {self.startup_timeout:g} s; "
                    f"command: {' '.join(cmd)}\n--- jackd output ---\n{output}"
                )
            time.sleep(0.05)

    @staticmethod
    def _hint(output: str) -> str:
        # The two registry failures of jackd 1.9.21 (see _die_with_parent).
        if "Too many servers already active" in output:
            return (
                " (JACK's 8-slot server registry is full of servers that died"
                " uncleanly; if no jackd runs, delete /dev/shm/jack-shm-registry)"
            )
        if "already active" in output:
            # Typically a jackd just killed, still an unreaped zombie.
            return (
                " (a server of that name is still registered: wait for the "
                "old jackd to be reaped, or pick another server_name)"
            )
        return ""

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the jackd this object started; leave a reused server alone.

        Safe to call more than once.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait for jackd to exit after SIGTERM before SIGKILL.

        Raises
        ------
        VirtualSoundCardError
            If the process still exists afterwards.
        """
        proc = self._proc
        if proc is not None:
            # Close PortAudio's JACK client while the server is still alive:
            # closing it against a dead server can hang or spew errors.
            with _portaudio_suspended():
                self._terminate_process(timeout)
            if _process_exists(proc.pid):
                raise VirtualSoundCardError(f"jackd (pid {proc.pid}) is still alive")
        self._restore_server_name()

    def _terminate_process(self, timeout: float = 5.0) -> None:
        """SIGTERM (then SIGKILL) our jackd and reap it."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        self._proc = None
        self._close_log()

    def _read_log(self, limit: int = 8000) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        text = self._log.read().decode(errors="replace")
        # Drop the per-cycle XRun chatter so the actual error is visible.
        lines = [ln for ln in text.splitlines() if "XRun" not in ln]
        return "\n".join(lines)[-limit:]

    def log(self) -> str:
        """Return jackd's output so far (without XRun lines), for debugging.

        Returns
        -------
        str
            Empty if this object did not start jackd.
        """
        return self._read_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    # ------------------------------------------------------------------ #
    # environment

    def _jack_env(self) -> dict[str, str]:
        env = dict(os.environ)
        # Never let a JACK tool auto-start a server from ~/.jackdrc: we want
        # to know whether one runs, and to own the one we start.
        env["JACK_NO_START_SERVER"] = "1"
        if self.server_name is not None:
            env["JACK_DEFAULT_SERVER"] = self.server_name
        return env

    def _export_server_name(self) -> None:
        # libjack inside PortAudio reads JACK_DEFAULT_SERVER when
        # Pa_Initialize opens its client.
        if self.server_name is None or self._env_changed:
            return
        self._saved_server_env = os.environ.get("JACK_DEFAULT_SERVER")
        os.environ["JACK_DEFAULT_SERVER"] = self.server_name
        self._env_changed = True

    def _restore_server_name(self) -> None:
        if not self._env_changed:
            return
        if self._saved_server_env is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = self._saved_server_env
        self._env_changed = False

    # ------------------------------------------------------------------ #
    # PortAudio side

    def _check_portaudio_has_jack(self) -> None:
        names = [api["name"] for api in sd.query_hostapis()]
        if JACK_HOSTAPI_NAME in names:
            return
        lib = ctypes.CDLL(sd._libname)
        built_with_jack = hasattr(lib, "PaJack_GetClientName")
        hint = (
            "the JACK server is up but PortAudio did not open a client"
            if built_with_jack
            else "this PortAudio lacks JACK support; use Debian's libportaudio2"
        )
        raise VirtualSoundCardError(f"no JACK host API in {sd._libname} (has {names}): {hint}")

    def device_index(self) -> int:
        """Return the PortAudio index of the JACK ``system`` device.

        Returns
        -------
        int
            Index usable as ``device=`` for ``sounddevice``/``rtmixer``.

        Raises
        ------
        VirtualSoundCardError
            If PortAudio has no JACK host API or no ``system`` device.
        """
        self._check_portaudio_has_jack()
        for api in sd.query_hostapis():
            if api["name"] != JACK_HOSTAPI_NAME:
                continue
            for index in api["devices"]:
                if sd.query_devices(index)["name"] == "system":
                    return int(index)
        raise VirtualSoundCardError(
            f"no 'system' device in the JACK host API:\n{sd.query_devices()}"
        )

    @property
    def device_samplerate(self) -> float:
        """Sample rate the server really runs at (a reused one may differ)."""
        return float(sd.query_devices(self.device_index())["default_samplerate"])

    @staticmethod
    def portaudio_client_name() -> str:
        """Return this process's PortAudio JACK client name.

        Returns
        -------
        str
            Usually ``'PortAudio'``; JACK renames the second process's client
            to ``'PortAudio-01'`` and so on.
        """
        lib = ctypes.CDLL(sd._libname)
        name = ctypes.c_char_p()
        # PaError PaJack_GetClientName(const char **) -- Debian's PortAudio
        # exports it; it returns the name JACK actually granted.
        err = lib.PaJack_GetClientName(ctypes.byref(name))
        if err != 0 or name.value is None:
            raise VirtualSoundCardError(f"PaJack_GetClientName failed ({err})")
        return name.value.decode()

    # ------------------------------------------------------------------ #
    # JACK graph

    def ports(self) -> list[str]:
        """List all JACK port names.

        Returns
        -------
        list of str
            Full names such as ``'system:playback_1'``, ``'PortAudio:out_0'``.
        """
        return self._jack_lsp()[0]

    def connections(self) -> dict[str, list[str]]:
        """Map each JACK port to the ports it is connected to.

        Returns
        -------
        dict of str to list of str
        """
        return self._jack_lsp()[1]

    def _jack_lsp(self) -> tuple[list[str], dict[str, list[str]]]:
        result = subprocess.run(
            ["jack_lsp", "-c"],
            env=self._jack_env(),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if result.returncode != 0:
            raise VirtualSoundCardError(f"jack_lsp failed: {result.stderr.strip()}")
        ports: list[str] = []
        conns: dict[str, list[str]] = {}
        # `jack_lsp -c` prints each port flush left and its peers indented.
        for line in result.stdout.splitlines():
            if not line.strip():
                continue
            if line[0].isspace():
                conns[ports[-1]].append(line.strip())
            else:
                ports.append(line)
                conns[line] = []
        return ports, conns

    def capture(self, client: str, seconds: float, samplerate: int = 48000) -> np.ndarray:
        """Record ``seconds`` of what the JACK client ``client`` (an engine) plays.

        Opens an input stream in this process and wires ``client``'s two output
        ports to it; returns ``(frames, 2)`` float32, from the first full cycle on.
        """
        import threading

        frames = int(seconds * samplerate)
        rec = np.zeros((frames, 2), dtype=np.float32)
        state = {"pos": -1}  # -1 until the client's ports are wired to ours
        done = threading.Event()

        def callback(indata, n, time_info, status):
            pos = state["pos"]
            if pos < 0:
                return
            k = min(n, frames - pos)
            rec[pos : pos + k] = indata[:k]
            state["pos"] = pos + k
            if pos + k >= frames:
                done.set()
                raise sd.CallbackStop

        with sd.InputStream(
            device=self.device_index(),
            channels=2,
            samplerate=samplerate,
            blocksize=self.period,
            dtype="float32",
            callback=callback,
        ):
            me = self.portaudio_client_name()
            # PortAudio numbers a client's ports on, stream after stream: take this stream's
            mine = sorted(
                (p for p in self.ports() if p.startswith(f"{me}:in_")),
                key=lambda p: int(p.rsplit("_", 1)[1]),
            )[-2:]
            for ch, port in enumerate(mine):
                for other in self.connections()[port]:
                    self._jack("jack_disconnect", other, port)
                self._jack("jack_connect", f"{client}:out_{ch}", port)
            time.sleep(0.05)  # let the first connected cycle pass
            state["pos"] = 0
            if not done.wait(seconds + 10):
                raise VirtualSoundCardError("the capture did not complete")
        return rec

    def _jack(self, tool: str, src: str, dst: str) -> None:
        result = subprocess.run(
            [tool, src, dst],
            env=self._jack_env(),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if result.returncode != 0:
            err = result.stderr.strip()
            raise VirtualSoundCardError(f"{tool} {src} {dst} failed: {err}")

    def connect_loopback(
        self, client_name: str | None = None, *, isolate: bool = True
    ) -> list[tuple[str, str]]:
        """Wire ``<client>:out_N`` to ``<client>:in_N`` for every channel N.

        Call it after the stream is *started*: PortAudio registers its ports
        when a stream opens, connects them to ``system`` when it starts, and
        disconnects everything when it stops.

        Parameters
        ----------
        client_name : str or None, optional
            JACK client whose ports to wire.  ``None`` means this process's
            PortAudio client (see :meth:`portaudio_client_name`), which is
            ``'PortAudio'`` unless another PortAudio process got it first.
        isolate : bool, optional
            Also disconnect everything else feeding the client's inputs (the
            ``system:capture_N`` auto-connections), so the input carries only
            what the client played.  The dummy backend captures silence, but a
            reused server on real hardware would not.

        Returns
        -------
        list of tuple of str
            The ``(output_port, input_port)`` pairs connected.

        Raises
        ------
        VirtualSoundCardError
            If the client has no matching ports or a connection fails.
        """
        if client_name is None:
            client_name = self.portaudio_client_name()
        ports, conns = self._jack_lsp()
        pattern = re.compile(re.escape(client_name) + r":(in|out)_(\d+)$")
        outs: dict[int, str] = {}
        ins: dict[int, str] = {}
        for port in ports:
            match = pattern.match(port)
            if match:
                (ins if match[1] == "in" else outs)[int(match[2])] = port
        # PortAudio numbers a client's ports across every stream it ever opened in
        # this process (in_6, in_7 next to out_0, out_1 after earlier streams), so
        # pair the k-th output with the k-th input rather than by number
        pairs = list(zip((outs[n] for n in sorted(outs)), (ins[n] for n in sorted(ins))))
        if not pairs:
            raise VirtualSoundCardError(
                f"no {client_name}:out_N/in_N port pairs (is a duplex stream "
                f"open and started?); ports: {ports}"
            )
        for out_port, in_port in pairs:
            if isolate:
                for peer in conns.get(in_port, []):
                    if peer != out_port:
                        self._jack("jack_disconnect", peer, in_port)
            if out_port not in conns.get(in_port, []):
                self._jack("jack_connect", out_port, in_port)
        return pairs


@contextlib.contextmanager
def _portaudio_suspended() -> Iterator[None]:
    """Terminate PortAudio for the block, then initialise it again.

    sounddevice reference-counts its ``Pa_Initialize`` calls, so undo all of
    them (a single ``_terminate`` would only decrement the count and leave
    the stale device list) and restore the same count afterwards.
    """
    count = sd._initialized
    for _ in range(count):
        sd._terminate()
    try:
        yield
    finally:
        for _ in range(count):
            sd._initialize()


def _reinitialize_portaudio() -> None:
    """Make PortAudio enumerate its host APIs and devices again."""
    with _portaudio_suspended():
        pass


def _process_exists(pid: int) -> bool:
    """Tell whether ``pid`` names a live (non-zombie) process, via /proc.

    Parameters
    ----------
    pid : int

    Returns
    -------
    bool
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # Field 3 (after the parenthesised command name) is the state.  A zombie
    # runs no more code, so it counts as gone -- although, until reaped, its
    # PID still blocks a new server of the same name (see ``_hint``).
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")
