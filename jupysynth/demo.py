"""The demo: a short acid line with a pad, rendered from one patch and a list of note events.

``python -m jupysynth demo`` plays it live on the default sound device (or the
one given with ``--device``) and, where there is no device, renders it to
``demo.wav`` and ``demo.png`` instead.
"""

from __future__ import annotations

from pathlib import Path

from . import modules as m
from .graph import Module

BPM = 118.0
STEP = 60.0 / BPM / 4  # sixteenth notes
# an A-minor bass line: MIDI note per sixteenth, None for a rest
LINE = [45, 57, 45, 52, 55, None, 45, 57, 43, 55, 43, 50, 53, 55, 52, 48]
PAD = [(57, 60, 64), (55, 59, 62), (53, 57, 60), (52, 55, 59)]  # Am G F Em


def hz(note: int) -> float:
    return 440.0 * 2.0 ** ((note - 69) / 12.0)


def build(bars: int = 4) -> tuple[list[Module], list[tuple[float, Module, str, float]]]:
    """The patch and its note events.

    Returns
    -------
    outputs : list of Module
        The stereo mix to render.
    events : list
        ``(time, module, param, value)`` for every note on and off.
    """
    # the acid voice: two saws through a resonant low-pass whose cutoff follows
    # a filter envelope plus a slow LFO, into a VCA and a ping-pong-ish delay
    osc_a = m.Saw(freq=110, amp=0.35)
    osc_b = m.Pulse(freq=110, amp=0.2, width=0.35)
    fenv = m.ADSR(attack=0.003, decay=0.18, sustain=0.1, release=0.1)
    aenv = m.ADSR(attack=0.002, decay=0.25, sustain=0.6, release=0.08)
    sweep = m.LFO(freq=0.125, amp=500, offset=900)
    filt = m.LowPass(osc_a + osc_b, cutoff=sweep + 2600 * fenv, q=7)
    voice = m.Gain(filt, gain=aenv)
    echo = m.Delay(voice, time=STEP * 3, feedback=0.35, mix=0.3)
    lead = m.Pan(echo, pos=-0.25)

    # a soft pad: three detuned triangles through a band-pass, on the right
    pad_oscs = [m.Triangle(freq=220, amp=0.12) for _ in range(3)]
    pad_env = m.AR(attack=0.6, release=1.2)
    pad = m.Pan(m.LowPass(sum(pad_oscs[1:], pad_oscs[0]), cutoff=1800, q=0.8) * pad_env, pos=0.35)

    noise_hat = m.HighPass(m.Noise(amp=0.25, seed=3), cutoff=8000, q=1)
    hat_env = m.AR(attack=0.0005, release=0.03)
    hats = m.Gain(noise_hat, gain=hat_env)

    events: list[tuple[float, Module, str, float]] = []
    for bar in range(bars):
        for k, note in enumerate(LINE):
            t = (bar * 16 + k) * STEP
            if note is not None:
                events += [
                    (t, osc_a, "freq", hz(note)),
                    (t, osc_b, "freq", hz(note) * 1.003),
                    (t, fenv, "gate", 1.0),
                    (t, aenv, "gate", 1.0),
                    (t + STEP * 0.55, fenv, "gate", 0.0),
                    (t + STEP * 0.55, aenv, "gate", 0.0),
                ]
            if k % 2 == 0:
                events += [(t, hat_env, "gate", 1.0), (t + 0.01, hat_env, "gate", 0.0)]
        chord = PAD[bar % len(PAD)]
        t0 = bar * 16 * STEP
        events += [
            (t0, osc, "freq", hz(n) * (1 + 0.002 * i))
            for i, (osc, n) in enumerate(zip(pad_oscs, chord))
        ]
        events += [(t0, pad_env, "gate", 1.0), (t0 + 12 * STEP, pad_env, "gate", 0.0)]
    return [lead, pad, hats], events


def seconds(bars: int = 4) -> float:
    return bars * 16 * STEP + 1.5


def render_demo(directory: str | Path = ".", bars: int = 4) -> tuple[Path, Path]:
    """Render the demo to ``demo.wav`` and a waveform + spectrogram ``demo.png``."""
    from .plotting import plot
    from .renderer import render, write_wav

    out = Path(directory)
    outputs, events = build(bars)
    x = render(outputs, seconds(bars), events=events)
    wav = write_wav(out / "demo.wav", x)
    png = out / "demo.png"
    plot(x, path=png, title="jupysynth demo: acid line, pad and hats")
    return wav, png


def play_demo(device: int | str | None = None, bars: int = 4) -> dict | None:
    """Play the demo live: the patch on the engine, every note a time-tagged bundle.

    Returns
    -------
    dict or None
        The engine's status after playing, or None when there is no output
        device (the engine would only run headless): then nothing was played.
    """
    import time

    from .player import Engine, play

    outputs, events = build(bars)
    with Engine(device=device) as engine:
        if engine.info.get("headless"):
            return None
        t0 = time.time() + 0.5  # time to send every bundle before the first note
        play(outputs, engine, at=t0)
        for t, module, name, value in sorted(events, key=lambda e: e[0]):
            engine.send_bundle([("/param/set", module.id, name, float(value))], at=t0 + t)
        time.sleep(max(0.0, t0 + seconds(bars) - time.time()))
        return engine.status()
