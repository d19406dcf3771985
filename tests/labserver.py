"""A real Jupyter server (JupyterLab or Notebook 7) for the browser tests and benchmarks.

Started on a free port with a random token, with settings that fetch nothing
from the network (no news, no update checks) and render every cell (no
windowing); stopped with everything it started, which :meth:`LabServer.stop`
checks.  Chromium is Debian's (``/usr/bin/chromium``), driven by Playwright.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from procs import children_of

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
# the flags a closed network needs: no background connections, no component updates;
# sound may start without a click (the autoplay policy is tested on its own)
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def notebook(cells: list[str]) -> str:
    """A notebook of code cells (the ``.ipynb`` text), for a test to open."""
    return json.dumps(
        {
            "cells": [
                {
                    "cell_type": "code",
                    "execution_count": None,
                    "id": f"c{k}",
                    "metadata": {},
                    "outputs": [],
                    "source": src,
                }
                for k, src in enumerate(cells)
            ],  # fmt: skip
            "metadata": {
                "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )


def idle(pg, timeout: float = 60.0) -> None:
    """Wait until no cell of the page's notebook is running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        prompts = pg.locator(".jp-CodeCell .jp-InputArea-prompt").all_inner_texts()
        if prompts and not any("*" in p for p in prompts):
            return
        time.sleep(0.2)
    raise AssertionError("the kernel did not finish running the cells")


def poll(pg, expr: str, check, timeout: float = 30.0):
    """Evaluate ``expr`` in the page until ``check(value)``; the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = pg.evaluate(expr)
        if check(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def descendants(pid: int) -> set[int]:
    out, stack = set(), [pid]
    while stack:
        for child in children_of(stack.pop()):
            out.add(child)
            stack.append(child)
    return out


def quiet_settings(settings: Path) -> Path:
    """User settings: every cell rendered (no windowing), no news or update checks."""
    (settings / "@jupyterlab" / "notebook-extension").mkdir(parents=True, exist_ok=True)
    (settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none"})
    )
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True, exist_ok=True)
    (
        settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    ).write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    return settings


class LabServer:
    """``jupyter lab`` (or ``jupyter notebook``) serving ``work``, until :meth:`stop`.

    Parameters
    ----------
    work : Path
        The server's root directory (notebooks go here); its log is
        ``work/server.log``.
    app : {"lab", "notebook"}
        JupyterLab or Notebook 7.
    env : dict
        Extra environment for the server and its kernels.
    """

    def __init__(self, work: Path, app: str = "lab", env: dict[str, str] | None = None) -> None:
        self.work = work
        self.app = app
        self.port, self.token = free_port(), secrets.token_hex(16)
        settings = quiet_settings(work / "settings")
        full_env = dict(os.environ, PYTHONPATH=str(ROOT))
        full_env.pop("JUPYSYNTH_OFFLINE", None)
        full_env.update(env or {})
        module = "jupyterlab" if app == "lab" else "notebook"
        cls = "LabApp" if app == "lab" else "JupyterNotebookApp"
        self.log = open(work / "server.log", "w")
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", module, "--no-browser", "--allow-root",
                f"--port={self.port}", "--ip=127.0.0.1",
                f"--IdentityProvider.token={self.token}",
                f"--ServerApp.root_dir={work}", f"--{cls}.user_settings_dir={settings}",
                f"--{cls}.news_url=None" if app == "lab" else "--ServerApp.log_level=INFO",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            ],
            cwd=work, env=full_env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 90
        status = f"{self.base}/api/status?token={self.token}"
        while True:
            try:
                with urllib.request.urlopen(status, timeout=2):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.log.close()
                    raise RuntimeError(
                        f"jupyter {app} did not start:\n" + self.read_log()[-3000:]
                    ) from None
                time.sleep(0.3)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, notebook: str) -> str:
        """The page of ``notebook`` (a path under ``work``), with the token."""
        where = "lab/tree" if self.app == "lab" else "notebooks"
        return f"{self.base}/{where}/{notebook}?token={self.token}"

    def read_log(self) -> str:
        return (self.work / "server.log").read_text()

    def stop(self) -> list[int]:
        """Stop the server (its kernels and their engines with it); pids left alive."""
        left = descendants(self.proc.pid)
        self.proc.send_signal(signal.SIGINT)  # twice: shut down the kernels without asking
        time.sleep(0.3)
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        # the kernels' engines follow their kernels (PR_SET_PDEATHSIG), closing their
        # sound card first: give them until the deadline, on a loaded machine
        deadline = time.monotonic() + 10.0
        while any(alive(p) for p in left) and time.monotonic() < deadline:
            time.sleep(0.2)
        return [p for p in left if alive(p)]
