"""A sandbox process for the code written in cells, when the engine renders in-process.

With ``Engine(workers=0)`` the built-in modules render on the engine's block
thread.  Code written in a cell (a ``process()`` method, a ``sample()``
function compiled by numba) renders here instead, in a child process, so that
code which hangs where Python cannot interrupt it (a ``sample()`` that never
returns, a C call) or crashes the process (a segfault through ``ctypes``,
``os.abort``) stops the sandbox, never the sound.  A patch without such code
never starts it and costs nothing.

How a block reaches it
----------------------
The renderer allocates the bus, and the state of ``sample()`` groups, in
shared memory (``memfd_create``, handed over with ``SCM_RIGHTS``: no name in
``/dev/shm``, nothing another process could open).  For each span it sends
``R <group> <a> <b>`` over a socket pair; the sandbox runs the group on its
mapping of the same bus rows and answers ``D`` (or ``F`` with the tracebacks
of the instances that raised).  The block thread waits for the answer at most
the code budget; when it does not come, the group's outputs are silence for
that span and the sandbox is *late*: later spans do not wait for it.  A
sandbox late for :data:`KILL_AFTER` seconds, or dead, is killed; the instance
it was running (it writes the index before each call) is muted and named,
and a new sandbox is started off the block thread, after which the renderer
rebuilds its plan on the new one (the other modules' ``process()`` objects
start afresh; ``sample()`` state, kept in the engine's shared memory, goes on).

Group definitions (the class, its instances, their ``setup()``) travel on a
second socket pair and are handled by a second thread of the sandbox, so a
``setup()`` or a numba compile never holds up a block's run.

Inside the sandbox, a ``process()`` call runs under :mod:`jupysynth.guard`
as in the engine, so a Python loop or a sleep is interrupted without killing
anything.
"""

from __future__ import annotations

import logging
import mmap
import os
import pickle
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["KILL_AFTER", "Sandbox", "SandboxGone"]

log = logging.getLogger("jupysynth.engine")

#: Seconds a sandbox may stay late before it is killed and its culprit muted.
KILL_AFTER = 0.5
#: Seconds a group definition (its setup(), a numba compile) may take.
DEFINE_TIMEOUT = 20.0
#: Seconds a new sandbox may take to start (import numpy, numba, jupysynth).
START_TIMEOUT = 60.0

_CRASHED = (
    "crashed the sandbox process its code runs in (a segfault, os.abort, a signal); "
    "the sandbox was restarted"
)
_RUN = struct.Struct("<cqqq")  # b"R", group key, a, b
_IDLE = -1
_RUN_PRIORITY = 19  # the engine's block loop runs at SCHED_FIFO 20


class SandboxGone(Exception):
    """The sandbox died, was killed or is busy; ``culprits``: the modules it was running."""

    def __init__(self, why: str, culprits: list[int] | None = None) -> None:
        super().__init__(why)
        self.culprits = culprits or []


def shared_zeros(shape: tuple[int, ...], dtype: Any) -> tuple[np.ndarray, int]:
    """A zeroed array in an anonymous shared memory file, and that file's descriptor."""
    size = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
    fd = os.memfd_create("jupysynth-bus", os.MFD_CLOEXEC)
    os.ftruncate(fd, size)
    buf = mmap.mmap(fd, size)
    return np.ndarray(shape, dtype=dtype, buffer=buf), fd


