"""The kernel-side OSC client: sends the address space's messages and reads the replies.

Examples
--------
>>> from jupysynth.control import Client
>>> client = Client(port=57120)                                # doctest: +SKIP
>>> client.send("/module/new", 1, "Sine", '{"values": {"freq": 440}}')   # doctest: +SKIP
>>> client.send("/out/add", 1)                                 # doctest: +SKIP
>>> client.status()["dsp_load"]                                # doctest: +SKIP
0.004
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..errors import EngineError
from .address import ADDRESSES, STATUS_FIELDS, Address, OscArgError
from .packets import (
    IMMEDIATELY,
    PacketError,
    decode_packet,
    encode_bundle,
    encode_message,
    ntp_from_unix,
)

__all__ = ["Client"]

_tokens = itertools.count(1)


def _types_for(spec: Address, args: Sequence[object]) -> str | None:
    if spec.any_args:
        return None
    n_req = len(spec.args)
    types = []
    for k in range(len(args)):
        if k < n_req:
            arg = spec.args[k]
        elif spec.repeat:
            arg = spec.repeat[(k - n_req) % len(spec.repeat)]
        elif k - n_req < len(spec.optional):
            arg = spec.optional[k - n_req]
        else:
            raise OscArgError(f"{spec.path} takes {spec.signature()}; got {len(args)} arguments")
        types.append(arg.type)
    return "".join(types)


class Client:
    """Talk to a jupysynth engine over OSC.

    Parameters
    ----------
    host : str
        The engine's address.
    port : int
        The engine's OSC port.
    on_error : callable, optional
        Called as ``on_error(address, message)`` from the receiving thread for
        every ``/error`` reply; the errors are also kept in :attr:`errors`.

    Notes
    -----
    One UDP socket sends and receives, so the engine's replies (``/pong``,
    ``/status/reply``, ``/synced``, ``/error``) come back to this client only.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 57120,
        on_error: Callable[[str, str], None] | None = None,
    ) -> None:
        self.address = (host, int(port))
        self.on_error = on_error
        #: ``(address, message)`` of recent ``/error`` replies, oldest first.
        self.errors: deque[tuple[str, str]] = deque(maxlen=1000)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1" if host in ("127.0.0.1", "localhost") else "", 0))
        self.sock.settimeout(0.2)
        self._replies: dict[tuple[str, object], tuple] = {}
        self._cond = threading.Condition()
        self._status_lock = threading.Lock()
        self._running = True
        self._thread = threading.Thread(
            target=self._receive, name="jupysynth-osc-client", daemon=True
        )
        self._thread.start()

    # -- sending ---------------------------------------------------------------------------

    @staticmethod
    def message(address: str, *args: object) -> bytes:
        """Encode one message, typed as :data:`~.address.ADDRESSES` says.

        Raises
        ------
        jupysynth.errors.EngineError
            For an address the engine does not know or the wrong number of arguments.
        """
        spec = ADDRESSES.get(address)
        if spec is None:
            raise EngineError(
                f"unknown OSC address {address!r}; valid: {', '.join(sorted(ADDRESSES))}"
            )
        try:
            return encode_message(address, args, _types_for(spec, args))
        except (OscArgError, PacketError) as exc:
            raise EngineError(str(exc)) from None
        except Exception as exc:  # struct / encoding errors from python-osc
            raise EngineError(f"{address}: cannot encode {args!r}: {exc}") from None

    def send(self, address: str, *args: object) -> None:
        """Send one message, applied at the next block."""
        self.send_raw(self.message(address, *args))

    def send_bundle(self, messages: Iterable[bytes], at: float | None = None) -> None:
        """Send encoded messages as one bundle.

        Parameters
        ----------
        messages : iterable of bytes
            From :meth:`message`.
        at : float, optional
            Unix time (``time.time()`` scale) at which they apply, to the
            sample; None applies them together at the next block.
        """
        tag = IMMEDIATELY if at is None else ntp_from_unix(at)
        self.send_raw(encode_bundle(messages, tag))

    def send_raw(self, data: bytes) -> None:
        """Send a datagram as is (tests, fuzzing)."""
        self.sock.sendto(data, self.address)

    # -- requests --------------------------------------------------------------------------

    def ping(self, timeout: float = 1.0) -> float:
        """Round-trip time of a ``/ping`` in seconds.

        Raises
        ------
        jupysynth.errors.EngineError
            If no ``/pong`` comes back within ``timeout``.
        """
        token = next(_tokens)
        t = time.perf_counter()
        self.send_raw(encode_message("/ping", (token,), "i"))
        self._wait(("/pong", token), timeout, "/ping")
        return time.perf_counter() - t

    def status(self, timeout: float = 1.0) -> dict[str, Any]:
        """The engine's state as a dict of :data:`~.address.STATUS_FIELDS`."""
        with self._status_lock:
            with self._cond:
                self._replies.pop(("/status/reply", None), None)
            self.send("/status")
            args = self._wait(("/status/reply", None), timeout, "/status")
        if len(args) != len(STATUS_FIELDS):
            raise EngineError(
                f"/status/reply has {len(args)} fields, expected {len(STATUS_FIELDS)}; "
                "is the engine from another jupysynth version?"
            )
        out = {name: value for (name, _, _), value in zip(STATUS_FIELDS, args)}
        out["running"] = bool(out["running"])
        out["headless"] = bool(out["headless"])
        out["faults"] = {int(k): v for k, v in json.loads(out["faults"]).items()}
        return out

    def sync(self, timeout: float = 2.0) -> list[tuple[str, str]]:
        """Wait until the engine applied everything sent before; return the errors not yet taken.

        The errors are those received since the last :meth:`sync` or
        :meth:`take_errors`, including the ones the engine sent while
        applying what came before this call.

        Raises
        ------
        jupysynth.errors.EngineError
            If the engine does not answer within ``timeout``.
        """
        token = next(_tokens) & 0x7FFFFFFF
        self.send("/sync", token)
        self._wait(("/synced", token), timeout, "/sync")
        return self.take_errors()

    def take_errors(self) -> list[tuple[str, str]]:
        """Return and forget the errors received so far."""
        with self._cond:
            out = list(self.errors)
            self.errors.clear()
            return out

    def _wait(self, key: tuple[str, object], timeout: float, what: str) -> tuple:
        deadline = time.monotonic() + timeout
        with self._cond:
            while key not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or not self._running:
                    raise EngineError(
                        f"the engine at {self.address[0]}:{self.address[1]} did not answer {what} "
                        f"within {timeout:g} s; is it running? (engine.status(), or restart it)"
                    )
                self._cond.wait(left)
            return self._replies.pop(key)

    # -- receiving -------------------------------------------------------------------------

    def _receive(self) -> None:
        while self._running:
            try:
                data, _ = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                if not self._running:
                    return
                continue
            if not self._running:
                return
            try:
                messages = decode_packet(data)
            except PacketError:
                continue
            for _, address, args in messages:
                self._dispatch(address, args)

    def _dispatch(self, address: str, args: list) -> None:
        if address == "/error":
            where, why = (list(args) + ["", ""])[:2]
            with self._cond:
                self.errors.append((str(where), str(why)))
            if self.on_error is not None:
                try:
                    self.on_error(str(where), str(why))
                except Exception:  # noqa: BLE001 - a user callback must not kill the receiver
                    pass
            return
        if address in ("/pong", "/synced"):
            key: tuple[str, object] = (address, args[0] if args else None)
        elif address == "/status/reply":
            key = (address, None)
        else:
            return
        with self._cond:
            self._replies[key] = tuple(args)
            self._cond.notify_all()

    def close(self) -> None:
        """Stop the receiving thread and close the socket (idempotent)."""
        if not self._running:
            return
        self._running = False
        try:
            # wake the blocked recvfrom now rather than at its next timeout
            self.sock.sendto(b"", self.sock.getsockname())
        except OSError:
            pass
        self._thread.join(1.0)
        self.sock.close()
        with self._cond:
            self._cond.notify_all()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
