"""Live inline views of a signal: a triggered oscilloscope and a log-frequency spectrum.

A view is fed by a *source*: a callable returning the latest samples (mono
float32, newest last).  A kernel thread calls it about 30 times a second and
sends the new curve to the bqplot figure as a binary buffer, only while the
view is displayed somewhere (the front end counts its views), and stops for
good when the view is closed.

With no engine, :class:`OfflineSource` renders the module in the kernel with
the same renderer :func:`jupysynth.render` uses, paced by the wall clock and
following knob changes, so ``scope(osc)`` works on a machine with no sound card.

Examples
--------
>>> import jupysynth as js
>>> from jupysynth.notebook import scope, spectrum
>>> osc = js.Saw(freq=220, amp=0.5)
>>> view = scope(osc)          # displays a stable sawtooth
>>> view.close()
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import bqplot as bq
import ipywidgets as w
import numpy as np

from ..graph import Module, Port, as_outputs, snapshot

__all__ = [
    "OfflineSource",
    "Oscilloscope",
    "Spectrum",
    "scope",
    "spectrum",
    "spectrum_db",
    "trigger",
]

#: Frames a source keeps: a 4096-point spectrum, or a scope window plus the
#: longest period the trigger searches (20 Hz at 48 kHz = 2400 frames).
SOURCE_FRAMES = 8192

# A live source is any callable returning the newest mono samples.
Source = Callable[[], np.ndarray]

#: Called as ``tap_provider(patch) -> source or None``: the live-coding layer
#: installs one that returns the engine's scope tap for a patch it plays.
tap_provider: Callable[[Any], Source | None] | None = None


# -- the signal processing, pure functions ----------------------------------------------------


def trigger(
    x: np.ndarray, width: int, level: float = 0.0, hysteresis: float = 0.02
) -> tuple[np.ndarray, bool]:
    """The ``width`` samples that start at the latest rising crossing of ``level``.

    Like a scope's edge trigger: a periodic signal shows the same phase in
    every frame, so it stands still.  The crossing is found to a fraction of
    a sample and the frame is interpolated from there, so successive frames of
    a sine match to within interpolation error even when its period is not a
    whole number of samples.

    Parameters
    ----------
    x : numpy.ndarray
        Mono samples, newest last.
    width : int
        Frames to return.
    level : float, default 0.0
        The trigger level.
    hysteresis : float, default 0.02
        Fraction of the signal's peak it must fall below ``level`` before a
        crossing counts again, so noise on a slow edge does not retrigger.

    Returns
    -------
    frame : numpy.ndarray
        float32 ``(width,)``.
    triggered : bool
        False when no crossing was found (DC, silence, too short): the frame
        is then the newest ``width`` samples ("auto" mode).

    Examples
    --------
    >>> t = np.arange(4000) / 48000
    >>> a, ok = trigger(np.sin(2 * np.pi * 440 * t), 480)
    >>> b, _ = trigger(np.sin(2 * np.pi * 440 * (t + 0.0123)), 480)
    >>> ok, float(abs(a - b).max()) < 1e-3
    (True, True)
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"trigger() takes mono samples (n,), got shape {x.shape}")
    if width < 2:
        raise ValueError(f"width must be at least 2 frames, got {width}")
    n = x.size
    if n < width + 2:
        out = np.zeros(width, dtype=np.float32)
        out[width - n :] = x
        return out, False
    peak = float(np.max(np.abs(x - level)))
    if peak == 0.0:
        return x[-width:].astype(np.float32), False
    h = hysteresis * peak
    idx = np.arange(n)
    # the last index at or before i where the signal was armed (below level - h)
    # and where it was last above level + h: a crossing counts once re-armed
    armed = np.maximum.accumulate(np.where(x < level - h, idx, -1))
    fired = np.maximum.accumulate(np.where(x > level + h, idx, -1))
    last = n - width - 1  # a crossing at i needs samples up to i + width
    i = idx[:last]
    cross = (x[i] < level) & (x[i + 1] >= level) & (armed[i] > fired[i]) & (armed[i] >= 0)
    hits = np.flatnonzero(cross)
    if hits.size == 0:
        return x[-width:].astype(np.float32), False
    k = int(hits[-1])
    frac = (level - x[k]) / (x[k + 1] - x[k])
    pos = k + frac + np.arange(width)
    return np.interp(pos, idx, x).astype(np.float32), True


