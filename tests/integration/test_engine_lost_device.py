"""A lost sound device: the engine notices, says so, and plays on clocked by time.

The device is a JACK dummy server of its own (not the session's card, which
other tests play on), stopped under a playing engine, in a separate process so
that PortAudio's view of the session's card is untouched.  Before, the frame
counter froze with ``/status`` saying running on the device, a recording never
finished, and stopping the engine took the 3 s watchdog.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    sys.path.insert(0, sys.argv[1])
    from vsound import VirtualSoundCard
    import jupysynth as js
    from jupysynth.player import Engine, play

    out = {}
    card = VirtualSoundCard(samplerate=48000, period=128, server_name="jupysynth-lost").start()
    try:
        e = Engine(device=card.device_index()).start()
        sine = js.Sine(freq=440, amp=0.1)
        play(sine, e)
        e.sync()
        time.sleep(0.5)
        out["before"] = e.status()
        card.stop()
        t = time.monotonic()
        while e.status()["device"] == out["before"]["device"] and time.monotonic() - t < 10:
            time.sleep(0.05)
        out["noticed_after"] = time.monotonic() - t
        a = e.status()
        time.sleep(0.5)
        out["after"], out["a_frame"] = e.status(), a["frame"]
        at = time.time() + 0.2
        e.send_bundle([("/param/set", sine.id, "amp", 0.2)], at=at + 0.05)
        x = e.record(0.1, at=at)
        out["onset"] = int((abs(x[:, 0]) > 0.15).argmax())
        out["level"] = float(abs(x).max())
        t = time.monotonic()
        e.stop()
        out["stop_seconds"] = time.monotonic() - t
    finally:
        card.stop()
    print(json.dumps(out))
    """
)


def test_a_lost_device_is_noticed_and_the_engine_plays_on_clocked_by_time(sound_card):
    tests = str(Path(__file__).resolve().parents[1])
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, tests], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    before, after = out["before"], out["after"]
    assert before["output"] == "device" and not before["headless"]
    # noticed within a second, said once on the engine's stderr with the fix
    assert out["noticed_after"] < 1.5, out["noticed_after"]
    assert run.stderr.count("the device stopped playing") == 1, run.stderr
    assert "%synth restart" in run.stderr
    assert after["headless"] and after["output"] == "none" and after["running"]
    assert after["device"].startswith(before["device"]) and "lost at" in after["device"]
    # the clock goes on: 0.5 s later, about 0.5 s further
    assert out["after"]["frame"] - out["a_frame"] == pytest.approx(24000, rel=0.3)
    # time tags and recording keep working: the change lands on its frame
    assert out["onset"] == pytest.approx(0.05 * 48000, abs=64)
    assert out["level"] == pytest.approx(0.2, rel=0.01)
    assert out["stop_seconds"] < 2.5
