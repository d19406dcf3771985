"""Starting child processes from one long-lived thread.

Linux sends PR_SET_PDEATHSIG when the *thread* that forked a child ends, not
the process.  Both sides start children that must die with their parent: the
kernel its engine (:mod:`jupysynth.player.engine`), the engine its sandbox
(:mod:`jupysynth.engine.sandbox`).  Starting them from a thread that lives as
long as the interpreter keeps a child started from a short-lived thread (a
widget callback, a preparing thread) alive, while a dead interpreter still
takes it along.
"""

from __future__ import annotations

import queue
import subprocess
import threading
from typing import Any

__all__ = ["launcher"]


class _Launcher:
    """One long-lived thread that starts every child process (see the module docstring)."""

    def __init__(self) -> None:
        self._jobs: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def popen(self, *args: Any, **kwargs: Any) -> subprocess.Popen:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._serve, name="jupysynth-launcher", daemon=True
                )
                self._thread.start()
        done: queue.Queue = queue.Queue()
        self._jobs.put((args, kwargs, done))
        ok, value = done.get()
        if not ok:
            raise value
        return value

    def _serve(self) -> None:
        while True:
            args, kwargs, done = self._jobs.get()
            try:
                done.put((True, subprocess.Popen(*args, **kwargs)))
            except Exception as exc:  # noqa: BLE001 - handed to the caller's thread
                done.put((False, exc))


#: The process-wide launcher.
launcher = _Launcher()
