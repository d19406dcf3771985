"""The kernel-side OSC client: sends the address space's messages and reads the replies.

Examples
--------
>>> from jupysynth.control import Client
>>> client = Client(path=engine.socket_path)                   # doctest: +SKIP
>>> client.send("/module/new", 1, "Sine", '{"values": {"freq": 440}}')   # doctest: +SKIP
>>> client.send("/out/add", 1)                                 # doctest: +SKIP
>>> client.status()["dsp_load"]                                # doctest: +SKIP
0.004

The engine pushes the faults of the modules a client created (``/fault``,
``/fault/cleared``): :attr:`Client.faults` follows them, and
:attr:`Client.on_fault` hears each as it arrives.
"""

from __future__ import annotations

import itertools
import json
import linecache
import os
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import EngineError
from . import local
from .address import ADDRESSES, STATUS_FIELDS, Address, OscArgError
from .packets import (
    IMMEDIATELY,
    PacketError,
    decode_packet,
    encode_bundle,
    encode_message,
    ntp_from_unix,
)

__all__ = ["Client", "Fault"]

_tokens = itertools.count(1)
_FRAME = re.compile(r'^(?P<indent>\s*)File "(?P<file>[^"]+)", line (?P<line>\d+)')
_CARETS = re.compile(r"^\s*[\^~]+\s*$")
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


