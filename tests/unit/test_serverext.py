"""The server extension turns Nagle off on kernel websockets, on the configured class."""

from __future__ import annotations

import socket

import pytest

serverext = pytest.importorskip("jupysynth.serverext")


class Handler:
    """A websocket handler over a real TCP socket: set_nodelay sets the option."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def set_nodelay(self, value: bool) -> None:
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(value))


class Connection:
    """The shape of jupyter_server's kernel websocket connection classes."""

    def __init__(self, websocket_handler: Handler) -> None:
        self.websocket_handler = websocket_handler
        self.connected = False

    def connect(self) -> str:
        self.connected = True
        return "connected"


def test_a_kernel_websocket_is_sent_on_at_once_and_connects_as_before():
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        conn, _ = server.accept()
        with client, conn:
            assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
            cls = serverext.nodelay_connection(Connection)
            c = cls(Handler(conn))
            assert c.connect() == "connected" and c.connected
            assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            # wrapping twice (two extensions loads) gives the same class
            assert serverext.nodelay_connection(cls) is cls
            assert issubclass(cls, Connection)
