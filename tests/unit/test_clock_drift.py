"""The frame clock estimator (FrameClock) as pure logic, on a simulated sound card.

The simulated card plays ``PERIOD`` frames per callback on its own crystal
(``ppm`` off the system clock), its callbacks run late by a random scheduling
delay, and the block loop samples the ring's read count at random wakes, as
``RingDriver`` does.  The truth is when each frame is heard; the tests check
how far ``t0 + F / SR`` (what a time tag maps to) is from it.
"""

from __future__ import annotations

import random

import pytest

from jupysynth.control.packets import ntp_from_unix, unix_from_ntp
from jupysynth.engine.drivers import FrameClock

SR, PERIOD = 48000, 128
LATENCY = PERIOD / SR  # output latency: callback to DAC
WALL = 1.7e9  # wall minus monotonic time
FRAME = 1.0 / SR

# The stated tolerances.  The loop's estimate sits above the truth by the smallest
# delay between a callback and a wake of the block loop within a window (a bias of
# about 0.15 ms with the jitter simulated here) and wanders by some tens of us.
SETTLED_ERROR = 0.4e-3  # |t0 used - truth| once settled, in s (19 frames)
SETTLED_DRIFT = 15.0  # |drift_ppm - truth| once settled
ANCHOR_ERROR = 0.5e-3  # |t0 used - truth| right after a re-anchor on one window


class Card:
    """A simulated device and block loop driving a FrameClock; ``run`` advances time."""

    def __init__(self, ppm: float, start_error: float = 0.003, seed: int = 1, **kw) -> None:
        self.rng = random.Random(seed)
        self.rate = SR * (1 + ppm * 1e-6)  # frames per system-clock second
        self.now = 1000.0  # monotonic
        self.wall_step = 0.0  # the wall clock set forward by this much
        self.grid = self.now  # when the device's callback 0 is due
        self.callbacks = 0
        self.starve = 0.0  # until this time, the block loop wakes late by 5 ms
        anchor = self.now + WALL + LATENCY + start_error  # what the driver started with
        self.clock = FrameClock(
            SR,
            ntp_from_unix(anchor),
            lag=LATENCY + PERIOD / SR,
            wall=lambda: self.now + WALL + self.wall_step,
            mono=lambda: self.now,
            **kw,
        )
        # (time, t0 used - truth, drift_ppm, t0 used, steps) after every observation
        self.log: list[tuple[float, float, float, float, int]] = []

    def truth(self) -> float:
        """Wall time of frame 0 as the device plays now: when frame F is heard, minus F / SR."""
        frame = self.callbacks * PERIOD
        heard = self.grid + frame / self.rate + LATENCY
        return heard - frame / SR + WALL + self.wall_step

    def lose(self, seconds: float) -> None:
        """The device stops for a while and plays on from where it was (an xrun, a stall)."""
        self.grid += seconds

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        rng = self.rng
        while self.now < end:
            t = self.now + rng.uniform(0.0015, 0.0035)  # the loop's next wake
            while self.grid + self.callbacks * PERIOD / self.rate + rng.uniform(0, 3e-4) <= t:
                self.callbacks += 1
            frame = self.callbacks * PERIOD
            # the time is read a little after the count, now and then much later
            late = rng.uniform(0, 3e-3) if rng.random() < 0.01 else rng.uniform(0, 2e-5)
            if t < self.starve:
                late = 5e-3
            self.now = t + late
            self.clock.observe(self.now, frame)
            used = unix_from_ntp(self.clock.t0_ntp)
            self.log.append(
                (self.now, used - self.truth(), self.clock.drift_ppm, used, self.clock.steps)
            )

    def since(self, t: float) -> list[tuple[float, float, float, float, int]]:
        return [e for e in self.log if e[0] >= t]


@pytest.mark.parametrize("ppm", [100.0, -100.0, 40.0])
def test_drift_is_tracked_within_the_stated_tolerance(ppm):
    card = Card(ppm)
    card.run(25.0)
    settled = card.since(1000.0 + 15.0)
    assert max(abs(e[1]) for e in settled) < SETTLED_ERROR
    assert max(abs(e[2] - ppm) for e in settled) < SETTLED_DRIFT
    # uncorrected, the mapping would be off by ppm * 25 s by now: 2.5 ms at 100 ppm
    assert card.clock.steps == 0


def test_the_start_anchor_is_corrected_in_the_first_window():
    card = Card(0.0, start_error=0.003)
    card.run(0.05)
    assert card.log[-1][1] == pytest.approx(0.003, abs=5e-4)  # the window is still open
    card.run(0.1)
    assert abs(card.log[-1][1]) < ANCHOR_ERROR


