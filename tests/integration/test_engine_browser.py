"""The browser output's clock: a page's reports lead the engine, its ring holds the sound.

The test plays the page: it reads the engine's output ring (as the kernel
does) and sends ``/out/heard`` on a clock of its own that runs 0.1 % fast, as
an ``AudioContext`` on a real sound card can run against the system clock.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import jupysynth as js
from jupysynth.control.tap import OutputTap
from jupysynth.errors import ParamError
from jupysynth.player import Engine, play

SR = 48000


class Listener:
    """A page: hears frame ``f0 + (t - t0) * rate`` at monotonic time t, reports it."""

    def __init__(self, engine: Engine, rate: float, target: int = 1920) -> None:
        self.engine, self.rate, self.target = engine, rate, target
        self.f0 = int(engine.status()["frame"])
        self.t0 = time.monotonic()
        self.paused = 0.0  # seconds the page stalled (an underrun)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def heard(self, t: float | None = None) -> float:
        t = time.monotonic() if t is None else t
        return self.f0 + (t - self.t0 - self.paused) * self.rate

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            self.engine.send("/out/heard", int(self.heard()), self.target)

    def __enter__(self) -> Listener:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def test_output_must_be_one_the_engine_knows():
    with pytest.raises(ParamError, match="output='speakers' must be one of 'device', 'browser'"):
        Engine(output="speakers")


def test_the_engine_renders_ahead_of_what_the_page_hears_on_the_pages_clock():
    with Engine(output="browser") as engine:
        assert engine.info["output"] == "browser" and engine.status()["output"] == "browser"
        play(js.Sine(freq=1000, amp=0.25), engine)
        tap = OutputTap(engine)
        rate = SR * 1.001  # the page's clock: 1000 ppm fast
        with Listener(engine, rate) as page:
            time.sleep(1.5)  # two windows lock the clock
            aheads = []
            for _ in range(20):
                time.sleep(0.1)
                aheads.append((engine.status()["frame"] - page.heard()) / SR)
            status = engine.status()
            assert status["listening"] and status["target"] == 1920
            # rendered ahead by what the page asked (40 ms) and up to a block, at the
            # page's rate: at the system clock's rate it would fall 1 ms behind a second
            assert all(0.03 < a < 0.055 for a in aheads), aheads
            # time_of is true to the page: the frame heard now maps to now
            now = time.time()
            assert abs(engine.time_of(int(page.heard())) - now) < 0.012
            # a stall of the page (it ran dry for 200 ms): the engine waits for it
            page.paused = 0.2
            time.sleep(1.2)
            ahead = (engine.status()["frame"] - page.heard()) / SR
            assert 0.03 < ahead < 0.055, ahead
        # a reader seconds behind gets the newest frames, never stale ones, as int16
        first, pcm = tap.read()
        end = first + len(pcm)
        assert tap.skipped > 0 and engine.status()["frame"] - end < 0.1 * SR
        assert pcm.dtype == np.int16 and pcm.shape[1] == 2
        x = pcm[:, 0] / 32768.0
        assert 0.24 < np.abs(x).max() < 0.26
        tap.close()
        # the page is gone: two seconds on, the wall clock leads again, nothing stops
        time.sleep(2.5)
        f1, t1 = engine.status()["frame"], time.monotonic()
        time.sleep(1.0)
        f2, t2 = engine.status()["frame"], time.monotonic()
        assert not engine.status()["listening"]
        assert abs((f2 - f1) / (t2 - t1) - SR) < 0.01 * SR


def test_a_device_engine_refuses_heard_reports():
    with Engine(headless=True) as engine:
        engine.send("/out/heard", 1000, 1920)
        from jupysynth.errors import EngineError

        with pytest.raises(EngineError, match="plays on a device, not in a browser"):
            engine.sync()
