"""Peer synthesizers for the jupysynth CPU benchmark.

This module renders the benchmark patches with four established synthesis
engines ("peers") so that jupysynth's CPU cost can be compared with theirs:

``pyo``
    Python module with a C DSP core (PyPI ``pyo``), offline server.
``signalflow``
    Python module with a C++ DSP core (PyPI ``signalflow``), dummy output.
``scsynth``
    SuperCollider's synthesis server in non-real-time (NRT) mode (Debian
    ``supercollider-server``), driven by an OSC score written here.
``csound``
    Csound (Debian ``csound``), driven by a ``.csd`` file written here.

``benchmarks/install_peers.sh`` installs them.  Every render is offline:
no sound card is opened and audio is computed as fast as possible into a
48 kHz mono 32-bit float WAV file.

Patches (``n`` voices, voice ``i`` in ``0..n-1`` at
``f_i = 110 * 2 ** (4 * i / n)`` Hz, each voice at amplitude ``1 / n``, all
voices summed):

``P1``
    One sine oscillator per voice.
``P2``
    One band-limited sawtooth per voice, each through its own 2-pole
    resonant low-pass filter (cutoff 1000 Hz, Q 2).
``P3``
    As ``P2``, but each filter's cutoff is
    ``1000 + 500 * sin(2 * pi * (0.5 * t + i / n))``, from a per-voice sine
    LFO running at audio rate and applied to the filter every sample.

Objects used for each peer (sine for P1 and the P3 LFO; band-limited saw;
2-pole low-pass), built by ``_pyo_worker``, ``_signalflow_worker``,
:func:`sc_synthdef` and :func:`csound_csd`:

pyo
    ``Sine``; ``LFO(type=0, sharp=1)`` (pyo's band-limited saw, a closed
    form with at most 50 harmonics); ``Biquad(type=0, q=2)`` (RBJ biquad).
signalflow
    ``SineOscillator``; ``Wavetable`` over a per-octave band-limited saw
    ``WavetableBuffer`` (its ``SawOscillator`` is not band-limited);
    ``SVFilter("low_pass", resonance=0.75)`` (trapezoidal SVF, Q 2).
scsynth
    ``SinOsc``; ``Saw``; ``BLowPass`` (RBJ biquad, ``rq = 0.5``), with
    ``MulAdd`` and ``DC`` in P3 and ``BinaryOpUGen('*')`` + ``Out``.
csound
    ``oscili`` (built-in sine, ``ifn = -1``); ``vco2`` (``imode 0``);
    ``zdf_2pole`` (mode 0: zero-delay-feedback 2-pole SVF low-pass, Q 2).

CPU cost is reported as CPU seconds consumed per second of audio, with the
peer's start-up and graph-building cost excluded:

* pyo and SignalFlow run in a fresh Python child process (one engine
  instance per process, crash isolation) which times only the render call
  with :func:`time.process_time`.
* scsynth and Csound are child processes; their CPU time is read with
  ``resource.getrusage(RUSAGE_CHILDREN)`` around a render of ``seconds`` and
  around a render of one block, and the difference is divided by the
  difference in rendered durations.

With ``repeats > 1`` the smallest CPU time of each kind of render is kept,
which damps the noise of other processes on the machine.  Signal levels
differ a little between peers (e.g. scsynth's ``Saw`` has about half the
amplitude of the others); only the CPU cost is compared.

Run ``python benchmarks/peers.py`` for a self-check of every installed peer.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import math
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PEERS: list[str] = ["pyo", "signalflow", "scsynth", "csound"]
"""Names of the peer synthesizers, in reporting order."""

PATCHES: tuple[str, ...] = ("P1", "P2", "P3")
"""Names of the benchmark patches."""

SAMPLE_RATE = 48000
CUTOFF_HZ = 1000.0
FILTER_Q = 2.0
LFO_HZ = 0.5
LFO_DEPTH_HZ = 500.0

_IN_PROCESS = ("pyo", "signalflow")
_RESULT_TAG = "__PEERS_RESULT__"


class PeerError(RuntimeError):
    """A peer is installed but failed to render a patch."""


# --------------------------------------------------------------------------
# Patch definition
# --------------------------------------------------------------------------


def voice_frequencies(n: int) -> list[float]:
    """Return the oscillator frequency of every voice.

    Parameters
    ----------
    n : int
        Number of voices.

    Returns
    -------
    list of float
        ``110 * 2 ** (4 * i / n)`` Hz for ``i`` in ``0..n-1`` (four octaves
        upwards from 110 Hz).
    """
    return [110.0 * 2.0 ** (4.0 * i / n) for i in range(n)]


def lfo_phase(i: int, n: int) -> float:
    """Return the start phase of voice ``i``'s LFO, in cycles (0..1)."""
    return i / n


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


