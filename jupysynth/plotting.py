"""Static views of rendered audio: waveform and spectrogram (matplotlib).

>>> import jupysynth as js
>>> x = js.render(js.Saw(freq=110, amp=0.3), 0.5)
>>> fig = js.plot(x)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def plot(
    samples: np.ndarray,
    samplerate: int = 48000,
    path: str | Path | None = None,
    title: str | None = None,
) -> Any:
    """Draw the waveform (left channel, or the mono signal) above its spectrogram.

    Parameters
    ----------
    samples : numpy.ndarray
        ``(frames,)`` or ``(frames, channels)``.
    samplerate : int
        Sample rate in Hz.
    path : str or Path, optional
        Save the figure there (PNG at 100 dpi) as well as returning it.
    title : str, optional
        A title above the waveform.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    x = np.asarray(samples, dtype=np.float32)
    mono = x if x.ndim == 1 else x[:, 0]
    t = np.arange(mono.size) / samplerate
    fig, (wave, spec) = plt.subplots(
        2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [1, 2]}
    )
    wave.plot(t, mono, linewidth=0.4, color="#1f5fa8")
    wave.set_ylabel("amplitude")
    wave.set_ylim(-1.05, 1.05)
    wave.grid(alpha=0.3)
    if title:
        wave.set_title(title)
    nfft = 2048 if mono.size >= 4096 else max(64, 2 ** int(np.log2(max(mono.size, 2)) - 1))
    spec.specgram(
        mono + 1e-12,
        NFFT=nfft,
        Fs=samplerate,
        noverlap=nfft * 3 // 4,
        cmap="magma",
        vmin=-140,
        scale="dB",
    )
    spec.set_yscale("symlog", linthresh=200)
    spec.set_ylim(20, samplerate / 2)
    spec.set_ylabel("frequency (Hz)")
    spec.set_xlabel("time (s)")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig
