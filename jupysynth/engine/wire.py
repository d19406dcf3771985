"""Length-prefixed messages between the engine and its workers over a socket pair.

Lighter than :class:`multiprocessing.connection.Connection` on the block path:
one ``send`` and usually one ``recv`` system call per message (the
Connection reads a header, then the body), and the engine waits on a
persistent ``select.poll`` instead of building a selector for every block.
Requests and replies alternate, so at most one message is in flight each way.
"""

from __future__ import annotations

import socket
import struct

__all__ = ["Wire"]

_HEADER = struct.Struct("<I")
_CHUNK = 1 << 16


class Wire:
    """One end of a socket pair carrying whole messages (bytes)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.setblocking(True)
        self._buf = bytearray()  # bytes of a message that came in pieces
        self._scratch = bytearray(_CHUNK)
        self._view = memoryview(self._scratch)
        self._framed: dict[bytes, bytes] = {}

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, payload: bytes) -> None:
        """Send one message (raises OSError when the other end is gone)."""
        self.sock.sendall(_HEADER.pack(len(payload)) + payload)

    def send_small(self, payload: bytes) -> None:
        """Send a short message that recurs (a block command): framed once, then reused."""
        framed = self._framed.get(payload)
        if framed is None:
            framed = self._framed[payload] = _HEADER.pack(len(payload)) + payload
        self.sock.sendall(framed)

    def recv(self) -> bytes:
        """The next whole message (blocks; EOFError when the other end closed)."""
        buf = self._buf
        if not buf:
            # the usual case: one short message arrives whole in one read
            got = self.sock.recv_into(self._view)
            if not got:
                raise EOFError("the other end closed the socket")
            if got >= 4:
                need = 4 + _HEADER.unpack_from(self._scratch)[0]
                if got == need:
                    return bytes(self._view[4:need])
            buf += self._view[:got]
        while len(buf) < 4:
            self._more(buf)
        need = 4 + _HEADER.unpack_from(buf)[0]
        while len(buf) < need:
            self._more(buf)
        msg = bytes(buf[4:need])
        del buf[:need]
        return msg

    def _more(self, buf: bytearray) -> None:
        got = self.sock.recv_into(self._view)
        if not got:
            raise EOFError("the other end closed the socket")
        buf += self._view[:got]

    def close(self) -> None:
        self.sock.close()