class Sandbox:
    """The engine's side: start, define groups, run spans, notice a hang or a death.

    Parameters
    ----------
    samplerate : float
        Passed to the modules' objects.
    budget : float
        Seconds the block thread waits for one span's answer.
    """

    def __init__(self, samplerate: float, budget: float) -> None:
        self.samplerate = float(samplerate)
        self.budget = float(budget)
        # how long the block thread waits for a span: a call stopped at the budget answers
        self.wait = 1.5 * self.budget + 0.002
        self._late_key = 0
        self.restarts = 0
        self._lock = threading.Lock()  # the control channel: one exchange at a time
        self._keys = iter(range(1, 1 << 62))
        self._proc: subprocess.Popen | None = None
        self._run: socket.socket | None = None
        self._ctl: socket.socket | None = None
        self._progress: np.ndarray | None = None
        self._late_since: float | None = None  # the block thread's unanswered run
        self._blobs: dict[type, bytes] = {}
        self.owners: dict[int, list[int]] = {}  # group key -> module ids, by instance
        self._retain: list[int] | None = None  # sent before the next control message
        self._maps: deque[tuple[int, tuple, str, int]] = deque()  # (key, shape, dtype, fd)
        self._starting = False
        self._retry_at = 0.0
        self.generation = 0  # bumped by every (re)start: groups of an older one are gone
        self.ready = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the process and wait until it answers (call it off the block thread)."""
        run_a, run_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ctl_a, ctl_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        progress, pfd = shared_zeros((2,), np.int64)  # [instance index, group key] running
        progress[:] = _IDLE
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        fds = (run_b.fileno(), ctl_b.fileno(), pfd)
        from ..launch import launcher  # a long-lived thread: PDEATHSIG follows the forking thread

        try:
            proc = launcher.popen(
                [sys.executable, "-m", __name__, *map(str, fds), str(os.getpid())],
                pass_fds=fds,
                env=env,
                stdin=subprocess.DEVNULL,
            )
        finally:
            run_b.close()
            ctl_b.close()
            os.close(pfd)
        ctl_a.settimeout(START_TIMEOUT)
        try:
            hello = ctl_a.recv(64)
        except OSError:
            hello = b""
        if hello != b"ready":
            proc.kill()
            proc.wait()
            run_a.close()
            ctl_a.close()
            raise SandboxGone("the sandbox for cell code did not start")
        run_a.settimeout(self.wait)
        with self._lock:
            self._proc, self._run, self._ctl, self._progress = proc, run_a, ctl_a, progress
            self._late_since = None
            self.generation += 1
        self.ready.set()

    def close(self) -> None:
        """End the process (idempotent)."""
        self.ready.clear()
        with self._lock:
            proc, self._proc = self._proc, None
            for s in (self._run, self._ctl):
                if s is not None:
                    s.close()
            self._run = self._ctl = None
        if proc is not None:
            proc.kill()
            proc.wait()

    @property
    def alive(self) -> bool:
        return self._proc is not None and self.ready.is_set()

    # -- definitions (any thread but the block thread's hot path) --------------------------

    def know(self, cls: type, blob: bytes) -> None:
        """``blob`` is the pickle ``cls`` came from (a ``/type/define``): send it as it is."""
        self._blobs[cls] = blob

    def blob(self, cls: type) -> bytes:
        """The class pickled for the sandbox (pickling it again is slow: once per class)."""
        from ..control.typedefs import dump_type

        blob = self._blobs.get(cls)
        if blob is None:
            blob = self._blobs[cls] = dump_type(cls)
        return blob

    def key(self) -> int:
        return next(self._keys)

    def request(self, msg: tuple, fds: tuple[int, ...] = (), wait: bool = True) -> Any:
        """Send a control message (with file descriptors) and return the sandbox's answer.

        ``wait`` False (the block thread): raise at once if another thread is talking.

        Raises
        ------
        SandboxGone
            If the sandbox is not running, dies, does not answer in time, or is busy.
        """
        if not self._lock.acquire(blocking=wait):
            raise SandboxGone("the sandbox is busy defining another group")
        try:
            ctl = self._ctl
            if ctl is None or not self.ready.is_set():
                raise SandboxGone("the sandbox for cell code is not running")
            maps = []
            while self._maps:  # appended by any thread; a deque's ends are thread-safe
                maps.append(self._maps.popleft())
            try:
                ctl.settimeout(DEFINE_TIMEOUT)
                retain, self._retain = self._retain, None
                meta = [(k, shape, dtype) for k, shape, dtype, _ in maps]
                data = pickle.dumps(("batch", meta, retain, msg))  # one round trip
                socket.send_fds(ctl, [data], [fd for *_, fd in maps] + list(fds))
                answer = ctl.recv(1 << 22)
            except OSError as exc:
                # a late answer would be read as the next one's: this sandbox is done
                self._kill()
                raise SandboxGone(
                    f"did not finish its setup() (or compile) within {DEFINE_TIMEOUT:g} s "
                    f"({exc}); the sandbox its code ran in was restarted"
                ) from None
            finally:
                for *_, fd in maps:
                    os.close(fd)
        finally:
            self._lock.release()
        if not answer:
            raise SandboxGone("the sandbox exited")
        return pickle.loads(answer)

    def map_later(self, key: int, shape: tuple, dtype: str, fd: int) -> None:
        """Have the sandbox map ``fd`` as array ``key`` with the next request (it owns ``fd``)."""
        self._maps.append((key, tuple(shape), dtype, fd))

    def retain(self, keys: list[int]) -> None:
        """Only these groups and arrays (and newer ones) are still used: the rest may go."""
        self._retain = list(keys)
        for k in [k for k in self.owners if k < min(keys, default=0) and k not in keys]:
            del self.owners[k]

    def ensure_started(self) -> None:
        """Start the sandbox on a thread of its own, if it is not running or starting.

        Cheap enough for every block: a failed start is tried again after a second.
        """
        if self.ready.is_set() or self._starting or time.monotonic() < self._retry_at:
            return
        self._starting = True
        self._retry_at = time.monotonic() + 1.0

        def job() -> None:
            try:
                self.close()  # what is left of a sandbox that died
                self.start()
            except SandboxGone:
                log.error("the sandbox for cell code could not start; trying again")
            finally:
                self._starting = False

        threading.Thread(target=job, name="jupysynth-sandbox-start", daemon=True).start()

    # -- running (the block thread) ----------------------------------------------------------

    def run(self, key: int, a: int, b: int) -> list[tuple[int, str]] | None:
        """Run group ``key`` over rows ``a..b``; None when the sandbox is late (silence).

        Returns ``(module id, why)`` of the modules that raised: in this run, or
        in a late one whose answer came since.

        Raises
        ------
        SandboxGone
            When it died, or stayed late past :data:`KILL_AFTER` (it is killed then).
        """
        sock = self._run
        if sock is None or not self.ready.is_set():
            return None
        faults: list[tuple[int, str]] = []
        if self._late_since is not None:
            late = self._drain(sock)
            if late is None:
                if time.monotonic() - self._late_since > KILL_AFTER:
                    self._fail(
                        f"ran for over {KILL_AFTER:g} s without returning (a loop that Python "
                        "cannot interrupt: in sample(), or in C code); the sandbox its code "
                        "ran in was restarted"
                    )
                return None
            faults += late
        try:
            sock.send(_RUN.pack(b"R", key, a, b))
            answer = sock.recv(1 << 20)
        except TimeoutError:
            self._late_since, self._late_key = time.monotonic(), key
            return None
        except OSError:
            self._fail(_CRASHED)
        return faults + self._answer(key, answer)

    def _answer(self, key: int, answer: bytes) -> list[tuple[int, str]]:
        if not answer:
            self._fail(_CRASHED)
        if answer == b"D":
            return []
        ids = self.owners.get(key, [])
        return [(ids[k], why) for k, why in pickle.loads(answer[1:]) if 0 <= k < len(ids)]

    def _drain(self, sock: socket.socket) -> list[tuple[int, str]] | None:
        """The late answer's faults if it came (without waiting); None while still late."""
        try:
            sock.setblocking(False)
            answer = sock.recv(1 << 20)
        except BlockingIOError:
            return None
        except OSError:
            self._fail(_CRASHED)
        finally:
            sock.settimeout(self.wait)
        self._late_since = None
        return self._answer(self._late_key, answer)

    def _kill(self) -> None:
        """Stop the process now; the next ensure_started() brings a new one."""
        self.ready.clear()
        proc = self._proc
        if proc is not None:
            try:
                proc.kill()
            except OSError:
                pass

    def _fail(self, why: str) -> None:
        """Kill the sandbox; raise SandboxGone naming the module(s) it was running."""
        culprits: list[int] = []
        if self._progress is not None:
            k, key = int(self._progress[0]), int(self._progress[1])
            ids = self.owners.get(key, [])
            culprits = [ids[k]] if 0 <= k < len(ids) else list(ids)
        self._kill()
        self._late_since = None
        raise SandboxGone(why, culprits)

    def restart_later(self) -> None:
        """Replace a sandbox that died or was killed, on a thread of its own."""
        self.restarts += 1
        self.ensure_started()