@dataclass(frozen=True)
class Fault:
    """A module the engine muted, as its ``/fault`` push said.

    Examples
    --------
    >>> f = Fault(7, "Fold#7", 'Traceback (most recent call last):\\n  ...\\nValueError: boom')
    >>> f.last_line
    'ValueError: boom'
    """

    id: int
    label: str
    message: str

    @property
    def last_line(self) -> str:
        """The message's last non-empty line: the exception, for a traceback."""
        lines = [ln for ln in self.message.splitlines() if ln.strip()]
        return lines[-1].strip() if lines else ""

    def tail(self, lines: int = 4) -> str:
        """The message's last ``lines`` lines: where a traceback says what raised.

        Lines that only point at a column (``^^^^``) are left out, so are the
        engine's own frames before the first frame of the module's code, and a
        frame whose source the engine could not show (code from a notebook cell,
        which only the kernel has) gets its line from this process's ``linecache``.
        """
        out: list[str] = []
        first_own = None
        for line in self.message.rstrip().splitlines():
            if _CARETS.match(line) or (out and line == out[-1]):
                continue  # a column marker, or a source line the engine showed too
            frame = _FRAME.match(line)
            if frame is not None and first_own is None and not frame["file"].startswith(_PACKAGE):
                first_own = len(out)
            out.append(line)
            if frame is not None:
                source = linecache.getline(frame["file"], int(frame["line"])).strip()
                if source:
                    out.append(f"{frame['indent']}  {source}")
        return "\n".join(out[first_own or 0 :][-lines:])


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
        The engine's public port's address (with ``port``).
    port : int
        The engine's public OSC port, which accepts only
        :data:`~.address.PUBLIC` (knobs, play and stop, status).
    on_error : callable, optional
        Called as ``on_error(address, message)`` from the receiving thread for
        every ``/error`` reply; the errors are also kept in :attr:`errors`.
    path : str, optional
        The engine's private socket (``engine.socket_path``): the owner's
        channel, which carries every address.  Given, ``host`` and ``port``
        are not used.  Replies come back to a socket of this client's in the
        same private directory, and only datagrams from this user are read.

    Attributes
    ----------
    faults : dict
        ``{module_id: Fault}``: the muted modules this client created (or, after
        ``/notify 1``, any module), as the engine pushed them.
    on_fault : callable or None
        Called as ``on_fault(module_id, fault)`` from the receiving thread for
        every push: a :class:`Fault`, or None when the fault cleared.  It must
        not wait on this client (no :meth:`status`, :meth:`sync`): the thread
        that would deliver the answer is the one running it.

    Notes
    -----
    One socket sends and receives, so the engine's replies (``/pong``,
    ``/status/reply``, ``/synced``, ``/error``) and pushes come back to this client only.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 57120,
        on_error: Callable[[str, str], None] | None = None,
        *,
        path: str | None = None,
    ) -> None:
        self.on_error = on_error
        self.on_fault: Callable[[int, Fault | None], None] | None = None
        self.faults: dict[int, Fault] = {}
        #: ``(address, message)`` of recent ``/error`` replies, oldest first.
        self.errors: deque[tuple[str, str]] = deque(maxlen=1000)
        self.address: str | tuple[str, int]
        self._path: str | None = None  # this client's own socket, removed on close
        if path is not None:
            self.address = path
            self._path = local.client_path()
            self.sock = local.bind(self._path)
        else:
            self.address = (host, int(port))
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
        """Send a datagram as is (tests, fuzzing).

        Raises
        ------
        jupysynth.errors.EngineError
            If the engine's socket is gone (the engine stopped).
        """
        try:
            self.sock.sendto(data, self.address)
        except (FileNotFoundError, ConnectionRefusedError):
            raise EngineError(
                f"the engine's socket {self.address} is gone: the engine stopped; "
                "start it again (engine.start(), or %synth restart)"
            ) from None

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
        out["listening"] = bool(out["listening"])
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

    def take_reply(self, address: str, key: object) -> tuple | None:
        """The arguments of a keyed reply already received (``/tap/opened``), once; else None.

        A reply sent while the engine applied a message arrives before the
        ``/synced`` of a later :meth:`sync`: call this after it.
        """
        with self._cond:
            return self._replies.pop((address, key), None)

    def take_errors(self) -> list[tuple[str, str]]:
        """Return and forget the errors received so far."""
        with self._cond:
            out = list(self.errors)
            self.errors.clear()
            return out

    def _wait(self, key: tuple[str, object], timeout: float, what: str) -> tuple:
        deadline = time.monotonic() + timeout
        where = self.address if isinstance(self.address, str) else "{}:{}".format(*self.address)
        with self._cond:
            while key not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or not self._running:
                    raise EngineError(
                        f"the engine at {where} did not answer {what} "
                        f"within {timeout:g} s; is it running? (engine.status(), or restart it)"
                    )
                self._cond.wait(left)
            return self._replies.pop(key)

    # -- receiving -------------------------------------------------------------------------

    def _receive(self) -> None:
        buf = bytearray(local.MAX_DATAGRAM)
        while self._running:
            try:
                if self._path is not None:
                    got = local.receive(self.sock, buf)
                    if got is None or got[0] is None:
                        continue  # not from this user, or too large: dropped unread
                    data = got[0]
                else:
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
        if address in ("/fault", "/fault/cleared"):
            self._fault(address, args)
            return
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
        if address in ("/pong", "/synced", "/tap/opened"):
            key: tuple[str, object] = (address, args[0] if args else None)
        elif address == "/status/reply":
            key = (address, None)
        else:
            return
        with self._cond:
            self._replies[key] = tuple(args)
            self._cond.notify_all()

    def _fault(self, address: str, args: list) -> None:
        try:
            module_id = int(args[0])
            fault = Fault(module_id, str(args[1]), str(args[2])) if address == "/fault" else None
        except (IndexError, TypeError, ValueError):
            return  # not from a jupysynth engine
        if fault is None:
            self.faults.pop(module_id, None)
        else:
            self.faults[module_id] = fault
        if self.on_fault is not None:
            try:
                self.on_fault(module_id, fault)
            except Exception:  # noqa: BLE001 - a user callback must not kill the receiver
                pass

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
        if self._path is not None:
            try:
                os.unlink(self._path)
            except FileNotFoundError:
                pass
        with self._cond:
            self._cond.notify_all()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
