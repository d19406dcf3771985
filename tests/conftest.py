"""Shared fixtures: ``tests/`` on ``sys.path`` and one virtual sound card for the session.

The card is a JACK server on its dummy driver (see ``tests/vsound.py`` and
``docs/virtual-soundcard.md``), started on first use and stopped when the
session ends.  Without jackd or PortAudio, tests that ask for it are skipped,
except under CI (``CI`` set), where they fail: a missing
``scripts/install-system-deps.sh`` step must not pass as "skipped".
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

SAMPLERATE = 48000
PERIOD = 128


def _missing() -> str | None:
    if shutil.which("jackd") is None:
        return "jackd not installed"
    try:
        import sounddevice  # noqa: F401
    except OSError as exc:  # sounddevice raises OSError when libportaudio is absent
        return f"PortAudio not loadable: {exc}"
    return None


@pytest.fixture(scope="session")
def sound_card():
    """A running virtual sound card (JACK dummy, 48 kHz, period 128) for the whole session.

    Yields
    ------
    vsound.VirtualSoundCard
        Its ``device_index()`` is the JACK ``system`` device, which an engine
        can be given as ``device=``.
    """
    missing = _missing()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}; CI must run scripts/install-system-deps.sh", pytrace=False)
        pytest.skip(f"{missing} (run scripts/install-system-deps.sh)")
    from vsound import VirtualSoundCard

    card = VirtualSoundCard(samplerate=SAMPLERATE, period=PERIOD)
    card.start()
    try:
        yield card
    finally:
        card.stop()