# -- the sandbox process ----------------------------------------------------------------------


class _Group:
    def __init__(self, run: Callable[[int, int], list[tuple[int, str]]]) -> None:
        self.run = run


def _serve_ctl(ctl: socket.socket, state: dict) -> None:
    """Group definitions, maps and drops: the sandbox's second thread."""
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(ctl, 1 << 22, 8)
        except OSError:
            os._exit(0)
        if not data:
            os._exit(0)  # the engine is gone
        msg = pickle.loads(data)
        was = sys.getswitchinterval()
        sys.setswitchinterval(1e-4)  # a numba compile here must not hold up a run
        try:
            answer = _control(msg, fds, state)
        except Exception:  # noqa: BLE001 - sent back: the engine mutes the group
            answer = ("error", traceback.format_exc())
        finally:
            sys.setswitchinterval(was)
        ctl.send(pickle.dumps(answer))


def _control(msg: tuple, fds: list[int], state: dict) -> Any:
    from ..control.typedefs import load_type
    from ..graph import PYTHON_KERNEL

    kind = msg[0]
    if kind == "batch":  # ("batch", [(key, shape, dtype)] for the first fds, retain, msg)
        _, meta, retain, inner = msg
        for (key, shape, dtype), fd in zip(meta, fds):
            size = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
            buf = mmap.mmap(fd, size)
            os.close(fd)
            state["arrays"][key] = np.ndarray(shape, dtype=dtype, buffer=buf)
        if retain is not None:
            _control(("retain", retain), [], state)
        return _control(inner, fds[len(meta) :], state)
    if kind == "ping":
        return ("ok",)
    if kind == "warm":  # ("warm", type name, blob): compile a sample() before its frame
        from ..renderer import warm_sample

        _, name, blob = msg
        cls = state["classes"].get((name, blob))
        if cls is None:
            cls = state["classes"][(name, blob)] = load_type(name, blob)
        warm_sample(cls)
        return ("ok",)
    if kind == "retain":  # ("retain", keys): drop what no plan uses any more
        keep = set(msg[1])
        floor = min(keep) if keep else 0
        for table in (state["groups"], state["arrays"]):
            for k in [k for k in table if k < floor and k not in keep]:
                del table[k]
        return ("ok",)
    # ("group", key, kernel, type name, blob, bus key, slots key, params, payload)
    _, key, kernel, name, blob, bus_key, slots_key, cols, payload = msg
    cls = state["classes"].get((name, blob))
    if cls is None:
        cls = state["classes"][(name, blob)] = load_type(name, blob)
    bus = state["arrays"][bus_key]
    if kernel == PYTHON_KERNEL:
        group, faults = _python_group(cls, bus, cols, payload, state)
    else:
        group, faults = _sample_group(cls, bus, cols, payload, state["arrays"].get(slots_key))
    state["groups"][key] = group
    return ("ok", faults)


def _python_group(cls: type, bus: np.ndarray, cols: list[int], payload: tuple, state: dict):
    from .. import guard
    from ..renderer import process_inputs, write_output

    names, out, chans, n, instances, samplerate, budget = payload
    objects: dict[int, Any] = state["objects"]
    progress = state["progress"]
    objs, faults, muted = [], [], set()
    for k, (node_id, label, values, opts) in enumerate(instances):
        old = objects.get(node_id)
        if old is not None and type(old) is cls:
            objs.append(old)
            continue
        obj = object.__new__(cls)
        obj.__dict__.update(
            id=node_id,
            name=label,
            _values=dict(values),
            _opts=dict(opts),
            _listeners=[],
            _rendering=True,
            samplerate=samplerate,
        )
        setup = getattr(obj, "setup", None)
        if callable(setup):
            try:
                setup()  # on this thread: no timer; a hang here times the definition out
            except BaseException:  # noqa: BLE001 - the module alone is muted
                faults.append((k, "setup() failed:\n" + traceback.format_exc()))
                muted.add(k)
        if old is not None and k not in muted:
            for attr, value in old.__dict__.items():  # a redefined class takes over its state
                if attr in obj.__dict__ and type(obj.__dict__[attr]) is type(value):
                    obj.__dict__[attr] = value
        if k not in muted:
            objects[node_id] = obj
        objs.append(obj)

    def run(a: int, b: int) -> list[tuple[int, str]]:
        out_faults = []
        for k, obj in enumerate(objs):
            if k in muted:
                continue
            kwargs = process_inputs(bus, a, b, names, cols, k)
            progress[0] = k
            try:
                y = guard.call(obj.process, kwargs, budget)
                write_output(bus, a, b, y, out, n, chans, k)
            except BaseException:  # noqa: BLE001 - muted alone, named with its traceback
                for c in range(chans):
                    bus[a:b, out + c * n + k] = 0.0
                muted.add(k)
                out_faults.append((k, traceback.format_exc()))
        progress[0] = _IDLE
        return out_faults

    return _Group(run), faults


