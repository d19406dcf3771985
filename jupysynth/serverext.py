"""The Jupyter server's part: the kernel's websocket sends each message at once.

The engine's sound reaches the page in the kernel's comm, about a hundred small
messages a second (:mod:`jupysynth.notebook.browser`).  Jupyter Server leaves
Nagle's algorithm on for kernel websockets, so while one message waits for the
browser's acknowledgement the next ones are held back and leave together: the
page received them in bursts, gaps of 40-60 ms between them (the kernel sent
every 10 ms), and its jitter buffer ran dry on the longest.  Real-time
websocket traffic turns it off (``TCP_NODELAY``, as Tornado's documentation
advises for this case); this server extension does that for every kernel
websocket the server opens, by wrapping whatever connection class the server
is configured with.  Nothing else changes: the same messages, the same
authentication.

Installed with the package (``etc/jupyter/jupyter_server_config.d/jupysynth.json``
enables it); ``jupyter server extension list`` shows it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["nodelay_connection"]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "jupysynth.serverext"}]


def nodelay_connection(base: type) -> type:
    """A subclass of the kernel websocket connection class ``base`` that sets TCP_NODELAY."""
    if getattr(base, "jupysynth_nodelay", False):
        return base

    class NoDelayConnection(base):  # type: ignore[misc, valid-type]
        jupysynth_nodelay = True

        def connect(self, *args: Any, **kwargs: Any) -> Any:
            try:
                self.websocket_handler.set_nodelay(True)
            except Exception:  # noqa: BLE001 - no socket option here (a test double): as before
                pass
            return super().connect(*args, **kwargs)

    NoDelayConnection.__name__ = NoDelayConnection.__qualname__ = f"NoDelay{base.__name__}"
    return NoDelayConnection


def _load_jupyter_server_extension(serverapp: Any) -> None:
    settings = serverapp.web_app.settings
    base = settings.get("kernel_websocket_connection_class")
    if base is None:
        return
    settings["kernel_websocket_connection_class"] = nodelay_connection(base)
    serverapp.log.info("jupysynth: kernel websockets send at once (TCP_NODELAY)")
