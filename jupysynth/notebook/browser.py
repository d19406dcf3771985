"""The kernel's link to the page: engine status, commands and the browser's sound.

The jupysynth JupyterLab extension talks to the kernel over Jupyter comms,
through the server's authenticated websocket (no port of our own, so it works
behind JupyterHub's and Binder's proxies exactly as the notebook does):

- on load the kernel opens an announcement comm to the page's target
  ``jupysynth.kernel`` and keeps it open; a page that sees it (or finds it
  with ``comm_info_request`` after a reload) opens its own comm to the kernel's
  target ``jupysynth.page``;
- the kernel answers ``{"type": "hello", samplerate, output, device}``, then
  pushes ``{"type": "status", "status": {...}}`` twice a second (the browser
  never polls the engine) and, when the engine plays in the browser,
  ``{"type": "audio", "frame": F, "frames": n}`` with n stereo frames of
  16-bit PCM as the message's one binary buffer, about every 10 ms;
- the page reports ``{"type": "heard", frame, buffered, target, underruns}``
  about twenty times a second (relayed to the engine as ``/out/heard``: the
  page's audio clock leads the engine's) and sends ``{"type": "command",
  "name": "panic" | "restart" | "mute_cell"}``.

Two tabs on one kernel: the newest one that listens plays, and its audio clock
leads the engine; the older ones are told ``{"type": "elsewhere"}`` and fall
quiet (two tabs playing one stream a few milliseconds apart would sound as a
comb filter).  When the playing tab closes or stops listening (fed for
:data:`QUIET_SECONDS` of kernel-idle time without a word back) the next newest
takes over.

One thread (:class:`Pump`) reads the engine's output ring and sends it,
another (:class:`Reporter`) pushes the status, so the sound never waits on a
``/status`` round trip; the comm handlers run on the kernel's main thread,
between cells.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

from ..errors import JupysynthError

__all__ = ["Link", "attach", "detach"]

#: Seconds between status pushes.
STATUS_SECONDS = 0.5
#: Seconds between reads of the output ring (a chunk of ~480 frames at 48 kHz).
POLL_SECONDS = 0.01
#: A page silent this long while the kernel was idle gets no more sound (a closed
#: tab: the Jupyter server would buffer what is sent to it until a page reconnects).
QUIET_SECONDS = 3.0
#: ... and this long, it is dropped (its comm closed).
GONE_SECONDS = 30.0

_link: Link | None = None


class Page:
    """One page (a browser tab) on this kernel: its comm and what it last reported."""

    def __init__(self, comm: Any, page_id: str) -> None:
        self.comm = comm
        self.id = page_id
        self.opened = time.monotonic()
        self.report: dict[str, Any] = {}
        self.heard_from = self.opened  # the last message from the page (monotonic)
        self.sent_frames = 0
        self.sent_bytes = 0
        self.fed_at: float | None = None  # the first audio sent since its last message
        self.elsewhere = False  # told the sound plays in another tab

    def deaf(self, session: Any) -> bool:
        """Fed sound for QUIET_SECONDS of kernel-idle time and never answered: a closed tab."""
        if self.fed_at is None or getattr(session, "_in_cell", False):
            return False
        since = max(self.fed_at, getattr(session, "cell_ended", 0.0))
        return time.monotonic() - since > QUIET_SECONDS

    def silent_for(self, session: Any) -> float:
        """Seconds the page has said nothing while the kernel could have heard it.

        A page's messages wait while a cell runs (they arrive on the shell
        channel), so time spent in a cell does not count.
        """
        if getattr(session, "_in_cell", False):
            return 0.0
        since = max(self.heard_from, getattr(session, "cell_ended", 0.0))
        return time.monotonic() - since

    def send(self, data: dict[str, Any], buffers: list[Any] | None = None) -> bool:
        try:
            self.comm.send(data, buffers=buffers)
        except Exception:  # noqa: BLE001 - a closed or broken comm: the page is gone
            return False
        return True


class Link:
    """The kernel side of the extension: pages, their comms, the pump thread.

    Parameters
    ----------
    session : jupysynth.notebook.live.Session
        The notebook session whose engine the pages show and play.
    """

    def __init__(self, session: Any) -> None:
        from comm import create_comm, get_comm_manager

        self.session = session
        self.pages: dict[str, Page] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._manager = get_comm_manager()
        self._manager.register_target("jupysynth.page", self._open_page)
        self.announce = create_comm(target_name="jupysynth.kernel", data={"version": 1})
        self.pump = Pump(self)
        self.reporter = Reporter(self)
        self.pump.start()
        self.reporter.start()

    # -- pages (kernel main thread) -------------------------------------------------------

    def _open_page(self, comm: Any, msg: dict[str, Any]) -> None:
        data = msg.get("content", {}).get("data") or {}
        page = Page(comm, str(data.get("page") or secrets.token_hex(4)))
        with self._lock:
            self.pages[comm.comm_id] = page
        comm.on_msg(lambda m: self._on_msg(page, m))
        comm.on_close(lambda m: self._drop(page))
        page.send(self.hello())
        self.pump.wake()
        self.reporter.wake()

    def _drop(self, page: Page) -> None:
        with self._lock:
            self.pages.pop(page.comm.comm_id, None)

    def hello(self) -> dict[str, Any]:
        """What a page needs to set up: where the sound goes and at what rate."""
        engine = self.session.engine
        info = engine.info if engine is not None and engine.running else {}
        return {
            "type": "hello",
            "samplerate": int(info.get("samplerate", 0)),
            "output": str(info.get("output", "none")) if info else "none",
            "device": str(info.get("device", "")),
            "channels": 2,
        }

    def _on_msg(self, page: Page, msg: dict[str, Any]) -> None:
        data = msg.get("content", {}).get("data") or {}
        kind = data.get("type")
        page.heard_from = time.monotonic()
        page.fed_at = None
        if kind == "heard":
            self._heard(page, data)
        elif kind == "command":
            text = self.command(str(data.get("name")), data.get("cell"))
            page.send({"type": "said", "text": text})

    def _heard(self, page: Page, data: dict[str, Any]) -> None:
        try:
            frame, target = int(data["frame"]), int(data["target"])
        except (KeyError, TypeError, ValueError):
            return  # a malformed report: ignore it, the next one will do
        page.report = {
            "buffered": int(data.get("buffered", 0)),
            "target": target,
            "underruns": int(data.get("underruns", 0)),
            "at": time.monotonic(),
        }
        engine = self.session.engine
        if page is self.pump.active and engine is not None and engine.running and frame >= 0:
            try:
                engine.send("/out/heard", frame, max(0, target))
            except JupysynthError:
                pass  # the engine is stopping: the pump notices

    def command(self, name: str, cell: Any = None) -> str:
        """Run a page's command (panic, restart, mute_cell); what happened, in words."""
        from . import extension

        session = self.session
        try:
            if name == "panic":
                return extension.panic(session)
            if name == "restart":
                text = extension.restart(session)
                self.pump.wake()
                self.reporter.wake()
                return text
            if name == "mute_cell":
                owner = f"cell:{cell}"
                if owner not in session.owners:
                    return "this cell plays nothing"
                session.stop(owner)
                return "this cell's sound is stopped"
        except JupysynthError as exc:
            return f"jupysynth: {exc}"
        return f"unknown command {name!r}"

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the pump, say goodbye to the pages, close the comms (idempotent)."""
        self._stop.set()
        self.pump.wake()
        self.reporter.wake()
        self.pump.join(2.0)
        self.reporter.join(2.0)
        with self._lock:
            pages = list(self.pages.values())
            self.pages.clear()
        for page in pages:
            page.send({"type": "bye"})
            try:
                page.comm.close()
            except Exception:  # noqa: BLE001 - closing a broken comm: nothing to do
                pass
        try:
            self.announce.close()
        except Exception:  # noqa: BLE001
            pass
        self._manager.unregister_target("jupysynth.page", self._open_page)


class Pump(threading.Thread):
    """Sends the engine's browser output to the page that plays it (a thread)."""

    def __init__(self, link: Link) -> None:
        super().__init__(name="jupysynth-browser", daemon=True)
        self.link = link
        self._wake = threading.Event()
        self.tap: Any = None
        self._engine: Any = None
        self.failures = 0
        self.active: Page | None = None  # the page that plays

    @staticmethod
    def choose(pages: list[Page], session: Any) -> Page | None:
        """The page that plays: the newest one that is not deaf."""
        for page in sorted(pages, key=lambda p: p.opened, reverse=True):
            if not page.deaf(session):
                return page
        return None

    def wake(self) -> None:
        self._wake.set()

    def run(self) -> None:
        link = self.link
        while not link._stop.is_set():
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()
            try:
                self._step()
            except Exception as exc:  # noqa: BLE001 - the pump must outlive one bad step
                self.failures += 1
                if self.failures == 1:
                    import sys

                    print(f"jupysynth: browser link: {exc!r}", file=sys.stderr)
        if self.tap is not None:
            self.tap.close()

    def _step(self) -> None:
        link = self.link
        with link._lock:
            pages = list(link.pages.values())
        engine = link.session.engine
        live = engine is not None and engine.running
        if engine is not self._engine:  # restarted (or stopped): a new ring, a new hello
            self._engine = engine
            if self.tap is not None:
                self.tap.close()
                self.tap = None
            if pages:
                hello = link.hello()
                for page in pages:
                    page.send(hello)
            link.reporter.wake()
        if live and self.tap is None and engine.info.get("output") == "browser":
            from ..control.tap import OutputTap

            self.tap = OutputTap(engine)
        session = link.session
        for page in pages:
            if page.silent_for(session) > GONE_SECONDS:
                link._drop(page)
                try:
                    page.comm.close()
                except Exception:  # noqa: BLE001 - a broken comm: it is gone anyway
                    pass
        active = self.choose(pages, session)
        self.active = active
        for page in pages:
            if page is not active and not page.elsewhere and page.sent_frames:
                page.elsewhere = page.send({"type": "elsewhere"})  # another tab plays
        if self.tap is not None:
            chunk = self.tap.read()
            if chunk is not None and active is not None:
                first, pcm = chunk
                head = {"type": "audio", "frame": first, "frames": int(pcm.shape[0])}
                if active.send(head, [memoryview(pcm.tobytes())]):
                    active.elsewhere = False
                    if active.fed_at is None:
                        active.fed_at = time.monotonic()
                    active.sent_frames += pcm.shape[0]
                    active.sent_bytes += pcm.nbytes


