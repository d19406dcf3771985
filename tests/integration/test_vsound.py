"""End-to-end tests of the virtual sound card with real PortAudio.

One JACK dummy server is started for the whole module; PortAudio streams
(``rtmixer`` and plain ``sounddevice``) play into it and, with their outputs
wired back to their inputs, record what they played.

The tests skip when jackd or PortAudio is not installed, except under CI
(``CI`` set), where a missing ``scripts/install-system-deps.sh`` step must
fail loudly instead of passing as "skipped".
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

TESTS_DIR = Path(__file__).resolve().parents[1]


# The rootdir conftest normally puts tests/ on sys.path; be runnable without it.
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

try:
    import rtmixer
    import sounddevice as sd
    from vsound import VirtualSoundCard, _process_exists
except OSError as exc:  # sounddevice raises OSError when libportaudio is absent
    rtmixer = sd = None
    _MISSING: str | None = f"PortAudio not loadable: {exc}"
else:
    _MISSING = None if shutil.which("jackd") else "jackd not installed"

if _MISSING is not None and not os.environ.get("CI"):
    pytest.skip(f"{_MISSING} (run scripts/install-system-deps.sh)", allow_module_level=True)

SAMPLERATE = 48000
PERIOD = 128
CHANNELS = 2


@pytest.fixture(scope="module")
def card(sound_card):
    """The session's virtual sound card (tests/conftest.py): jackd starts once per run.

    Stopping a JACK server under a PortAudio that has it open aborts the
    process, so no test here stops the session's card; the stop test below
    starts and stops a card of its own in a child process.
    """
    index = sound_card.device_index()
    info = sd.query_devices(index)
    print(
        f"\n[vsound] device {index}: {info['name']!r} "
        f"({sd.query_hostapis(info['hostapi'])['name']}, "
        f"{info['max_input_channels']} in, {info['max_output_channels']} out); "
        f"PortAudio lib {sd._libname}"
    )
    return sound_card


def _peak_frequency(x: np.ndarray, fs: float) -> float:
    """Frequency of the largest spectral peak, refined between FFT bins.

    Parameters
    ----------
    x : numpy.ndarray
        1-D signal.
    fs : float
        Sample rate in Hz.

    Returns
    -------
    float
        Peak frequency in Hz.
    """
    # Hann window keeps leakage from the segment edges off the peak; the
    # parabola through the log magnitudes of the 3 bins around the peak then
    # locates it to a small fraction of a bin (here 1 Hz wide).
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-30)
    offset = 0.5 * (a - c) / (a - 2 * b + c)
    return (k + offset) * fs / len(x)


def _rms_db(x: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def test_sine_loopback_rtmixer(card):
    """A 1 kHz sine played by rtmixer comes back at 1 kHz and the same level."""
    fs = card.device_samplerate
    freq, amp = 1000.0, 0.5
    n_play = int(1.5 * fs)
    t = np.arange(n_play) / fs
    sine = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    play = np.ascontiguousarray(np.column_stack([sine] * CHANNELS))
    # Longer than the tone, so the loopback delay cannot push its end out.
    rec = np.zeros((n_play + int(0.3 * fs), CHANNELS), dtype=np.float32)

    with rtmixer.MixerAndRecorder(
        device=card.device_index(),
        channels=CHANNELS,
        blocksize=PERIOD,
        samplerate=fs,
        latency="low",
    ) as mixer:
        pairs = card.connect_loopback()
        print(f"\n[vsound] loopback: {pairs}")
        # Start recording 50 ms before the tone, both on rtmixer's stream
        # clock, so the tone's onset (and thus the delay) is visible.
        start = mixer.time + 0.1
        lead = int(0.05 * fs)
        chans = list(range(1, CHANNELS + 1))
        rec_action = mixer.record_buffer(rec, channels=chans, start=start - lead / fs)
        play_action = mixer.play_buffer(play, channels=chans, start=start)
        deadline = time.monotonic() + 10
        while (rec_action in mixer.actions or play_action in mixer.actions) and (
            time.monotonic() < deadline
        ):
            sd.sleep(20)
        assert rec_action not in mixer.actions, "recording did not finish in 10 s"
    stats = mixer.stats
    print(
        f"[vsound] rtmixer: {stats.blocks} blocks of {stats.min_blocksize}-{stats.max_blocksize}"
        f" frames, {stats.input_overflows} input overflows, "
        f"{stats.output_underflows} output underflows"
    )

    played_db = _rms_db(sine[: int(fs)])
    play_onset = int(np.flatnonzero(np.abs(sine) > amp / 2)[0])
    for ch in range(CHANNELS):
        onset = np.flatnonzero(np.abs(rec[:, ch]) > amp / 2)
        assert onset.size, f"channel {ch}: nothing came back through the loopback"
        # Skip the onset transient; take exactly 1 s so FFT bins are 1 Hz.
        seg_start = onset[0] + int(0.1 * fs)
        segment = rec[seg_start : seg_start + int(fs), ch]
        assert len(segment) == int(fs)
        peak = _peak_frequency(segment, fs)
        level_diff = _rms_db(segment) - played_db
        # Not asserted, only reported: rtmixer schedules playback by DAC time
        # and recording by ADC time, and PortAudio's JACK timestamps assume
        # the hardware round trip (DAC = now + period + port latency, ADC =
        # now - period: 512 frames here), while an in-client loopback takes
        # only 256 -- so the tone shows up ~256 frames "early".
        misalignment = int(onset[0]) - lead - play_onset
        print(
            f"[vsound] ch{ch}: tone onset {misalignment:+d} frames from its scheduled time, "
            f"peak {peak:.3f} Hz, level {level_diff:+.4f} dB vs played"
        )
        assert abs(peak - freq) <= 1.0
        assert abs(level_diff) <= 1.0


def test_click_round_trip_latency(card):
    """A click in a duplex stream's output is found again in its input."""
    fs = card.device_samplerate
    total = int(2.0 * fs)
    recorded = np.zeros((total, CHANNELS), dtype=np.float32)
    # Shared with the audio callback: frames done so far, and the output
    # frame index of each click (set from this thread once the loopback is
    # wired, so no click is emitted into a not-yet-connected graph).
    state = {"pos": 0, "clicks": []}
    done = threading.Event()

    def callback(indata, outdata, frames, time_info, status):
        pos = state["pos"]
        outdata.fill(0)
        for click in state["clicks"]:
            if pos <= click < pos + frames:
                outdata[click - pos, :] = 0.5
        n = min(frames, total - pos)
        recorded[pos : pos + n] = indata[:n]
        state["pos"] = pos + frames
        if pos + frames >= total:
            done.set()
            raise sd.CallbackStop

    with sd.Stream(
        device=card.device_index(),
        channels=CHANNELS,
        samplerate=fs,
        blocksize=PERIOD,
        latency="low",
        dtype="float32",
        callback=callback,
    ) as stream:
        card.connect_loopback()
        # Five clicks 100 ms apart, starting 100 ms from now.
        first = state["pos"] + int(0.1 * fs)
        state["clicks"] = [first + k * int(0.1 * fs) for k in range(5)]
        assert state["clicks"][-1] + int(0.2 * fs) < total
        assert done.wait(10), "duplex stream did not run to its end in 10 s"
        reported = stream.latency

    latencies_ms = []
    for click in state["clicks"]:
        window = recorded[click : click + int(0.1 * fs), 0]
        hits = np.flatnonzero(np.abs(window) > 0.25)
        assert hits.size, f"click at frame {click} did not come back"
        latencies_ms.append(float(hits[0]) / fs * 1e3)
    print(
        f"\n[vsound] round trip: {[round(ms, 3) for ms in latencies_ms]} ms "
        f"({[round(ms * fs / 1e3) for ms in latencies_ms]} frames at {fs:g} Hz, "
        f"blocksize {PERIOD}); PortAudio reports (in, out) latency {reported} s"
    )
    # A sanity bound only: timing on a loaded CI machine is not ours to assert.
    assert max(latencies_ms) < 50


_CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from vsound import VirtualSoundCard
    card = VirtualSoundCard(server_name=sys.argv[2]).start()
    assert card.started
    print(card.pid, flush=True)
    time.sleep(60)
    """
)


# Linux <sys/prctl.h>: orphaned descendants are re-parented to us, not init.
_PR_SET_CHILD_SUBREAPER = 36


def test_jackd_dies_with_sigkilled_parent(card):
    """PR_SET_PDEATHSIG: a SIGKILLed test process takes its jackd with it."""
    # Its own server name, so the child starts a jackd of its own instead of
    # reusing the module's.  Fixed, not per-run: this jackd may die without
    # unregistering (see vsound._die_with_parent), and only a later server of
    # the same name frees its slot in JACK's 8-slot registry.
    server = "jupysynth-vsound-pdeathsig"
    env = dict(os.environ, JACK_DEFAULT_SERVER=server)
    libc = ctypes.CDLL(None, use_errno=True)
    # As subreaper we inherit the orphaned jackd and can reap it ourselves:
    # init here may leave it a zombie for seconds, and a zombie still holds
    # its registry entry, failing the next run's jackd of this name.
    assert libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(TESTS_DIR), server],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            line = child.stdout.readline()
            assert line.strip().isdigit(), f"child did not report a jackd pid: {line!r}"
            jackd_pid = int(line)
            assert _process_exists(jackd_pid)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(10)
            child.stdout.close()
        # jackd's orderly shutdown with a vanished client can take ~6 s.
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline:
            reaped, status = os.waitpid(jackd_pid, os.WNOHANG)
            if reaped:
                break
            time.sleep(0.05)
        else:
            os.kill(jackd_pid, signal.SIGKILL)
            os.waitpid(jackd_pid, 0)
            pytest.fail(f"orphaned jackd {jackd_pid} still ran 20 s after its parent died")
    finally:
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
    how = (
        f"exit status {os.WEXITSTATUS(status)}"
        if os.WIFEXITED(status)
        else f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    )
    print(f"\n[vsound] orphaned jackd {jackd_pid} ended ({how})")
    assert not _process_exists(jackd_pid)
    assert not VirtualSoundCard(server_name=server).is_server_running()


_STOP_CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    from vsound import VirtualSoundCard
    card = VirtualSoundCard(server_name=sys.argv[2]).start()
    pid = card.pid
    card.stop()
    card.stop()  # idempotent
    print(pid, card.pid, card.started, card.is_server_running(), flush=True)
    """
)


def test_stop_leaves_no_jackd(card):
    """After stop() the jackd a card started is gone, and stopping twice is harmless."""
    # A fixed server name of its own (see the SIGKILL test), in a child process:
    # the session card, which PortAudio here has open, must keep running.
    server = "jupysynth-vsound-stop"
    out = subprocess.run(
        [sys.executable, "-c", _STOP_CHILD, str(TESTS_DIR), server],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=dict(os.environ, JACK_DEFAULT_SERVER=server),
    )
    fields = out.stdout.split()
    assert len(fields) == 4, out.stdout + out.stderr
    pid, after, started, running = fields
    assert started == "True" and after == "None" and running == "False"
    assert not Path(f"/proc/{pid}").exists()
    pgrep = subprocess.run(["pgrep", "-x", "jackd"], capture_output=True, text=True, check=False)
    assert pid not in pgrep.stdout.split()
    assert not VirtualSoundCard(server_name=server).is_server_running()