def _sample_group(cls: type, bus: np.ndarray, cols: list[int], payload: tuple, slots):
    from ..renderer import _jitted, _sample_loop

    n, out = payload
    jitted = _jitted(cls)
    loop = _sample_loop(cls, len(cols))
    cols_arr = np.asarray(cols, dtype=np.int64)
    slots = slots if slots is not None else np.zeros((1, 1))
    loop(0, 0, bus, n, out, cols_arr, slots, jitted)  # compiles now, on this thread

    def run(a: int, b: int) -> list[tuple[int, str]]:
        loop(a, b, bus, n, out, cols_arr, slots, jitted)
        return []

    return _Group(run), []


def main(argv: list[str]) -> int:
    """Serve the engine (``python -m jupysynth.engine.sandbox <run> <ctl> <progress> <pid>``)."""
    run_fd, ctl_fd, pfd, parent = map(int, argv[1:5])
    from .. import guard
    from .child import _die_with_parent

    _die_with_parent(parent, 9)
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    guard.install()
    run = socket.socket(fileno=run_fd)
    ctl = socket.socket(fileno=ctl_fd)
    progress = np.ndarray((2,), dtype=np.int64, buffer=mmap.mmap(pfd, 16))
    os.close(pfd)
    import jupysynth.kernels.user  # noqa: F401 - the group loops, loaded before the first run

    state: dict = {"arrays": {}, "groups": {}, "classes": {}, "objects": {}, "progress": progress}
    threading.Thread(target=_serve_ctl, args=(ctl, state), name="ctl", daemon=True).start()
    # the runs are part of the engine's block: just below its priority (the definitions'
    # thread, started before, keeps the ordinary one); a run that spins is killed in 0.5 s
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(_RUN_PRIORITY))
    except (OSError, AttributeError):
        pass
    ctl.send(b"ready")
    while True:
        try:
            data = run.recv(64)
        except OSError:
            return 0
        if not data:
            return 0  # the engine is gone
        _, key, a, b = _RUN.unpack(data)
        group = state["groups"].get(key)
        progress[1] = key
        if group is None:
            run.send(b"F" + pickle.dumps([(_IDLE, f"group {key} is not defined in the sandbox")]))
            continue
        faults = group.run(a, b)
        run.send(b"D" if not faults else b"F" + pickle.dumps(faults))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