def available(peer: str) -> bool:
    """Tell whether a peer is installed.

    Parameters
    ----------
    peer : str
        One of :data:`PEERS`.

    Returns
    -------
    bool
        True if the Python package is importable (pyo, signalflow) or the
        executable is on ``PATH`` (scsynth, csound).
    """
    _check_peer(peer)
    if peer in _IN_PROCESS:
        return importlib.util.find_spec(peer) is not None
    return shutil.which(peer) is not None


def version(peer: str) -> str | None:
    """Return the installed version of a peer, or None if unavailable.

    Parameters
    ----------
    peer : str
        One of :data:`PEERS`.

    Returns
    -------
    str or None
        Version string as reported by the package metadata or the program.
    """
    if not available(peer):
        return None
    if peer in _IN_PROCESS:
        return importlib.metadata.version(peer)
    try:
        proc = subprocess.run(
            [peer, "-v" if peer == "scsynth" else "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    for line in (proc.stdout + proc.stderr).splitlines():
        if "version" in line.lower() or line.startswith("scsynth"):
            return line.strip(" -")
    return "unknown"


def measure(
    peer: str,
    patch: str,
    n: int,
    blocksize: int,
    seconds: float,
    *,
    repeats: int | None = None,
    outdir: str | os.PathLike[str] | None = None,
) -> float | None:
    """Render a patch offline with a peer and return its CPU cost.

    Parameters
    ----------
    peer : str
        One of :data:`PEERS`.
    patch : str
        One of :data:`PATCHES`.
    n : int
        Number of voices.
    blocksize : int
        Processing block size in samples (pyo ``buffersize``, SignalFlow
        output buffer size, scsynth ``-z``, Csound ``ksmps``).
    seconds : float
        Duration of audio to render, in seconds at 48 kHz.
    repeats : int, optional
        Number of renders; the smallest CPU time is kept.  By default
        renders are repeated until they have used 1 s of CPU in all, at
        most 5 times: cheap (small ``n``) measurements are repeated, so
        start-up noise and other load on the machine matter less, while
        expensive ones run once.
    outdir : path-like, optional
        Directory in which to keep the rendered WAV file, named
        ``{peer}_{patch}_n{n}_b{blocksize}.wav``.  By default it is written
        to a temporary directory and deleted.

    Returns
    -------
    float or None
        CPU seconds consumed per second of rendered audio, start-up and
        graph building excluded; None if the peer is not installed.  The
        divisor is the duration actually written, which peers round up to a
        whole number of blocks (e.g. 1.003 s for 1 s at 256-sample blocks).
        A cost below the resolution of the start-up subtraction (scsynth,
        Csound; a few ms of CPU in all) can come out as 0.0.

    Raises
    ------
    PeerError
        If the peer is installed but the render fails.
    ValueError
        If an argument is out of range.
    """
    _check_peer(peer)
    if patch not in PATCHES:
        raise ValueError(f"unknown patch {patch!r}; expected one of {PATCHES}")
    if n < 1 or blocksize < 1 or seconds <= 0 or (repeats is not None and repeats < 1):
        raise ValueError("n, blocksize, seconds and repeats must be positive")
    if not available(peer):
        return None
    with tempfile.TemporaryDirectory(prefix=f"peers-{peer}-") as tmp:
        work = Path(tmp)
        wav = Path(outdir or tmp) / f"{peer}_{patch}_n{n}_b{blocksize}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        if peer in _IN_PROCESS:
            cpu = _run_worker(peer, patch, n, blocksize, seconds, wav, repeats)
            return cpu / _audio_seconds(wav)
        short = blocksize / SAMPLE_RATE
        if seconds <= 2 * short:
            raise ValueError(f"seconds must exceed two blocks ({2 * short:.6f} s)")
        runner = _run_scsynth if peer == "scsynth" else _run_csound
        short_wav = work / "short.wav"
        short_cpu, long_cpu = [], []
        while not _enough(long_cpu, repeats):
            short_cpu.append(runner(patch, n, blocksize, short, short_wav, work))
            long_cpu.append(runner(patch, n, blocksize, seconds, wav, work))
        cpu = min(long_cpu) - min(short_cpu)
        return max(0.0, cpu / (_audio_seconds(wav) - _audio_seconds(short_wav)))


def read_wav(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Read a PCM or IEEE-float WAV file.

    Parameters
    ----------
    path : path-like
        WAV file (16/24/32-bit integer or 32/64-bit float, any channels).

    Returns
    -------
    samples : numpy.ndarray
        Float64 array of shape ``(frames, channels)``, full scale 1.0.
    sample_rate : int
        Sample rate in Hz.
    """
    data = Path(path).read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a RIFF/WAVE file")
    pos, fmt, raw = 12, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = data[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            fmt = body
        elif cid == b"data":
            raw = body
        pos += 8 + size + (size & 1)
    if fmt is None or raw is None:
        raise ValueError(f"{path}: missing fmt or data chunk")
    tag, channels, rate = struct.unpack("<HHI", fmt[:8])
    bits = struct.unpack("<H", fmt[14:16])[0]
    if tag == 0xFFFE:  # WAVE_FORMAT_EXTENSIBLE: real tag opens the GUID
        tag = struct.unpack("<H", fmt[24:26])[0]
    if tag == 3:
        x = np.frombuffer(raw, dtype=f"<f{bits // 8}").astype(np.float64)
    elif tag == 1 and bits == 24:
        b = np.frombuffer(raw[: len(raw) // 3 * 3], dtype=np.uint8).reshape(-1, 3)
        ints = (
            b[:, 0].astype(np.int32)
            | (b[:, 1].astype(np.int32) << 8)
            | (b[:, 2].astype(np.int8).astype(np.int32) << 16)
        )
        x = ints / 2.0**23
    elif tag == 1 and bits in (16, 32):
        x = np.frombuffer(raw, dtype=f"<i{bits // 8}") / 2.0 ** (bits - 1)
    else:
        raise ValueError(f"{path}: unsupported WAV format (tag {tag}, {bits} bits)")
    return x[: len(x) // channels * channels].reshape(-1, channels), rate


def write_wav(
    path: str | os.PathLike[str], samples: np.ndarray, sample_rate: int = SAMPLE_RATE
) -> None:
    """Write a 32-bit IEEE-float WAV file.

    Parameters
    ----------
    path : path-like
        Output file.
    samples : numpy.ndarray
        Array of shape ``(frames,)`` or ``(frames, channels)``.
    sample_rate : int, optional
        Sample rate in Hz (default 48000).
    """
    x = np.asarray(samples, dtype="<f4")
    x = x.reshape(len(x), -1)
    channels = x.shape[1]
    data = x.tobytes()
    fmt = struct.pack(
        "<HHIIHH", 3, channels, sample_rate, sample_rate * 4 * channels, 4 * channels, 32
    )
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )
    Path(path).write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


# --------------------------------------------------------------------------
# In-process peers (run inside a fresh Python child process)
# --------------------------------------------------------------------------


def _run_worker(
    peer: str, patch: str, n: int, blocksize: int, seconds: float, wav: Path, repeats: int | None
) -> float:
    """Render in a child Python process; return the render call's smallest CPU time.

    The child builds the graph once and renders ``seconds`` as often as
    :func:`_enough` says, timing each render call alone.
    """
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        peer,
        patch,
        str(n),
        str(blocksize),
        repr(seconds),
        str(wav),
        "auto" if repeats is None else str(repeats),
    ]
    env = dict(os.environ, PYO_GUI_WX="0")  # no wxPython probe/banner in pyo
    proc = _run(cmd, seconds, n, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith(_RESULT_TAG):
            return float(json.loads(line[len(_RESULT_TAG) :])["cpu"])
    raise PeerError(f"{peer} worker printed no result:\n{_tail(proc)}")


def _pyo_worker(
    patch: str, n: int, blocksize: int, seconds: float, wav: str, repeats: int | None
) -> float:
    """Render a patch with pyo's offline server; return the best render CPU time.

    Objects: ``Sine`` (P1; P3's LFO with ``mul=500, add=1000``), ``LFO``
    with ``type=0`` (saw up) and ``sharp=1`` - pyo's band-limited saw
    (closed-form, at most 50 harmonics) - and ``Biquad(type=0)``, the RBJ
    2-pole low-pass, whose coefficients pyo recomputes every sample when
    ``freq`` is an audio stream (P3).  Voices are summed with ``.out()``.
    """
    import pyo

    server = pyo.Server(sr=SAMPLE_RATE, nchnls=1, buffersize=blocksize, duplex=0, audio="offline")
    server.setVerbosity(0)
    server.boot()
    # fileformat 0 = WAV, sampletype 3 = 32-bit float
    server.recordOptions(dur=seconds, filename=wav, fileformat=0, sampletype=3)
    keep = []
    for i, freq in enumerate(voice_frequencies(n)):
        if patch == "P1":
            voice = pyo.Sine(freq=freq, mul=1.0 / n)
        else:
            saw = pyo.LFO(freq=freq, sharp=1.0, type=0)
            if patch == "P2":
                cutoff = CUTOFF_HZ
            else:
                cutoff = pyo.Sine(
                    freq=LFO_HZ, phase=lfo_phase(i, n), mul=LFO_DEPTH_HZ, add=CUTOFF_HZ
                )
                keep.append(cutoff)
            voice = pyo.Biquad(saw, freq=cutoff, q=FILTER_Q, type=0, mul=1.0 / n)
            keep.append(saw)
        keep.append(voice.out())

    def render_once() -> float:
        t0 = time.process_time()
        server.start()  # offline: blocks until `seconds` have been rendered
        return time.process_time() - t0

    cpu = _best_of(render_once, repeats)
    server.shutdown()
    return cpu


def _signalflow_saw_tables(sf, n: int) -> dict[int, object]:
    """Build one band-limited saw wavetable per octave used by the voices.

    The table for octave ``k`` (voices from ``110 * 2**k`` to
    ``110 * 2**(k+1)`` Hz) holds every harmonic below the Nyquist frequency
    of that octave's highest note, so no voice aliases.
    """
    length = 2048
    phase = 2.0 * np.pi * np.arange(length) / length
    tables = {}
    for freq in voice_frequencies(n):
        octave = int(math.floor(math.log2(freq / 110.0) + 1e-9))
        if octave in tables:
            continue
        harmonics = int((SAMPLE_RATE / 2) // (110.0 * 2.0 ** (octave + 1)))
        k = np.arange(1, harmonics + 1)[:, None]
        saw = (2.0 / np.pi) * np.sum((-1.0) ** (k + 1) / k * np.sin(k * phase), axis=0)
        tables[octave] = sf.WavetableBuffer(saw.astype(np.float32).tolist())
    return tables


def _signalflow_worker(
    patch: str, n: int, blocksize: int, seconds: float, wav: str, repeats: int | None
) -> float:
    """Render a patch with SignalFlow on a dummy output; return the best render CPU time.

    Nodes: ``SineOscillator`` (P1; P3's LFO, ``* 500 + 1000``), for the saw
    ``Wavetable`` reading a per-octave band-limited saw ``WavetableBuffer``
    (SignalFlow's ``SawOscillator`` is documented as not band-limited), and
    ``SVFilter("low_pass")`` (Cytomic trapezoidal SVF, ``k = 2 - 2 *
    resonance``, so resonance 0.75 is Q 2; coefficients are recomputed every
    sample).  Each voice ``* (1/n)`` is played into the output, which sums
    them.  ``AudioGraph.render_to_buffer`` renders in blocks of
    ``blocksize`` frames inside C++.
    """
    import signalflow as sf

    graph = sf.AudioGraph(output_device=sf.AudioOut_Dummy(1, SAMPLE_RATE, blocksize), start=False)
    tables = _signalflow_saw_tables(sf, n) if patch != "P1" else {}
    resonance = 1.0 - 1.0 / (2.0 * FILTER_Q)
    for i, freq in enumerate(voice_frequencies(n)):
        if patch == "P1":
            voice = sf.SineOscillator(freq)
        else:
            octave = int(math.floor(math.log2(freq / 110.0) + 1e-9))
            saw = sf.Wavetable(tables[octave], freq)
            if patch == "P2":
                cutoff = CUTOFF_HZ
            else:
                lfo = sf.SineOscillator(LFO_HZ, 2.0 * math.pi * lfo_phase(i, n))
                cutoff = lfo * LFO_DEPTH_HZ + CUTOFF_HZ
            voice = sf.SVFilter(saw, "low_pass", cutoff, resonance)
        graph.play(voice * (1.0 / n))
    buf = sf.Buffer(1, int(round(seconds * SAMPLE_RATE)))

    def render_once() -> float:
        t0 = time.process_time()
        graph.render_to_buffer(buf)
        return time.process_time() - t0

    cpu = _best_of(render_once, repeats)
    write_wav(wav, np.asarray(buf.data).T)  # Buffer.save writes 16-bit PCM
    graph.destroy()
    return cpu


_WORKERS = {"pyo": _pyo_worker, "signalflow": _signalflow_worker}


# --------------------------------------------------------------------------
# scsynth (NRT)
# --------------------------------------------------------------------------

_SC_CONTROL, _SC_AUDIO = 1, 2  # UGen calculation rates in a SynthDef


class _SynthDefBuilder:
    """Minimal writer of SuperCollider SynthDef files (``SCgf`` version 2).

    UGens must be added in dependency order.  An input is either a number
    (stored as a constant) or the ``(ugen_index, output_index)`` pair
    returned by :meth:`ugen` / :meth:`param`.
    """

    def __init__(self, name: str, params: dict[str, float]) -> None:
        self.name = name
        self.params = params
        self.constants: list[float] = []
        self.ugens: list[tuple[str, int, list, int, int]] = []
        self.ugen("Control", _SC_CONTROL, [], n_outputs=len(params))

    def param(self, name: str) -> tuple[int, int]:
        """Return the input reference of a named synth parameter."""
        return (0, list(self.params).index(name))

    def ugen(
        self, cls: str, rate: int, inputs: list, n_outputs: int = 1, special: int = 0
    ) -> tuple[int, int]:
        """Append a UGen and return a reference to its first output."""
        self.ugens.append((cls, rate, inputs, n_outputs, special))
        return (len(self.ugens) - 1, 0)

    def _input(self, value) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        value = float(value)
        if value not in self.constants:
            self.constants.append(value)
        return (-1, self.constants.index(value))

    def encode(self) -> bytes:
        """Return the SynthDef file (one definition) as bytes."""

        def pstr(s: str) -> bytes:
            return struct.pack(">B", len(s)) + s.encode()

        ugens = b""
        for cls, rate, inputs, n_outputs, special in self.ugens:
            refs = [self._input(v) for v in inputs]  # registers constants
            ugens += pstr(cls) + struct.pack(">biih", rate, len(refs), n_outputs, special)
            ugens += b"".join(struct.pack(">ii", *r) for r in refs)
            ugens += struct.pack(f">{n_outputs}b", *([rate] * n_outputs))
        out = b"SCgf" + struct.pack(">ih", 2, 1) + pstr(self.name)
        out += struct.pack(f">i{len(self.constants)}f", len(self.constants), *self.constants)
        out += struct.pack(f">i{len(self.params)}f", len(self.params), *self.params.values())
        out += struct.pack(">i", len(self.params))
        out += b"".join(pstr(p) + struct.pack(">i", j) for j, p in enumerate(self.params))
        out += struct.pack(">i", len(self.ugens)) + ugens
        return out + struct.pack(">h", 0)  # no variants


def sc_synthdef(patch: str) -> bytes:
    """Build the scsynth SynthDef of one voice of a patch.

    UGens: P1 ``SinOsc.ar(freq) * amp``; P2 ``BLowPass.ar(Saw.ar(freq),
    1000, 0.5) * amp`` (``Saw`` is band-limited; ``BLowPass`` is the RBJ
    2-pole low-pass, ``rq = 1/Q``); P3 as P2 with ``freq =
    MulAdd(SinOsc.ar(0.5, phase), 500, 1000)`` and ``rq = DC.ar(0.5)``:
    ``BLowPass`` recomputes its coefficients every sample only when both
    ``freq`` and ``rq`` are audio rate.  Output: ``Out.ar(0, ...)``.

    Parameters
    ----------
    patch : str
        One of :data:`PATCHES`.

    Returns
    -------
    bytes
        SynthDef file contents (``SCgf`` v2), defining ``jsbench_<patch>``.
    """
    d = _SynthDefBuilder(f"jsbench_{patch}", {"freq": 440.0, "phase": 0.0, "amp": 0.1})
    freq, amp = d.param("freq"), d.param("amp")
    if patch == "P1":
        sig = d.ugen("SinOsc", _SC_AUDIO, [freq, 0.0])
    else:
        saw = d.ugen("Saw", _SC_AUDIO, [freq])
        if patch == "P2":
            cutoff, rq = CUTOFF_HZ, 1.0 / FILTER_Q
        else:
            lfo = d.ugen("SinOsc", _SC_AUDIO, [LFO_HZ, d.param("phase")])
            cutoff = d.ugen("MulAdd", _SC_AUDIO, [lfo, LFO_DEPTH_HZ, CUTOFF_HZ])
            rq = d.ugen("DC", _SC_AUDIO, [1.0 / FILTER_Q])
        sig = d.ugen("BLowPass", _SC_AUDIO, [saw, cutoff, rq])
    sig = d.ugen("BinaryOpUGen", _SC_AUDIO, [sig, amp], special=2)  # 2 = '*'
    d.ugen("Out", _SC_AUDIO, [0.0, sig], n_outputs=0)
    return d.encode()


def _osc_message(address: str, *args) -> bytes:
    """Encode an OSC message (int, float, str and bytes arguments)."""

    def pad(b: bytes) -> bytes:
        return b + b"\0" * (4 - len(b) % 4)

    tags, payload = ",", b""
    for a in args:
        if isinstance(a, bool) or not isinstance(a, (int, float, str, bytes)):
            raise TypeError(f"unsupported OSC argument {a!r}")
        if isinstance(a, int):
            tags, payload = tags + "i", payload + struct.pack(">i", a)
        elif isinstance(a, float):
            tags, payload = tags + "f", payload + struct.pack(">f", a)
        elif isinstance(a, str):
            tags, payload = tags + "s", payload + pad(a.encode())
        else:
            blob = a + b"\0" * (-len(a) % 4)
            tags, payload = tags + "b", payload + struct.pack(">i", len(a)) + blob
    return pad(address.encode()) + pad(tags.encode()) + payload


def _osc_bundle(seconds: float, messages: list[bytes]) -> bytes:
    """Encode an OSC bundle whose NTP time tag is ``seconds`` from zero."""
    timetag = int(round(seconds * 2**32))
    body = b"#bundle\0" + struct.pack(">Q", timetag)
    return body + b"".join(struct.pack(">i", len(m)) + m for m in messages)


def sc_score(patch: str, n: int, seconds: float) -> bytes:
    """Build the scsynth NRT score (binary OSC command file).

    At time 0: ``/d_recv`` of :func:`sc_synthdef` and one ``/s_new`` per
    voice (at the tail of the root node); at ``seconds``: a dummy
    ``/c_set`` that ends the render.
    """
    msgs = [_osc_message("/d_recv", sc_synthdef(patch))]
    for i, freq in enumerate(voice_frequencies(n)):
        controls = {"freq": freq, "phase": 2.0 * math.pi * lfo_phase(i, n), "amp": 1.0 / n}
        pairs = [x for name, value in controls.items() for x in (name, float(value))]
        # node ID 1000 + i, add action 1 (tail) of target 0 (the root group)
        msgs.append(_osc_message("/s_new", f"jsbench_{patch}", 1000 + i, 1, 0, *pairs))
    bundles = [_osc_bundle(0.0, msgs), _osc_bundle(seconds, [_osc_message("/c_set", 0, 0.0)])]
    return b"".join(struct.pack(">i", len(b)) + b for b in bundles)


def _run_scsynth(
    patch: str, n: int, blocksize: int, seconds: float, wav: Path, work: Path
) -> float:
    """Render with ``scsynth -N``; return the child's CPU seconds."""
    score = work / f"score_{patch}.osc"
    score.write_bytes(sc_score(patch, n, seconds))
    options = {
        "-z": blocksize,  # block size
        "-o": 1,  # output channels
        "-i": 0,  # input channels
        "-n": max(1024, 2 * n + 64),  # max nodes
        "-m": max(65536, 64 * n),  # real-time memory pool, KiB
        "-D": 0,  # do not load SynthDefs from disk
    }
    cmd = ["scsynth", *(str(x) for item in options.items() for x in item)]
    cmd += ["-N", str(score), "_", str(wav), str(SAMPLE_RATE), "WAV", "float"]
    return _child_cpu(cmd, seconds, n, wav)


# --------------------------------------------------------------------------
# Csound
# --------------------------------------------------------------------------

_CSOUND_ORC = """\
sr = {sr}
ksmps = {ksmps}
nchnls = 1
0dbfs = 1

instr 1 ; P1: p4 amp, p5 freq
  aout oscili p4, p5
  out aout
endin

instr 2 ; P2: band-limited saw -> 2-pole ZDF state-variable low-pass
  asaw vco2 p4, p5
  aout zdf_2pole asaw, {cutoff}, {q}, 0
  out aout
endin

instr 3 ; P3: as P2, cutoff from an a-rate sine LFO, p6 = LFO phase (cycles)
  alfo oscili {depth}, {lfo_hz}, -1, p6
  asaw vco2 p4, p5
  aout zdf_2pole asaw, alfo + {cutoff}, {q}, 0
  out aout
endin
"""


def csound_csd(patch: str, n: int, blocksize: int, seconds: float) -> str:
    """Build the Csound ``.csd`` for a patch.

    Opcodes: ``oscili`` with the built-in sine table (``ifn = -1``), ``vco2``
    (``imode 0``: band-limited saw from pre-computed band-limited tables),
    ``zdf_2pole`` (mode 0: zero-delay-feedback 2-pole state-variable
    low-pass with Q; with an a-rate cutoff it is recomputed every sample)
    and ``out``; one score event (instrument instance) per voice.
    ``ksmps`` is ``blocksize``.
    """
    orc = _CSOUND_ORC.format(
        sr=SAMPLE_RATE,
        ksmps=blocksize,
        cutoff=CUTOFF_HZ,
        q=FILTER_Q,
        depth=LFO_DEPTH_HZ,
        lfo_hz=LFO_HZ,
    )
    instr = PATCHES.index(patch) + 1
    events = "\n".join(
        f"i {instr} 0 {seconds!r} {1.0 / n!r} {freq!r} {lfo_phase(i, n)!r}"
        for i, freq in enumerate(voice_frequencies(n))
    )
    return (
        f"<CsoundSynthesizer>\n<CsInstruments>\n{orc}</CsInstruments>\n"
        f"<CsScore>\n{events}\ne\n</CsScore>\n</CsoundSynthesizer>\n"
    )


def _run_csound(patch: str, n: int, blocksize: int, seconds: float, wav: Path, work: Path) -> float:
    """Render with ``csound -o file.wav``; return the child's CPU seconds."""
    csd = work / f"{patch}.csd"
    csd.write_text(csound_csd(patch, n, blocksize, seconds))
    cmd = ["csound", "-d", "-m0", "--nodisplays", "-W", "-f", "-o", str(wav), str(csd)]
    return _child_cpu(cmd, seconds, n, wav)


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


_AUTO_CPU_BUDGET = 1.0
_AUTO_MAX_REPEATS = 5


def _enough(cpu_times: list[float], repeats: int | None) -> bool:
    """Tell whether enough renders (with these CPU times) have been done."""
    if repeats is not None:
        return len(cpu_times) >= repeats
    return len(cpu_times) >= _AUTO_MAX_REPEATS or sum(cpu_times) >= _AUTO_CPU_BUDGET


def _best_of(render_once, repeats: int | None) -> float:
    """Call ``render_once()`` (returns CPU seconds) as :func:`_enough` says; return the min."""
    cpu_times: list[float] = []
    while not _enough(cpu_times, repeats):
        cpu_times.append(render_once())
    return min(cpu_times)


def _audio_seconds(wav: Path) -> float:
    """Return the duration of a rendered file (renders end on a whole block)."""
    samples, rate = read_wav(wav)
    return len(samples) / rate


def _check_peer(peer: str) -> None:
    if peer not in PEERS:
        raise ValueError(f"unknown peer {peer!r}; expected one of {PEERS}")


def _tail(proc: subprocess.CompletedProcess, lines: int = 15) -> str:
    text = (proc.stdout or "") + (proc.stderr or "")
    return "\n".join(text.splitlines()[-lines:])


def _run(
    cmd: list[str], seconds: float, n: int, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run a render command, raising :class:`PeerError` on failure."""
    timeout = 120.0 + 2.0 * seconds * max(1.0, n / 16.0)
    try:
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired as exc:
        raise PeerError(f"timed out after {timeout:.0f} s: {' '.join(cmd)}") from exc
    if proc.returncode != 0:
        raise PeerError(f"exit code {proc.returncode}: {' '.join(cmd)}\n{_tail(proc)}")
    return proc


def _child_cpu(cmd: list[str], seconds: float, n: int, wav: Path) -> float:
    """Run a command writing ``wav``; return the user+system CPU it consumed."""
    wav.unlink(missing_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = _run(cmd, seconds, n)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if not wav.exists():
        raise PeerError(f"no output file written: {' '.join(cmd)}\n{_tail(proc)}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


# --------------------------------------------------------------------------
# Self-check
# --------------------------------------------------------------------------


def self_check(
    n: int = 16,
    blocksize: int = 64,
    seconds: float = 1.0,
    patches: tuple[str, ...] = PATCHES,
    peers: list[str] | None = None,
    repeats: int | None = None,
    keep: str | None = None,
) -> int:
    """Render every patch with every installed peer and print a table.

    Parameters
    ----------
    n, blocksize, seconds, repeats
        As for :func:`measure`.
    patches : tuple of str, optional
        Patches to render.
    peers : list of str, optional
        Peers to try (default :data:`PEERS`).
    keep : str, optional
        Directory in which to keep the WAV files (default: a temporary one).

    Returns
    -------
    int
        0 if every available peer rendered non-silent audio of the right
        length, 1 otherwise.
    """
    failures = 0
    with tempfile.TemporaryDirectory(prefix="peers-check-") as tmp:
        outdir = Path(keep or tmp)
        print(
            f"{'peer':<11}{'patch':<6}{'N':>6}{'block':>6}"
            f"{'CPU s/s':>10}{'RMS':>9}{'audio s':>9}  version"
        )
        for peer in peers or PEERS:
            ver = version(peer)
            if ver is None:
                print(f"{peer:<11}not installed (run benchmarks/install_peers.sh)")
                continue
            for patch in patches:
                head = f"{peer:<11}{patch:<6}{n:>6}{blocksize:>6}"
                try:
                    cpu = measure(
                        peer, patch, n, blocksize, seconds, repeats=repeats, outdir=outdir
                    )
                    x, rate = read_wav(outdir / f"{peer}_{patch}_n{n}_b{blocksize}.wav")
                except (PeerError, ValueError, OSError) as exc:
                    failures += 1
                    print(f"{head}  FAILED: {exc}")
                    continue
                rms = float(np.sqrt(np.mean(x**2))) if x.size else 0.0
                dur = len(x) / rate
                ok = rms > 1e-3 and rate == SAMPLE_RATE and abs(dur - seconds) < 0.05
                failures += not ok
                print(
                    f"{head}{cpu:>10.4f}{rms:>9.4f}{dur:>9.3f}  {ver}"
                    + ("" if ok else "  <-- CHECK FAILED")
                )
    return 1 if failures else 0


def _main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        peer, patch, n, blocksize, seconds, wav, repeats = argv[1:8]
        reps = None if repeats == "auto" else int(repeats)
        cpu = _WORKERS[peer](patch, int(n), int(blocksize), float(seconds), wav, reps)
        print(_RESULT_TAG + json.dumps({"cpu": cpu}), flush=True)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16, help="voices (default 16)")
    parser.add_argument("--blocksize", type=int, default=64, help="default 64")
    parser.add_argument("--seconds", type=float, default=1.0, help="default 1.0")
    parser.add_argument("--patches", nargs="+", default=list(PATCHES), choices=PATCHES)
    parser.add_argument("--peers", nargs="+", default=PEERS, choices=PEERS)
    parser.add_argument(
        "--repeats", type=int, help="best of this many renders (default: adaptive, 1 to 5)"
    )
    parser.add_argument("--keep", help="directory to keep the rendered WAV files in")
    args = parser.parse_args(argv)
    return self_check(
        args.n,
        args.blocksize,
        args.seconds,
        tuple(args.patches),
        args.peers,
        args.repeats,
        args.keep,
    )


if __name__ == "__main__":
    sys.exit(_main())
