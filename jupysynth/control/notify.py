"""Engine to client pushes: who hears them, and which faults are news.

The block loop does nothing for pushes.  A thread of the engine process
calls :meth:`Notifier.poll` every :data:`POLL_SECONDS` with the muted modules
as they stand and sends what it returns; the OSC server tells the notifier
who created which module (:meth:`Notifier.created`) and who subscribed
(``/notify``, :meth:`Notifier.notify`).  A push goes to the module's creator
and to every subscriber, once each.

Examples
--------
>>> from jupysynth.control.notify import Notifier
>>> n = Notifier()
>>> n.created(7, ("127.0.0.1", 5000))
>>> n.notify(("127.0.0.1", 6000), 1)
>>> for push in n.poll({7: ("Fold#7", "Fold#7 Traceback ...\\nValueError: boom")}):
...     print(push)
(('127.0.0.1', 5000), '/fault', (7, 'Fold#7', 'Traceback ...\\nValueError: boom'), 'iss')
(('127.0.0.1', 6000), '/fault', (7, 'Fold#7', 'Traceback ...\\nValueError: boom'), 'iss')
>>> n.poll({7: ("Fold#7", "Fold#7 Traceback ...\\nValueError: boom")})  # nothing new
[]
>>> for push in n.poll({}):  # revived by a redefined class, or freed
...     print(push)
(('127.0.0.1', 5000), '/fault/cleared', (7,), 'i')
(('127.0.0.1', 6000), '/fault/cleared', (7,), 'i')
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

__all__ = ["MAX_MESSAGE", "MAX_SUBSCRIBERS", "POLL_SECONDS", "Notifier", "Push"]

#: How often the engine looks for new or cleared faults: a fault reaches its
#: clients this long after the block that caught it, at most (plus the network).
POLL_SECONDS = 0.1
#: Subscribers kept at once; more are refused with ``/error``.
MAX_SUBSCRIBERS = 64
#: Creators remembered; the oldest are forgotten past this (ids are not reused in practice).
MAX_CREATORS = 100_000
#: Characters of a fault's message pushed: its end, where a traceback names the exception.
MAX_MESSAGE = 4000

#: A client: the path of its Unix socket, or a UDP (host, port).
Sender = str | tuple[str, int]
#: ``(to, address, args, types)``: one datagram to send.
Push = tuple[Sender, str, tuple, str]


def _clip(message: str) -> str:
    if len(message) <= MAX_MESSAGE:
        return message
    tail = message[-MAX_MESSAGE:]
    cut = tail.find("\n")
    return "...\n" + (tail[cut + 1 :] if 0 <= cut < len(tail) - 1 else tail)


class Notifier:
    """Subscribers, module creators and the faults already pushed (thread-safe).

    Parameters
    ----------
    max_subscribers : int
        Subscribers kept at once.
    max_creators : int
        Module creators remembered.
    """

    def __init__(
        self, max_subscribers: int = MAX_SUBSCRIBERS, max_creators: int = MAX_CREATORS
    ) -> None:
        self.max_subscribers = max_subscribers
        self.max_creators = max_creators
        self._lock = threading.Lock()
        self._subscribers: list[Sender] = []
        self._fresh: set[Sender] = set()  # subscribed since the last poll: owed the known faults
        self._creators: dict[int, Sender] = {}  # insertion order: oldest first
        self._gone: set[int] = set()  # freed while faulted: forget the creator once cleared
        self._known: dict[int, tuple[str, str]] = {}  # what the last poll saw

    @property
    def subscribers(self) -> list[Sender]:
        """Where pushes go besides the creators, in the order they subscribed."""
        with self._lock:
            return list(self._subscribers)

    # -- from the OSC server thread ----------------------------------------------------------

    def notify(self, sender: Sender, on: int) -> None:
        """Handle ``/notify <on>`` from ``sender``: subscribe it (1) or not (0).

        Subscribing again is harmless and sends the current faults again.  The
        pushes go to the sender itself, never to an address it names: a client
        cannot point them at another program (or another engine).

        Raises
        ------
        ValueError
            For too many subscribers (the sender gets ``/error``).
        """
        to = sender
        with self._lock:
            if not on:
                if to in self._subscribers:
                    self._subscribers.remove(to)
                self._fresh.discard(to)
                return
            if to not in self._subscribers:
                if len(self._subscribers) >= self.max_subscribers:
                    raise ValueError(
                        f"/notify: {self.max_subscribers} clients already subscribed; "
                        "one must send /notify 0 first"
                    )
                self._subscribers.append(to)
            self._fresh.add(to)

    def created(self, module_id: int, sender: Sender) -> None:
        """``sender`` sent ``/module/new`` for ``module_id``: it hears that module's faults."""
        with self._lock:
            self._gone.discard(module_id)
            self._creators.pop(module_id, None)
            self._creators[module_id] = sender
            if len(self._creators) > self.max_creators:
                del self._creators[next(iter(self._creators))]

    def freed(self, module_id: int) -> None:
        """``/module/free`` for ``module_id``: forget its creator (after telling it, if faulted)."""
        with self._lock:
            if module_id in self._known:
                self._gone.add(module_id)
            else:
                self._creators.pop(module_id, None)

    # -- from the engine's fault thread ------------------------------------------------------

    def poll(self, faults: Mapping[int, tuple[str, str]]) -> list[Push]:
        """The pushes for what changed since the last poll.

        Parameters
        ----------
        faults : mapping
            ``{module_id: (label, text)}`` of the muted modules the engine
            holds now; ``text`` as the renderer wrote it (it may start with
            the label, which is taken off).

        Returns
        -------
        list of (to, address, args, types)
            A ``/fault`` for every new or changed fault (and for every known
            one to a new subscriber), a ``/fault/cleared`` for every fault gone.
        """
        pushes: list[Push] = []
        with self._lock:
            fresh, self._fresh = self._fresh, set()
            for i, (label, text) in faults.items():
                if self._known.get(i) == (label, text):
                    to = [s for s in self._subscribers if s in fresh]
                else:
                    to = self._recipients(i)
                if to:
                    if text.startswith(label + " "):
                        text = text[len(label) + 1 :]
                    args = (i, label, _clip(text.strip()))
                    pushes += [(s, "/fault", args, "iss") for s in to]
            for i in self._known:
                if i not in faults:
                    pushes += [(s, "/fault/cleared", (i,), "i") for s in self._recipients(i)]
                    if i in self._gone:
                        self._gone.discard(i)
                        self._creators.pop(i, None)
            self._known = dict(faults)
        return pushes

    def _recipients(self, module_id: int) -> list[Sender]:
        creator = self._creators.get(module_id)
        head = [creator] if creator is not None else []
        return head + [s for s in self._subscribers if s != creator]
