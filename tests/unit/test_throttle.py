"""The knob throttle: rapid changes coalesce per key, the last value is always sent."""

from __future__ import annotations

import threading
import time

from jupysynth.player.throttle import Throttle


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple] = []
        self.event = threading.Event()

    def __call__(self, key, value) -> None:
        self.sent.append((key, value))
        self.event.set()


def test_a_burst_sends_the_first_value_at_once_and_the_last_on_the_timer():
    rec = Recorder()
    t = Throttle(rec, rate=60)
    try:
        for v in range(1000):
            t.submit(("osc", "freq"), float(v))
        assert rec.sent == [(("osc", "freq"), 0.0)]
        rec.event.clear()
        assert rec.event.wait(1.0), "the trailing send never came"
        assert rec.sent[-1] == (("osc", "freq"), 999.0)
        assert len(rec.sent) == 2
    finally:
        t.close()


def test_a_steady_drag_is_capped_near_the_rate_and_ends_on_its_last_value():
    rec = Recorder()
    t = Throttle(rec, rate=60)
    try:
        start = time.monotonic()
        v = 0
        while time.monotonic() - start < 0.5:  # ~0.5 s of a slider firing every 0.5 ms
            t.submit("amp", float(v))
            v += 1
            time.sleep(0.0005)
        time.sleep(0.1)
        assert rec.sent[-1] == ("amp", float(v - 1))
        # 0.5 s at 60 per second, plus the first and the trailing send
        assert len(rec.sent) <= 0.5 * 60 + 3
        assert v > 5 * len(rec.sent)
    finally:
        t.close()


def test_keys_are_throttled_independently_and_cancel_drops_a_pending_value():
    now = [0.0]
    rec = Recorder()
    t = Throttle(rec, rate=10, clock=lambda: now[0])
    try:
        t.submit("a", 1.0)
        t.submit("b", 1.0)  # another key is not held back by "a"
        t.submit("a", 2.0)
        t.submit("b", 2.0)
        t.cancel("b")
        t.flush()
        assert rec.sent == [("a", 1.0), ("b", 1.0), ("a", 2.0)]
        now[0] = 1.0  # quiet for longer than the interval: sent at once again
        t.submit("a", 3.0)
        assert rec.sent[-1] == ("a", 3.0)
    finally:
        t.close()