def spectrum_db(
    x: np.ndarray, samplerate: float, nfft: int = 4096, floor: float = -140.0
) -> tuple[np.ndarray, np.ndarray]:
    """Magnitude spectrum of the newest ``nfft`` samples in dB, 0 dB = a full-scale sine.

    Hann-windowed and scaled so a sine of amplitude ``a`` reads ``20 log10(a)``
    at its bin (a sine of amplitude 1 reads 0 dB).

    Parameters
    ----------
    x : numpy.ndarray
        Mono samples, newest last; zero-padded in front if shorter than ``nfft``.
    samplerate : float
        Sample rate in Hz.
    nfft : int, default 4096
        FFT length (a resolution of ``samplerate / nfft`` Hz per bin).
    floor : float, default -140.0
        The lowest dB value returned (silence).

    Returns
    -------
    freqs : numpy.ndarray
        Bin centres in Hz, without the DC bin (a log axis cannot show 0 Hz).
    db : numpy.ndarray
        Level per bin in dBFS, float32.

    Examples
    --------
    >>> t = np.arange(4096) / 48000
    >>> f, db = spectrum_db(0.5 * np.sin(2 * np.pi * 1500 * t), 48000)
    >>> round(float(f[np.argmax(db)])), round(float(db.max()))
    (1500, -6)
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"spectrum_db() takes mono samples (n,), got shape {x.shape}")
    seg = np.zeros(nfft)
    take = x[-nfft:]
    seg[nfft - take.size :] = take
    win = np.hanning(nfft)
    mag = np.abs(np.fft.rfft(seg * win)) * (2.0 / win.sum())
    db = 20.0 * np.log10(np.maximum(mag, 10.0 ** (floor / 20.0)))
    freqs = np.fft.rfftfreq(nfft, 1.0 / samplerate)
    return freqs[1:], db[1:].astype(np.float32)


# -- sources ----------------------------------------------------------------------------------


def _modules_of(patch: Module | Port | Iterable[Module | Port]) -> list[Module]:
    """Every module the outputs of ``patch`` depend on."""
    seen: dict[int, Module] = {}
    stack = [p.module for p in as_outputs(patch)]
    while stack:
        m = stack.pop()
        if m.id in seen:
            continue
        seen[m.id] = m
        stack.extend(port.module for _, port in m.sources())
        stack.extend(port.module for port in m.extra_sources())
    return list(seen.values())


class OfflineSource:
    """Render a patch in the kernel, paced by the wall clock, as a scope's source.

    Each call renders the frames that would have played since the previous
    call (at most :data:`SOURCE_FRAMES`) and returns the newest
    ``SOURCE_FRAMES`` samples, mono (the mean of left and right).  Parameter
    changes made in code or with knobs reach the renderer as they happen.

    Parameters
    ----------
    patch : Module or list of Module
        What to render.
    samplerate : int, default 48000
        Sample rate in Hz.
    blocksize : int, default 256
        Frames per render block.
    clock : callable, default time.monotonic
        Seconds; tests pass a fake clock.

    Examples
    --------
    >>> import jupysynth as js
    >>> src = OfflineSource(js.Sine(freq=440, amp=0.5))
    >>> x = src()
    >>> x.shape, round(float(x.max()), 2)
    ((8192,), 0.5)
    """

    def __init__(
        self,
        patch: Module | Port | Iterable[Module | Port],
        samplerate: int = 48000,
        blocksize: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from ..renderer import Renderer  # numba loads here, on the first scope

        self.patch = patch
        self.samplerate = samplerate
        self.blocksize = blocksize
        self.clock = clock
        self._lock = threading.Lock()
        nodes, outputs = snapshot(patch)
        self._renderer = Renderer(nodes, outputs, samplerate, blocksize)
        self._ring = np.zeros(SOURCE_FRAMES, dtype=np.float32)
        self._last: float | None = None
        self._watched: list[Module] = []
        self._watch()

    def _watch(self) -> None:
        for m in self._watched:
            m.unobserve(self._on_change)
        self._watched = _modules_of(self.patch)
        for m in self._watched:
            m.observe(self._on_change)

    def _on_change(self, module: Module, name: str, value: Any) -> None:
        with self._lock:
            if isinstance(value, Port):
                # a new connection may bring new modules: take a new snapshot
                self._renderer.update(*snapshot(self.patch))
                self._watch()
            else:
                self._renderer.set(module.id, name, float(value), ramp=True)

    def _advance(self, frames: int) -> None:
        ring = self._ring
        frames = min(frames, ring.size)
        ring[:-frames] = ring[frames:]
        pos = ring.size - frames
        while pos < ring.size:
            n = min(self.blocksize, ring.size - pos)
            block = self._renderer.process(n)
            ring[pos : pos + n] = block.mean(axis=1)
            pos += n

    def __call__(self) -> np.ndarray:
        """The newest :data:`SOURCE_FRAMES` samples, after rendering those now due."""
        with self._lock:
            now = self.clock()
            if self._last is None:
                due = self._ring.size
            else:
                due = int(round((now - self._last) * self.samplerate))
            if due > 0:
                self._advance(due)
                self._last = now if self._last is None else self._last + due / self.samplerate
                if now - self._last > 1.0:
                    self._last = now  # a long pause: do not render the gap
            return self._ring.copy()

    @property
    def faults(self) -> dict[int, str]:
        """Modules the renderer muted, with why."""
        return dict(self._renderer.faults)

    def close(self) -> None:
        """Stop following the patch's modules."""
        with self._lock:
            for m in self._watched:
                m.unobserve(self._on_change)
            self._watched = []


