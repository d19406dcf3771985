"""The demo command: live on a sound card when there is one, files when there is none."""

from __future__ import annotations

import os
import subprocess
import sys


def test_demo_plays_live_on_the_virtual_card(sound_card, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "jupysynth", "demo", "--bars", "1", "--out", str(tmp_path),
         "--device", str(sound_card.device_index())],
        capture_output=True, text=True, timeout=120, check=True, env=dict(os.environ),
    )  # fmt: skip
    assert "played live on system" in out.stdout, out.stdout + out.stderr
    assert not (tmp_path / "demo.wav").exists()


def test_demo_without_a_device_renders_files(tmp_path):
    # no JACK server of this name and no other PortAudio output: nothing to play on
    env = dict(os.environ, JACK_DEFAULT_SERVER="jupysynth-no-such-server", JACK_NO_START_SERVER="1")
    out = subprocess.run(
        [sys.executable, "-m", "jupysynth", "demo", "--bars", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=True, env=env,
    )  # fmt: skip
    assert "rendering to files instead" in out.stdout, out.stdout + out.stderr
    assert (tmp_path / "demo.wav").stat().st_size > 100_000
    assert (tmp_path / "demo.png").exists()
