"""A real JupyterHub for the multi-user test: dummy login, local spawner, npm's proxy.

:class:`HubServer` writes a ``jupyterhub_config.py`` into a work directory and
runs ``python -m jupyterhub`` in its own session: the DummyAuthenticator (one
shared password, a fixed list of students), the SimpleLocalProcessSpawner
(every student's single-user server runs as the current user, each with its
own home under the work directory) and ``configurable-http-proxy`` from
``tests/hub/node_modules`` (:func:`ensure_proxy` installs it with npm).  Every
process it started (the proxy, the single-user servers, their kernels and
engines) is checked gone by :meth:`HubServer.stop`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from labserver import descendants, free_port, quiet_settings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PROXY = HERE / "node_modules" / ".bin" / "configurable-http-proxy"
TICK = os.sysconf("SC_CLK_TCK")


def ensure_proxy() -> str | None:
    """``configurable-http-proxy``'s path, installed with npm if missing; None without npm."""
    if PROXY.exists():
        return str(PROXY)
    npm = shutil.which("npm")
    if npm is None:
        return None
    # the committed lockfile pins it; `npm install` when there is none (a fresh checkout
    # that dropped it) writes one
    cmd = [npm, "ci" if (HERE / "package-lock.json").exists() else "install"]
    done = subprocess.run(
        [*cmd, "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=HERE, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if done.returncode != 0 or not PROXY.exists():
        raise RuntimeError(f"{' '.join(cmd)} in {HERE} failed:\n{done.stdout}\n{done.stderr}")
    return str(PROXY)


# --- processes, from /proc ---------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks after boot): tells a process from a reused pid."""
    fields = _stat(pid)
    return None if fields is None else int(fields[19])


def running(pid: int, started: int | None) -> bool:
    """Whether the process ``pid`` that started at ``started`` still runs (not a zombie)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z" and int(fields[19]) == started


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(e.decode(errors="replace").partition("=")[::2] for e in raw.split(b"\0") if e)


def cpu_seconds(pid: int) -> float | None:
    fields = _stat(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / TICK


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of ``pid`` in MB; PSS shares each shared page among its users."""
    rss = pss = 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) / 1024
    except OSError:
        pass
    return rss, pss


def role(pid: int) -> str:
    """What a process under a single-user server is: kernel, engine (or its worker), other."""
    cmd = cmdline(pid)
    if "jupysynth.engine." in cmd:
        return "engine"
    if "ipykernel" in cmd:
        return "kernel"
    if "jupyterhub-singleuser" in cmd or "jupyterhub.singleuser" in cmd:
        return "server"
    return "other"


# --- the hub -----------------------------------------------------------------


class HubServer:
    """JupyterHub on 127.0.0.1 with ``users`` allowed in, until :meth:`stop`.

    Parameters
    ----------
    work : Path
        Config, database, cookie secret, log (``hub.log``) and the students'
        homes (``home/<name>``, each with quiet JupyterLab settings) go here.
    users : list of str
        The students allowed to log in, all with :attr:`password`.
    proxy : str
        The ``configurable-http-proxy`` executable.
    env : dict
        Extra environment for the single-user servers and their kernels.
    """

    def __init__(
        self, work: Path, users: list[str], proxy: str, env: dict[str, str] | None = None
    ) -> None:
        self.work, self.users = work, list(users)
        self.port = free_port()
        self.password = secrets.token_hex(8)
        self.base = f"http://127.0.0.1:{self.port}"
        for name in self.users:
            quiet_settings(self.home(name) / ".jupyter" / "lab" / "user-settings")
        args = [
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        if os.geteuid() == 0:
            args.append("--allow-root")
        config = {
            "JupyterHub.ip": "127.0.0.1",
            "JupyterHub.port": self.port,
            "JupyterHub.hub_ip": "127.0.0.1",
            "JupyterHub.hub_port": free_port(),
            "JupyterHub.db_url": f"sqlite:///{work / 'jupyterhub.sqlite'}",
            "JupyterHub.cookie_secret_file": str(work / "jupyterhub_cookie_secret"),
            "JupyterHub.cleanup_servers": True,
            "JupyterHub.cleanup_proxy": True,
            "JupyterHub.log_level": "INFO",
            "JupyterHub.authenticator_class": "dummy",
            "DummyAuthenticator.password": self.password,
            "Authenticator.allowed_users": set(self.users),
            "JupyterHub.spawner_class": "simple",
            "SimpleLocalProcessSpawner.home_dir_template": str(work / "home" / "{username}"),
            "Spawner.notebook_dir": str(work / "home" / "{username}"),
            "Spawner.cmd": [sys.executable, "-m", "jupyterhub.singleuser"],
            "Spawner.args": args,
            "Spawner.default_url": "/lab",
            "Spawner.environment": {"PYTHONPATH": str(ROOT), **(env or {})},
            "Spawner.http_timeout": 120,
            "Spawner.start_timeout": 120,
            "ConfigurableHTTPProxy.command": [proxy],
            "ConfigurableHTTPProxy.api_url": f"http://127.0.0.1:{free_port()}",
            "ConfigurableHTTPProxy.pid_file": str(work / "proxy.pid"),
        }
        (work / "jupyterhub_config.py").write_text(
            "c = get_config()  # noqa\n" + "".join(f"c.{k} = {v!r}\n" for k, v in config.items())
        )
        env_hub = dict(os.environ, CONFIGPROXY_AUTH_TOKEN=secrets.token_hex(32))
        self.log = open(work / "hub.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(work / "jupyterhub_config.py")],
            cwd=work, env=env_hub, stdin=subprocess.DEVNULL, stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.seen: dict[int, int | None] = {}  # every process found under the hub: start time
        deadline = time.monotonic() + 120
        while True:
            try:  # through the proxy: both are up
                with urllib.request.urlopen(f"{self.base}/hub/api", timeout=2) as r:
                    json.load(r)
                break
            except (OSError, ValueError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    log = self.read_log()[-4000:]
                    raise RuntimeError(f"jupyterhub did not start:\n{log}") from None
                time.sleep(0.3)
        self.processes()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def home(self, name: str) -> Path:
        return self.work / "home" / name

    def url(self, name: str, notebook: str) -> str:
        """``notebook`` (a path in ``name``'s home) in JupyterLab, through the hub's proxy."""
        return f"{self.base}/user/{name}/lab/tree/{notebook}"

    def read_log(self) -> str:
        return (self.work / "hub.log").read_text(errors="replace")

    def processes(self) -> set[int]:
        """Every process under the hub now (noted for :meth:`stop`'s check)."""
        found = descendants(self.pid)
        for pid in found:
            self.seen.setdefault(pid, start_time(pid))
        return found

    def servers(self) -> dict[str, int]:
        """Each student's single-user server: its pid, by ``JUPYTERHUB_USER`` in its environment."""
        out: dict[str, int] = {}
        for pid in self.processes():
            if role(pid) == "server":
                user = environ(pid).get("JUPYTERHUB_USER", "")
                assert user not in out, f"two single-user servers for {user!r}"
                out[user] = pid
        return out

    def student(self, name: str) -> dict[int, str]:
        """``name``'s processes: their single-user server and all under it, pid to role."""
        server = self.servers()[name]
        tree = {pid: role(pid) for pid in descendants(server)}
        tree[server] = "server"
        for pid in tree:
            self.seen.setdefault(pid, start_time(pid))
        return tree

    def stop(self) -> list[str]:
        """Stop the hub (the proxy and every single-user server with it); what is left running.

        Whatever is left is killed after being reported.
        """
        self.processes()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the hub stops its servers and the proxy
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        deadline = time.monotonic() + 10
        while True:
            left = [pid for pid, t in self.seen.items() if running(pid, t)]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        report = [f"{pid} {cmdline(pid)[:160]}" for pid in left]
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        return report