def test_a_card_that_keeps_time_leaves_t0_alone():
    """Jitter alone moves t0 seldom (the deadband), by two to four frames at a time.

    A time tag then maps to the same frame whenever the message arrives.
    """
    card = Card(0.0)
    card.run(30.2)
    t0s = [e[3] for e in card.since(1000.2)]
    moves = [b - a for a, b in zip(t0s, t0s[1:]) if b != a]
    assert len(moves) <= 15  # at most one per two seconds
    assert all(abs(m) < 4 * FRAME for m in moves)


def test_slewing_never_runs_the_frame_clock_backwards():
    """Outside re-anchors, t0 moves at most max_slew per second (plus the deadband).

    So the frame a wall-clock time maps to, ``(w - t0) * SR``, never decreases, and
    an event tagged later maps to a frame no earlier than one tagged before it
    (unless their tags are closer than max_slew times the time between the sends).
    """
    card = Card(100.0, start_error=0.0)
    card.run(1.0)  # past the first window, which re-anchors (as after any restart)
    start = len(card.log)
    card.lose(0.0008)  # below the step threshold: slewed, not re-anchored
    card.run(20.0)
    assert card.clock.steps == 0
    log = card.log[start - 1 :]
    moves = [(a, b) for a, b in zip(log, log[1:]) if b[3] != a[3]]
    assert len(moves) > 20
    last = log[0]
    for _, b in moves:
        dt = b[0] - last[0]
        dt0 = b[3] - last[3]
        assert abs(dt0) <= card.clock.max_slew * dt + card.clock.deadband + 1e-9
        assert dt0 < dt  # wall time w maps to a later frame than before
        last = b
    # and the slewed-out error is gone
    assert max(abs(e[1]) for e in card.since(1000.0 + 12.0)) < SETTLED_ERROR


def test_an_xrun_gap_re_anchors_at_once_and_keeps_the_drift():
    """Two windows that agree on a loss re-anchor: within three windows of it (0.3 s)."""
    card = Card(100.0)
    card.run(20.0)
    drift = card.clock.drift_ppm
    card.lose(0.050)  # the device lost 50 ms
    card.run(0.1)
    assert card.log[-1][1] < -0.049  # not yet: a tag would be heard 50 ms late
    card.run(0.3)
    assert card.clock.steps == 1
    after = card.since(card.now - 0.05)
    assert max(abs(e[1]) for e in after) < ANCHOR_ERROR
    card.run(10.0)
    assert max(abs(e[1]) for e in card.since(card.now - 9.0)) < SETTLED_ERROR
    assert card.clock.drift_ppm == pytest.approx(drift, abs=SETTLED_DRIFT)
    # t0 moved by the loss, less the 3 ms the start anchor was late and the drift so far
    elapsed = card.now - 1000.0
    assert card.clock.offset_ms == pytest.approx(50.0 - 3.0 - 0.1 * elapsed, abs=0.5)


def test_one_starved_window_is_not_taken_for_a_step():
    """A block loop that wakes late for a whole window sees a later phase: wait for a second."""
    card = Card(0.0)
    card.run(5.0)
    before = card.clock.t0_ntp
    card.starve = card.now + 0.1
    card.run(0.5)
    assert card.clock.steps == 0
    # slewing as usual, nowhere near the 5 ms the starved window suggested
    assert abs(card.clock.t0_ntp - before) / 2**32 < 0.2e-3


def test_the_wall_clock_set_forward_moves_t0_with_it():
    card = Card(0.0)
    card.run(2.0)
    t0 = unix_from_ntp(card.clock.t0_ntp)
    card.wall_step = 1.0  # time.time() jumps: tags jump with it
    card.run(0.4)
    assert card.clock.steps == 1
    assert unix_from_ntp(card.clock.t0_ntp) - t0 == pytest.approx(1.0, abs=ANCHOR_ERROR)


def test_a_restart_re_anchors_even_a_small_error():
    """After the ring ran dry (or the engine idled), the device plays a new relation."""
    card = Card(0.0)
    card.run(3.0)
    card.lose(0.0008)  # below the step threshold
    card.clock.restart()
    card.run(0.15)
    assert abs(card.log[-1][1]) < ANCHOR_ERROR


def test_observing_is_cheap_between_windows():
    clock = FrameClock(SR, ntp_from_unix(WALL), wall=lambda: WALL, mono=lambda: 0.0)
    assert clock.observe(0.0, 0) is None
    for k in range(1, 30):
        assert clock.observe(k * 0.003, k * 144) is None or k * 0.003 >= clock.window