def source_for(patch: Module | Port | Iterable[Module | Port], samplerate: int = 48000) -> Source:
    """The best source for ``patch``: the engine's scope tap if it offers one, else offline.

    The live-coding layer (:mod:`jupysynth.notebook.live`) installs
    :data:`tap_provider`; without an engine, or for a patch the engine is not
    playing, the patch renders here.
    """
    if tap_provider is not None:
        tap = tap_provider(patch)
        if tap is not None:
            return tap
    return OfflineSource(patch, samplerate=samplerate)


# -- the views --------------------------------------------------------------------------------


class _LiveView(w.VBox):
    """A bqplot figure redrawn from a source by a kernel thread while it is displayed."""

    def __init__(self, source: Source, samplerate: float, fps: float, title: str) -> None:
        if not callable(source):
            raise TypeError(f"a scope source is a callable returning samples, not {source!r}")
        self.source = source
        self.samplerate = float(samplerate)
        self.period = 1.0 / fps
        self.frames_drawn = 0
        self.error: str | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False
        self._title = title
        self.figure = self._build_figure(title)
        super().__init__(children=[self.figure])
        self.add_class("jupysynth-scope")
        self.update()  # a first frame, so a static notebook shows something
        # the front end counts displayed views once this is a number
        self._view_count = 0
        self.observe(self._on_views, names="_view_count")

    def _build_figure(self, title: str) -> bq.Figure:
        raise NotImplementedError

    def draw(self, x: np.ndarray) -> None:
        raise NotImplementedError

    def update(self) -> None:
        """Fetch the newest samples and redraw once."""
        try:
            x = np.asarray(self.source(), dtype=np.float32)
            if x.ndim == 2:
                x = x.mean(axis=1)
            self.draw(x)
        except Exception as exc:  # noqa: BLE001 - shown in the figure, the kernel goes on
            self.error = f"{type(exc).__name__}: {exc}"
            self.figure.title = f"{self._title} \u2014 stopped: {self.error}"
            self._stop.set()
            return
        self.frames_drawn += 1

    # -- the refresh thread ----------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the refresh thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start redrawing about ``fps`` times a second (automatic while displayed)."""
        if self._closed or self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="jupysynth-scope", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop redrawing (automatic when no view of it is left)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(2.0)
        self._thread = None

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.update()
            next_at += self.period
            delay = next_at - time.monotonic()
            if delay < 0:
                next_at = time.monotonic()  # fell behind: skip frames, do not catch up
                delay = 0
            if self._stop.wait(delay):
                break

    def _on_views(self, change: dict) -> None:
        if (change["new"] or 0) > 0:
            self.start()
        else:
            self.stop()

    def close(self) -> None:
        """Stop the thread for good and close the figure."""
        if "figure" not in self.__dict__:  # refused in __init__: nothing was built
            return
        self._closed = True
        self.stop()
        closer = getattr(self.source, "close", None)
        if callable(closer):
            closer()
        for mark in self.figure.marks:
            mark.close()
        for axis in self.figure.axes:
            axis.close()
        self.figure.close()
        super().close()


