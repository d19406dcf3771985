"""Coalesce rapid parameter changes: at most ``rate`` sends per key per second, the last always.

A slider dragged in the browser fires a change for every pixel, hundreds a
second; sending each as OSC would flood the engine's queue for nothing, since
the engine glides to each new value across a block anyway.  A
:class:`Throttle` sends the first change of a key at once, then at most one
per ``1 / rate`` seconds, and always sends the final value once the changes
stop (a trailing send), so a knob never ends a drag short of where it was
left.  One timer thread, sleeping on a condition until the next trailing send
is due, serves every key: no busy loop, no thread per key.

Examples
--------
>>> sent = []
>>> t = Throttle(lambda key, value: sent.append(value), rate=60)
>>> for v in range(1000):
...     t.submit("freq", float(v))
>>> t.flush()
>>> sent[0], sent[-1], len(sent)
(0.0, 999.0, 2)
>>> t.close()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["DEFAULT_RATE", "Throttle"]

log = logging.getLogger("jupysynth.engine")

#: Sends per second per parameter: about a display frame, far below a block
#: rate (375 blocks a second at 48 kHz / 128), so the engine's glide hides it.
DEFAULT_RATE = 60.0


class Throttle:
    """Send ``send(key, value)`` at most ``rate`` times a second per key, the last value always.

    Parameters
    ----------
    send : callable
        ``send(key, value)``, called from the caller's thread (a change after
        a quiet spell) or from the timer thread (a trailing send).  It must not
        call back into the throttle.
    rate : float, default :data:`DEFAULT_RATE`
        Sends per second per key.
    clock : callable, default time.monotonic
        Seconds.
    """

    def __init__(
        self,
        send: Callable[[Hashable, Any], None],
        rate: float = DEFAULT_RATE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate={rate} must be more than 0 sends per second")
        self._send = send
        self.interval = 1.0 / rate
        self._clock = clock
        self._cond = threading.Condition()
        self._last: dict[Hashable, float] = {}  # when each key was last sent
        self._pending: dict[Hashable, Any] = {}  # the newest unsent value per key
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, key: Hashable, value: Any) -> None:
        """Send ``value`` for ``key`` now if the key has been quiet, else as its trailing value."""
        with self._cond:
            if self._closed:
                return
            now = self._clock()
            last = self._last.get(key)
            if key not in self._pending and (last is None or now - last >= self.interval):
                self._last[key] = now
                send_now = True
            else:
                self._pending[key] = value  # replaces an older unsent value: coalesced
                send_now = False
                self._ensure_thread()
                self._cond.notify()
        if send_now:
            self._send(key, value)

    def cancel(self, key: Hashable) -> None:
        """Drop the unsent value of ``key`` (it is about to be connected to a signal)."""
        with self._cond:
            self._pending.pop(key, None)

    def flush(self) -> None:
        """Send every unsent value now, from this thread."""
        with self._cond:
            due = list(self._pending.items())
            self._pending.clear()
            now = self._clock()
            for key, _ in due:
                self._last[key] = now
        for key, value in due:
            self._send(key, value)

    def close(self) -> None:
        """Stop the timer thread; unsent values are dropped (the engine is going away)."""
        with self._cond:
            self._closed = True
            self._pending.clear()
            self._cond.notify()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="jupysynth-throttle", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._closed and not self._pending:
                    # idle: a drag that ended leaves the thread waiting, costing nothing
                    cond.wait()
                if self._closed:
                    return
                now = self._clock()
                due_at = min(self._last.get(k, now) + self.interval for k in self._pending)
                if due_at > now:
                    cond.wait(due_at - now)
                    continue
                due = [
                    (k, v)
                    for k, v in self._pending.items()
                    if self._last.get(k, now) + self.interval <= now
                ]
                for k, _ in due:
                    del self._pending[k]
                    self._last[k] = now
            for k, v in due:
                try:
                    self._send(k, v)
                except Exception:  # noqa: BLE001 - the timer must outlive one failed send
                    log.exception("sending the last value of %r failed", k)