class Reporter(threading.Thread):
    """Pushes the engine's status to every page twice a second (a thread).

    Apart from the :class:`Pump` so that sound never waits on a ``/status``
    round trip to a busy engine.
    """

    def __init__(self, link: Link) -> None:
        super().__init__(name="jupysynth-status", daemon=True)
        self.link = link
        self._wake = threading.Event()
        self.failures = 0

    def wake(self) -> None:
        """Push now (a page opened, the engine restarted)."""
        self._wake.set()

    def run(self) -> None:
        link = self.link
        while not link._stop.is_set():
            self._wake.wait(STATUS_SECONDS)
            self._wake.clear()
            if link._stop.is_set():
                break
            with link._lock:
                pages = list(link.pages.values())
            if not pages:
                continue
            try:
                status = self.status(link.session.engine)
            except Exception as exc:  # noqa: BLE001 - the pushes must outlive one bad one
                self.failures += 1
                if self.failures == 1:
                    import sys

                    print(f"jupysynth: browser status: {exc!r}", file=sys.stderr)
                continue
            for page in pages:
                page.send({"type": "status", "status": status})

    def status(self, engine: Any) -> dict[str, Any]:
        """The engine's ``/status``, with the playing page's buffer and who owns what plays."""
        if engine is None:
            return {"running": False, "output": "none", "reason": self.link.session.reason}
        try:
            status = dict(engine.status())
        except JupysynthError as exc:
            return {"running": False, "output": "none", "reason": str(exc)}
        if status.get("running"):
            status["owners"] = sorted(self.link.session.owners)
        active = self.link.pump.active
        if active is not None and active.report:
            report = dict(active.report)
            report.pop("at", None)
            report["bytes_sent"] = active.sent_bytes
            report["page"] = active.id
            status["browser"] = report
        return status


def attach(session: Any) -> Link | None:
    """Open the link for this kernel (once); None outside a kernel with comms."""
    global _link
    if _link is not None:
        return _link
    try:
        _link = Link(session)
    except Exception:  # noqa: BLE001 - no comm manager: a terminal IPython, a test shell
        _link = None
    return _link


def detach() -> None:
    """Close the link (unloading the extension)."""
    global _link
    if _link is not None:
        _link.close()
        _link = None
