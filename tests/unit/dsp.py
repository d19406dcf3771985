"""Measurement helpers for the DSP tests: frequency, SNR, steady-state gain."""

from __future__ import annotations

import numpy as np

SR = 48000


def measure_freq(x: np.ndarray, nominal: float, sr: int = SR, seg: float = 0.05) -> float:
    """The frequency of the component near ``nominal``, to about a microhertz.

    Demodulates by ``nominal``, averages Hann-windowed segments (which rejects
    harmonics and aliases), and fits the drift of the segments' phase.
    """
    n = np.arange(x.size)
    z = x * np.exp(-2j * np.pi * nominal * n / sr)
    m = int(seg * sr)
    w = np.hanning(m)
    count = x.size // m
    phases = np.array([np.angle(np.sum(z[k * m : (k + 1) * m] * w)) for k in range(count)])
    phases = np.unwrap(phases)
    centres = (np.arange(count) * m + m / 2) / sr
    slope = np.polyfit(centres, phases, 1)[0]
    return nominal + slope / (2 * np.pi)


def cents(f: float, ref: float) -> float:
    return 1200.0 * np.log2(f / ref)


def snr_db(x: np.ndarray, freq: float, sr: int = SR) -> float:
    """SNR of a sinusoid: least-squares fit at ``freq`` (sin, cos, dc), residual as noise."""
    t = np.arange(x.size) / sr
    basis = np.stack(
        [np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t), np.ones_like(t)], 1
    )
    coef, *_ = np.linalg.lstsq(basis, x.astype(np.float64), rcond=None)
    fit = basis @ coef
    noise = x - fit
    return 10 * np.log10(np.sum(fit**2) / np.sum(noise**2))


def amplitude_at(x: np.ndarray, freq: float, sr: int = SR) -> float:
    """Amplitude of the sinusoid at ``freq`` in x (least squares)."""
    t = np.arange(x.size) / sr
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], 1)
    coef, *_ = np.linalg.lstsq(basis, x.astype(np.float64), rcond=None)
    return float(np.hypot(*coef))


def band_power(x: np.ndarray, lo: float, hi: float, sr: int = SR) -> float:
    """Mean power spectral density between lo and hi (Welch-like, Hann, 4096 points)."""
    m = 4096
    w = np.hanning(m)
    segs = [x[k : k + m] * w for k in range(0, x.size - m, m // 2)]
    psd = np.mean([np.abs(np.fft.rfft(s)) ** 2 for s in segs], axis=0)
    f = np.fft.rfftfreq(m, 1 / sr)
    sel = (f >= lo) & (f < hi)
    return float(psd[sel].mean())
