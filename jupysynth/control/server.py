"""The engine-side OSC server: the owner's Unix socket, and an opt-in public UDP port.

Two sockets, each read by a thread of the engine process:

- **the owner's channel** (:mod:`.local`): a Unix datagram socket in a
  directory only the user can enter, which drops every datagram whose sender
  is another uid before reading it.  It carries the whole address space: the
  kernel's ``/type/define`` (code), ``/tap/open`` (shared memory), ``/notify``.
- **the public port** (``Engine(port=...)``, off by default): UDP, for
  ``oscsend``, phone apps and other programs.  It accepts only
  :data:`~.address.PUBLIC` (knobs, play and stop of modules the owner made,
  status, ping, sync); any other address is refused with ``/error`` before
  its arguments are looked at.

Each datagram is decoded (:mod:`.packets`), every message checked against the
address space (:mod:`.address`); ``/ping``, ``/status`` and ``/notify`` are
answered here and every other message goes, with its time tag, to the engine.
Whatever arrives -- malformed bytes, unknown addresses, wrong types, values
the engine refuses -- the sender gets an ``/error`` reply, the engine log a
line (at most a few per second), and the thread goes on reading.  A message
at a reply's or a push's address (``/error``, ``/fault``...) is never
answered: two engines told of each other cannot play ping-pong.

python-osc's own ``ThreadingOSCUDPServer`` is not used because its
dispatcher *sleeps* in the receiving thread until a bundle's time tag is due;
the engine must instead see tagged messages early and place them on its
sample clock.
"""

from __future__ import annotations

import hmac
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence

from . import local
from .address import ADDRESSES, PUBLIC, PUSHES, REPLIES, OscArgError, check_args
from .notify import Notifier, Push
from .packets import PacketError, decode_packet, encode_message

__all__ = ["OscServer", "Sender"]

log = logging.getLogger("jupysynth.engine.osc")

#: A reply address: the path of a client's Unix socket, or a UDP (host, port).
Sender = str | tuple[str, int]

#: Largest UDP datagram read; UDP cannot carry more.
MAX_DATAGRAM = 65536
#: Addresses the engine sends: arriving, they are dropped unanswered.
_NEVER_ANSWERED = frozenset(REPLIES) | frozenset(PUSHES)
#: Public addresses whose module may be given by its name instead of its id.
_BY_NAME = frozenset({"/param/set", "/out/add", "/out/remove"})


class OscServer:
    """Receive OSC on the owner's socket (and the public port) and pass messages to the engine.

    Parameters
    ----------
    on_message : callable
        ``on_message(timetag, address, args, sender)`` for every checked
        message of a timed address (see :data:`~.address.ADDRESSES`);
        ``timetag`` is the 64-bit NTP tag or None.  An exception it raises
        becomes an ``/error`` reply carrying its message.
    status : callable
        Returns the ``/status/reply`` arguments and their type tags.
    path : str, optional
        Where the owner's socket listens; default :func:`.local.engine_path`.
    port : int or None
        The public UDP port: None (the default) opens none, 0 picks a free one
        (see :attr:`port`).
    host : str
        Interface of the public port; ``127.0.0.1`` keeps it to this machine.
    token : str, optional
        A secret the public port's messages carry as their address's first part
        (``/<token>/param/set``); others are refused.  None: no token.
    resolve : callable, optional
        ``resolve(name)``: the id of the module named ``name``, or None; lets the
        public port's ``/param/set``, ``/out/add`` and ``/out/remove`` name a module.
    heard : callable, optional
        ``heard(frame, target)`` for ``/out/heard`` (the browser output's clock);
        an exception it raises becomes the sender's ``/error``.
    notifier : Notifier, optional
        Where ``/notify`` subscriptions and module creators are kept; a new one by default.

    Raises
    ------
    jupysynth.errors.EngineError
        If the owner's socket cannot be made (the message says why).
    OSError
        If the public port cannot be bound (the message names host and port).
    """

    def __init__(
        self,
        on_message: Callable[[int | None, str, tuple, Sender], None],
        status: Callable[[], tuple[Sequence[object], str]],
        path: str | None = None,
        port: int | None = None,
        host: str = "127.0.0.1",
        notifier: Notifier | None = None,
        token: str | None = None,
        resolve: Callable[[str], int | None] | None = None,
        heard: Callable[[int, int], None] | None = None,
    ) -> None:
        self._on_message = on_message
        self._status = status
        self._prefix = f"/{token}/" if token else None
        self._resolve = resolve
        self._heard = heard
        self._running = False
        self._threads: list[threading.Thread] = []
        self.notifier = notifier if notifier is not None else Notifier()
        self.path = path or local.engine_path()
        self.local = local.bind(self.path)
        self.local.settimeout(0.25)  # how often the thread notices close()
        self.udp: socket.socket | None = None
        self.host: str | None = None
        self.port: int | None = None
        if port is not None:
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            # a burst of messages must wait in the kernel while the engine renders a block
            self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            try:
                self.udp.bind((host, port))
            except OSError as exc:
                self.close()
                raise OSError(
                    exc.errno,
                    f"cannot listen for OSC on {host}:{port} ({exc.strerror}); "
                    "pass port=0 to pick a free port",
                ) from None
            self.udp.settimeout(0.25)
            self.host, self.port = self.udp.getsockname()[:2]
        self.messages = 0
        self.errors = 0
        self.refused = 0  # public-port messages at an owner-only address
        self._send_lock = threading.Lock()
        self._log_lock = threading.Lock()
        self._log_window = 0.0
        self._logged = 0
        self._suppressed = 0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> OscServer:
        """Start the receiving threads."""
        self._running = True
        self._threads = [
            threading.Thread(target=self._serve_local, name="jupysynth-osc", daemon=True)
        ]
        if self.udp is not None:
            self._threads.append(
                threading.Thread(target=self._serve_udp, name="jupysynth-osc-udp", daemon=True)
            )
        for t in self._threads:
            t.start()
        return self

    def close(self) -> None:
        """Stop the threads, close the sockets, remove the owner's socket (idempotent)."""
        self._running = False
        for t in self._threads:
            t.join(1.0)  # each notices within its socket's timeout
        self._threads = []
        if self.local.fileno() >= 0:
            self.local.close()
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        if self.udp is not None:
            self.udp.close()

    # -- replies ---------------------------------------------------------------------------

    def reply(
        self, to: Sender, address: str, args: Sequence[object] = (), types: str | None = None
    ) -> None:
        """Send a message to ``to``; a vanished client is not the engine's problem."""
        sock = self.local if isinstance(to, str) else self.udp
        if sock is None or to is None:
            return
        try:
            data = encode_message(address, args, types)
            with self._send_lock:
                sock.sendto(data, to)
        except (OSError, PacketError, ValueError):
            pass

    def push(self, pushes: Sequence[Push]) -> None:
        """Send the notifier's pushes (from any thread)."""
        for to, address, args, types in pushes:
            self.reply(to, address, args, types)

    def error(self, to: Sender | None, address: str, message: str) -> None:
        """Reply ``/error address message`` and log it (rate-limited)."""
        self.errors += 1
        if to is not None:
            self.reply(to, "/error", (address, message), "ss")
        # the OSC thread and the block loop both report errors
        with self._log_lock:
            now = time.monotonic()
            if now - self._log_window >= 1.0:
                if self._suppressed:
                    log.warning("%d more OSC errors not shown", self._suppressed)
                self._log_window, self._logged, self._suppressed = now, 0, 0
            if self._logged >= 5:
                self._suppressed += 1
                return
            self._logged += 1
        log.warning("OSC %s from %s: %s", address or "packet", to, message)

    # -- receiving -------------------------------------------------------------------------

    def _serve_local(self) -> None:
        buf = bytearray(local.MAX_DATAGRAM)
        while self._running:
            try:
                got = local.receive(self.local, buf)
            except TimeoutError:
                continue
            except OSError:
                if not self._running:
                    return
                continue
            if got is None:
                continue  # another user's: dropped unread
            data, sender = got
            if data is None:
                self.error(
                    sender,
                    "",
                    f"a datagram larger than {local.MAX_DATAGRAM} bytes was dropped unread; "
                    "send it as several bundles",
                )
                continue
            self._guarded(data, sender, True)

    def _serve_udp(self) -> None:
        assert self.udp is not None
        while self._running:
            try:
                data, sender = self.udp.recvfrom(MAX_DATAGRAM)
            except TimeoutError:
                continue
            except OSError:
                if not self._running:
                    return
                continue  # e.g. ICMP port unreachable from an earlier reply
            self._guarded(data, sender, False)

    def _guarded(self, data: bytes, sender: Sender | None, owner: bool) -> None:
        if not self._running or not data:
            return
        try:
            self.handle(data, sender, owner)
        except Exception as exc:  # noqa: BLE001 - the server thread must outlive any bug
            log.exception("OSC server: unexpected error")
            self.error(sender, "", f"internal error: {type(exc).__name__}: {exc}")

    def handle(self, data: bytes, sender: Sender | None, owner: bool = True) -> None:
        """Decode one datagram and act on each message in it.

        ``owner`` is true for the owner's channel; from the public port only
        :data:`~.address.PUBLIC` addresses are accepted.  ``sender`` None (an
        unbound Unix socket) gets no reply.
        """
        try:
            messages = decode_packet(data)
        except PacketError as exc:
            self.error(sender, "", str(exc))
            return
        for timetag, address, params in messages:
            self.messages += 1
            if address in _NEVER_ANSWERED:
                continue  # an engine's own reply sent back: answering would ping-pong
            if not owner and self._prefix is not None:
                head = address[: len(self._prefix)]
                if not hmac.compare_digest(head.encode(), self._prefix.encode()):
                    self.refused += 1
                    self.error(
                        sender,
                        "",
                        "this port wants its token: send /<token>/param/set ... "
                        "(the token is in the engine owner's settings)",
                    )
                    continue
                address = address[len(self._prefix) - 1 :]
            if not owner and address not in PUBLIC:
                self.refused += 1
                known = "" if address in ADDRESSES else "unknown address; "
                self.error(
                    sender,
                    address,
                    f"{known}the public OSC port accepts only {', '.join(sorted(PUBLIC))}; "
                    "the rest (creating modules, code, scope taps) is the engine owner's, "
                    "over its private socket (see docs/osc.md)",
                )
                continue
            if not owner and params and isinstance(params[0], str) and address in _BY_NAME:
                found = self._resolve(params[0]) if self._resolve is not None else None
                if found is None:
                    self.error(sender, address, f"no module is named {params[0]!r}")
                    continue
                params = [found, *params[1:]]
            try:
                args = check_args(address, params)
            except OscArgError as exc:
                self.error(sender, address, str(exc))
                continue
            if address == "/ping":
                self.reply(sender, "/pong", args)
            elif address == "/status":
                values, types = self._status()
                self.reply(sender, "/status/reply", values, types)
            elif address == "/notify":
                if sender is None:
                    self.error(None, address, "an unbound socket cannot hear pushes")
                    continue
                try:
                    self.notifier.notify(sender, *args)
                except ValueError as exc:
                    self.error(sender, address, str(exc))
            elif address == "/out/heard":
                try:
                    if self._heard is None:
                        raise ValueError("this engine has no browser output")
                    self._heard(*args)
                except Exception as exc:  # noqa: BLE001 - reported to the sender instead
                    self.error(sender, address, str(exc))
            else:
                assert ADDRESSES[address].timed
                try:
                    self._on_message(timetag, address, args, sender)
                except Exception as exc:  # noqa: BLE001 - reported to the sender instead
                    self.error(sender, address, str(exc))
                    continue
                if address == "/module/new" and sender is not None:
                    self.notifier.created(args[0], sender)
                elif address == "/module/free":
                    self.notifier.freed(args[0])
