"""The engine-side OSC server: a UDP socket read by one thread of the engine process.

It decodes each datagram (:mod:`.packets`), checks every message against the
address space (:mod:`.address`), answers ``/ping``, ``/status`` and ``/notify``
itself and hands every other message, with its time tag, to the engine.  It
tells its :class:`~.notify.Notifier` who created which module and who
subscribed; :meth:`OscServer.push` sends what the notifier finds.  Whatever
arrives -- malformed bytes, unknown addresses, wrong types, values the engine
refuses -- the sender gets an ``/error`` reply, the engine log a line (at
most a few per second), and the thread goes on reading.

python-osc's own ``ThreadingOSCUDPServer`` is not used because its
dispatcher *sleeps* in the receiving thread until a bundle's time tag is due;
the engine must instead see tagged messages early and place them on its
sample clock.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence

from .address import ADDRESSES, OscArgError, check_args
from .notify import Notifier, Push
from .packets import PacketError, decode_packet, encode_message

__all__ = ["OscServer", "Sender"]

log = logging.getLogger("jupysynth.engine.osc")

Sender = tuple[str, int]

#: Largest datagram read; UDP cannot carry more.
MAX_DATAGRAM = 65536


class OscServer:
    """Receive OSC over UDP in a thread and pass messages to the engine.

    Parameters
    ----------
    on_message : callable
        ``on_message(timetag, address, args, sender)`` for every checked
        message of a timed address (see :data:`~.address.ADDRESSES`);
        ``timetag`` is the 64-bit NTP tag or None.  An exception it raises
        becomes an ``/error`` reply carrying its message.
    status : callable
        Returns the ``/status/reply`` arguments and their type tags.
    host : str
        Interface to listen on; ``127.0.0.1`` keeps the synth private to this machine.
    port : int
        UDP port; 0 picks a free one (see :attr:`port`).
    notifier : Notifier, optional
        Where ``/notify`` subscriptions and module creators are kept; a new one by default.

    Raises
    ------
    OSError
        If the port cannot be bound (the message names host and port).
    """

    def __init__(
        self,
        on_message: Callable[[int | None, str, tuple, Sender], None],
        status: Callable[[], tuple[Sequence[object], str]],
        host: str = "127.0.0.1",
        port: int = 0,
        notifier: Notifier | None = None,
    ) -> None:
        self._on_message = on_message
        self._status = status
        self.notifier = notifier if notifier is not None else Notifier()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # a burst of messages must wait in the kernel while the engine renders a block
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise OSError(
                exc.errno,
                f"cannot listen for OSC on {host}:{port} ({exc.strerror}); "
                "pass port=0 to pick a free port",
            ) from None
        self.sock.settimeout(0.25)  # how often the thread notices close()
        self.host, self.port = self.sock.getsockname()[:2]
        self.messages = 0
        self.errors = 0
        self._running = False
        self._thread: threading.Thread | None = None
        self._send_lock = threading.Lock()
        self._log_lock = threading.Lock()
        self._log_window = 0.0
        self._logged = 0
        self._suppressed = 0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> OscServer:
        """Start the receiving thread."""
        self._running = True
        self._thread = threading.Thread(target=self._serve, name="jupysynth-osc", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the thread and close the socket (idempotent)."""
        self._running = False
        if self._thread is not None:
            # wake the blocked recvfrom now rather than at its next timeout
            wake = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
                wake.sendto(b"", (host, self.port))
            except OSError:
                pass
            finally:
                wake.close()
            self._thread.join(2.0)
            self._thread = None
        self.sock.close()

    # -- replies ---------------------------------------------------------------------------

    def reply(
        self, to: Sender, address: str, args: Sequence[object] = (), types: str | None = None
    ) -> None:
        """Send a message to ``to``; a vanished client is not the engine's problem."""
        try:
            data = encode_message(address, args, types)
            with self._send_lock:
                self.sock.sendto(data, to)
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

    def _serve(self) -> None:
        while self._running:
            try:
                data, sender = self.sock.recvfrom(MAX_DATAGRAM)
            except TimeoutError:
                continue
            except OSError:
                if not self._running:
                    return
                continue  # e.g. ICMP port unreachable from an earlier reply
            if not self._running:
                return
            try:
                self.handle(data, sender)
            except Exception as exc:  # noqa: BLE001 - the server thread must outlive any bug
                log.exception("OSC server: unexpected error")
                self.error(sender, "", f"internal error: {type(exc).__name__}: {exc}")

    def handle(self, data: bytes, sender: Sender) -> None:
        """Decode one datagram and act on each message in it."""
        try:
            messages = decode_packet(data)
        except PacketError as exc:
            self.error(sender, "", str(exc))
            return
        for timetag, address, params in messages:
            self.messages += 1
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
                try:
                    self.notifier.notify(sender, *args)
                except ValueError as exc:
                    self.error(sender, address, str(exc))
            else:
                assert ADDRESSES[address].timed
                try:
                    self._on_message(timetag, address, args, sender)
                except Exception as exc:  # noqa: BLE001 - reported to the sender instead
                    self.error(sender, address, str(exc))
                    continue
                if address == "/module/new":
                    self.notifier.created(args[0], sender)
                elif address == "/module/free":
                    self.notifier.freed(args[0])