class Oscilloscope(_LiveView):
    """A triggered oscilloscope: the newest ``window`` seconds from a rising zero crossing.

    Parameters
    ----------
    source : callable
        Returns the newest mono samples (see :func:`source_for`).
    samplerate : float, default 48000
        Of the source.
    window : float, default 0.02
        Seconds shown.
    fps : float, default 30
        Redraws per second while displayed.
    title : str
        Above the figure.
    ylim : float, default 1.0
        The y axis spans ``-ylim`` to ``ylim``.
    """

    def __init__(
        self,
        source: Source,
        samplerate: float = 48000,
        window: float = 0.02,
        fps: float = 30.0,
        title: str = "scope",
        ylim: float = 1.0,
    ) -> None:
        if not 0 < window <= 0.1:
            raise ValueError(f"window={window} s is out of range; use 0 to 0.1 s")
        self.width = max(2, int(round(window * samplerate)))
        self.ylim = ylim
        self.triggered = False
        self.samplerate = float(samplerate)
        super().__init__(source, samplerate, fps, title)

    def _build_figure(self, title: str) -> bq.Figure:
        xs = bq.LinearScale(min=0.0, max=1000.0 * self.width / self.samplerate)
        ys = bq.LinearScale(min=-self.ylim, max=self.ylim)
        t_ms = (np.arange(self.width) * (1000.0 / self.samplerate)).astype(np.float32)
        self.line = bq.Lines(
            x=t_ms,
            y=np.zeros(self.width, dtype=np.float32),
            scales={"x": xs, "y": ys},
            colors=["#1f5fa8"],
            stroke_width=1.5,
        )
        axes = [
            bq.Axis(scale=xs, side="bottom", label="ms", num_ticks=5),
            bq.Axis(scale=ys, side="left", num_ticks=5),
        ]
        return bq.Figure(
            marks=[self.line],
            axes=axes,
            title=title,
            animation_duration=0,
            fig_margin={"top": 40, "bottom": 40, "left": 50, "right": 20},
            layout=w.Layout(width="32em", height="220px"),
        )

    def draw(self, x: np.ndarray) -> None:
        frame, self.triggered = trigger(x, self.width)
        self.line.y = frame


class Spectrum(_LiveView):
    """A spectrum analyser: level in dB against frequency on a log axis.

    Parameters
    ----------
    source : callable
        Returns the newest mono samples.
    samplerate : float, default 48000
        Of the source.
    nfft : int, default 4096
        FFT length.
    fps : float, default 30
        Redraws per second while displayed.
    title : str
        Above the figure.
    floor : float, default -120
        The bottom of the dB axis.
    """

    def __init__(
        self,
        source: Source,
        samplerate: float = 48000,
        nfft: int = 4096,
        fps: float = 30.0,
        title: str = "spectrum",
        floor: float = -120.0,
    ) -> None:
        self.nfft = nfft
        self.floor = floor
        self.samplerate = float(samplerate)
        super().__init__(source, samplerate, fps, title)

    def _build_figure(self, title: str) -> bq.Figure:
        freqs = np.fft.rfftfreq(self.nfft, 1.0 / self.samplerate)[1:].astype(np.float32)
        xs = bq.LogScale(min=20.0, max=self.samplerate / 2)
        ys = bq.LinearScale(min=self.floor, max=6.0)
        self.line = bq.Lines(
            x=freqs,
            y=np.full(freqs.size, self.floor, dtype=np.float32),
            scales={"x": xs, "y": ys},
            colors=["#a8321f"],
            stroke_width=1.2,
        )
        axes = [
            bq.Axis(scale=xs, side="bottom", label="Hz"),
            bq.Axis(scale=ys, side="left", label="dB", num_ticks=6),
        ]
        return bq.Figure(
            marks=[self.line],
            axes=axes,
            title=title,
            animation_duration=0,
            fig_margin={"top": 40, "bottom": 40, "left": 50, "right": 20},
            layout=w.Layout(width="32em", height="220px"),
        )

    def draw(self, x: np.ndarray) -> None:
        _, db = spectrum_db(x, self.samplerate, self.nfft, floor=self.floor)
        self.line.y = db

    @property
    def peak(self) -> float:
        """Frequency in Hz of the loudest bin in the last frame drawn."""
        return float(self.line.x[int(np.argmax(self.line.y))])


def _title(patch: Any, kind: str) -> str:
    if isinstance(patch, Module):
        return f"{kind}: {patch._short()}"
    return kind


def scope(
    patch: Module | Port | Iterable[Module | Port],
    window: float = 0.02,
    samplerate: int = 48000,
    fps: float = 30.0,
) -> Oscilloscope:
    """A live triggered oscilloscope of ``patch``.

    Parameters
    ----------
    patch : Module or list of Module
        What to look at.  If the engine plays it and offers scope taps, the
        view reads the engine; otherwise the patch renders in the kernel.
    window : float, default 0.02
        Seconds shown.
    samplerate : int, default 48000
        For the offline render.
    fps : float, default 30
        Redraws per second while displayed.

    Returns
    -------
    Oscilloscope
        An ipywidgets box holding the bqplot figure.

    Examples
    --------
    >>> import jupysynth as js
    >>> view = scope(js.Square(freq=110, amp=0.5))
    >>> view.triggered
    True
    >>> view.close()
    """
    src = source_for(patch, samplerate)
    rate = getattr(src, "samplerate", samplerate)
    return Oscilloscope(src, rate, window=window, fps=fps, title=_title(patch, "scope"))


def spectrum(
    patch: Module | Port | Iterable[Module | Port],
    nfft: int = 4096,
    samplerate: int = 48000,
    fps: float = 30.0,
) -> Spectrum:
    """A live log-frequency spectrum of ``patch`` in dB.

    Parameters
    ----------
    patch : Module or list of Module
        What to look at (engine tap or offline render, as for :func:`scope`).
    nfft : int, default 4096
        FFT length.
    samplerate : int, default 48000
        For the offline render.
    fps : float, default 30
        Redraws per second while displayed.

    Returns
    -------
    Spectrum

    Examples
    --------
    >>> import jupysynth as js
    >>> view = spectrum(js.Sine(freq=1000, amp=0.5))
    >>> abs(view.peak - 1000) < 48000 / 4096
    True
    >>> view.close()
    """
    src = source_for(patch, samplerate)
    rate = getattr(src, "samplerate", samplerate)
    return Spectrum(src, rate, nfft=nfft, fps=fps, title=_title(patch, "spectrum"))
