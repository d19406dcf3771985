"""Phase 0 of the live engine, measured: latency, underruns, allocations, OSC, processes.

Prints one table, each figure beside its target and the seed's figure.  Audio
rows play through the virtual sound card of the tests (a JACK server on its
dummy driver, ``tests/vsound.py``), started here and stopped at the end; they
are skipped when jackd or PortAudio is missing.  Every measurement is short by
default (about a minute in all); ``--long`` runs the seed's durations
(60 s of underrun counting per block size, 40 s of OSC throughput, 50
restarts).

    python benchmarks/phase0.py [--long] [--only RT-01 IPC-02 ...]

The worker rows (RT-03, IPC-04, PROC-02, PROC-04 worker) run the pool in this
process (:class:`jupysynth.engine.workers.PoolRenderer`, its workers real
processes) or in headless engines.  RT-03 plays P3 as written, its voices
summed in one Mix: the pool splits it by voice (jupysynth/engine/split.py).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import signal
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # the virtual sound card lives with the tests

from patches import p3  # noqa: E402

import jupysynth as js  # noqa: E402
from jupysynth.control import Client  # noqa: E402
from jupysynth.control.packets import encode_message  # noqa: E402
from jupysynth.errors import EngineError  # noqa: E402
from jupysynth.player import Engine, play  # noqa: E402

SR = 48000
ROWS: list[tuple[str, str, str, str, str]] = []


def row(key: str, what: str, value: str, target: str = "", seed: str = "") -> None:
    ROWS.append((key, what, value, target, seed))
    print(f"  {key:8} {what}: {value}", flush=True)


# -- the virtual card --------------------------------------------------------------------------


class Card:
    """One JACK dummy server at a time, restarted when another period is needed."""

    def __init__(self) -> None:
        self.card = None
        self.period = None
        self.why_not: str | None = None
        try:
            import sounddevice  # noqa: F401
            import vsound  # noqa: F401
        except OSError as exc:
            self.why_not = f"PortAudio missing ({exc})"

    def get(self, period: int):
        if self.why_not:
            return None
        if self.card is not None and self.period == period:
            return self.card
        self.stop()
        from vsound import VirtualSoundCard, VirtualSoundCardError

        try:
            self.card = VirtualSoundCard(samplerate=SR, period=period).start()
        except VirtualSoundCardError as exc:
            self.why_not = str(exc).splitlines()[0]
            return None
        self.period = period
        return self.card

    def stop(self) -> None:
        if self.card is not None:
            self.card.stop()
            self.card = None


def jack(tool: str, *ports: str) -> None:
    import subprocess

    env = dict(os.environ, JACK_NO_START_SERVER="1")
    subprocess.run([tool, *ports], env=env, capture_output=True, timeout=10, check=False)


def wire_capture(card, engine: Engine) -> None:
    """Connect the engine's JACK outputs to this process's newest input ports."""
    me = card.portaudio_client_name()
    mine = sorted(
        (p for p in card.ports() if p.startswith(f"{me}:in_")),
        key=lambda p: int(p.rsplit("_", 1)[1]),
    )[-2:]
    for ch, port in enumerate(mine):
        for other in card.connections()[port]:
            jack("jack_disconnect", other, port)
        jack("jack_connect", f"{engine.info['jack_client']}:out_{ch}", port)


# -- RT-01: round trip through the card, and knob to sound --------------------------------------


def rt01_device_round_trip(card, blocksize: int) -> float:
    """Frames from a click written to the card's output until it is read back (duplex stream)."""
    import sounddevice as sd

    total = SR
    rec = np.zeros(total, dtype=np.float32)
    state = {"pos": 0, "click": -1}
    done = threading.Event()

    def callback(indata, outdata, frames, time_info, status):
        pos = state["pos"]
        outdata.fill(0)
        c = state["click"]
        if pos <= c < pos + frames:
            outdata[c - pos, :] = 0.5
        n = min(frames, total - pos)
        rec[pos : pos + n] = indata[:n, 0]
        state["pos"] = pos + frames
        if pos + frames >= total:
            done.set()
            raise sd.CallbackStop

    with sd.Stream(
        device=card.device_index(),
        channels=2,
        samplerate=SR,
        blocksize=blocksize,
        latency="low",
        dtype="float32",
        callback=callback,
    ):
        card.connect_loopback()
        state["click"] = state["pos"] + SR // 10
        done.wait(5)
    hits = np.flatnonzero(np.abs(rec[state["click"] :]) > 0.25)
    return float(hits[0]) if hits.size else float("nan")


def knob_to_sound(card, engine: Engine, toggles: int) -> list[float]:
    """Seconds from sending /param/set (untagged) until the captured output crosses 50 %."""
    import sounddevice as sd

    engine.send("/module/new", 1, "MulAdd", json.dumps({"values": {"input": 0, "mul": 0}}))
    engine.send("/out/add", 1)
    engine.sync()
    sender = Client(path=engine.socket_path)  # the owner's channel, as a kernel's knob
    every = SR // 10
    total = every * (toggles + 2)
    rec = np.zeros(total, dtype=np.float32)
    sends: list[int] = []
    state = {"pos": -1, "next": every}
    done = threading.Event()

    def callback(indata, frames, time_info, status):
        pos = state["pos"]
        if pos < 0:
            return
        n = min(frames, total - pos)
        rec[pos : pos + n] = indata[:n, 0]
        state["pos"] = pos + frames
        if pos >= state["next"] and len(sends) < toggles:
            # "now" is the end of the buffer just captured
            value = 0.5 if len(sends) % 2 == 0 else 0.0
            sender.send_raw(encode_message("/param/set", (1, "add", value), "isf"))
            sends.append(pos + frames)
            state["next"] += every
        if pos + frames >= total:
            done.set()
            raise sd.CallbackStop

    with sd.InputStream(
        device=card.device_index(),
        channels=2,
        samplerate=SR,
        blocksize=0,
        latency="low",
        dtype="float32",
        callback=callback,
    ):
        wire_capture(card, engine)
        time.sleep(0.05)
        state["pos"] = 0
        done.wait(total / SR + 5)
    sender.close()
    engine.send("/panic")
    engine.sync()
    out = []
    for k, s in enumerate(sends):
        seg = rec[s : s + every]
        hit = np.flatnonzero(seg > 0.25) if k % 2 == 0 else np.flatnonzero(seg < 0.25)
        if hit.size:
            out.append(hit[0] / SR)
    return out


# -- RT-02: underruns under load ------------------------------------------------------------


class Load:
    """GC pressure and concurrent DSP in this (the kernel's) process, while the engine plays."""

    def __init__(self) -> None:
        self.running = True
        self.threads = [
            threading.Thread(target=self._garbage, daemon=True),
            threading.Thread(target=self._dsp, daemon=True),
        ]
        for t in self.threads:
            t.start()

    def _garbage(self) -> None:
        while self.running:
            junk = [{"k": [i] * 8} for i in range(20000)]
            for a, b in zip(junk, junk[1:]):
                a["next"] = b  # cycles: only the collector frees them
            del junk
            gc.collect()

    def _dsp(self) -> None:
        x = np.random.default_rng(0).standard_normal(1 << 16)
        while self.running:
            np.fft.irfft(np.fft.rfft(x))

    def stop(self) -> None:
        self.running = False
        for t in self.threads:
            t.join()


def rt02(cards: Card, blocksize: int, seconds: float) -> dict:
    card = cards.get(blocksize)
    if card is None:
        return {}
    with Engine(device=card.device_index(), blocksize=blocksize) as engine:
        play(p3(32), engine)
        time.sleep(0.5)
        before = engine.status()
        load = Load()
        try:
            time.sleep(seconds)
        finally:
            load.stop()
        after = engine.status()
    return {
        "xruns": after["xruns"] - before["xruns"],
        "underflows": after["device_underflows"] - before["device_underflows"],
        "dsp": after["dsp_load"],
        "peak": after["dsp_peak"],
        "latency": after["latency"],
    }


# -- RT-04: allocations per block ------------------------------------------------------------


def _traced(step: Callable[[], object], blocks: int) -> tuple[float, int, int]:
    """(mean transient bytes, calls that allocated, bytes retained) of ``blocks`` calls."""
    transient = np.zeros(blocks, dtype=np.int64)  # allocated before tracing starts
    gc.collect()
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    for k in range(blocks):
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        step()
        transient[k] = tracemalloc.get_traced_memory()[1] - before
    retained = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    return float(transient.mean()), int(np.count_nonzero(transient)), retained


def rt04(blocks: int) -> dict[str, tuple[float, int, int]]:
    """Allocations of the engine's block (core + renderer) and of the renderer alone."""
    from jupysynth.control.packets import ntp_from_unix
    from jupysynth.engine.core import EngineCore
    from jupysynth.graph import snapshot

    core = EngineCore(SR, 128, ntp_from_unix(0.0), lambda *a: None, lambda *a: None)
    nodes, outputs = snapshot(p3(16))
    specs = {
        i: (
            n.type,
            {
                "values": {k: list(v) if isinstance(v, tuple) else v for k, v in n.values.items()},
                "inputs": [list(x) for x in n.inputs],
            },
        )
        for i, n in nodes.items()
    }
    for i in sorted(specs):  # snapshot ids grow with creation: sources first
        core.submit(None, "/module/new", (i, specs[i][0], json.dumps(specs[i][1])), None)
    for oid, port, _ in outputs:
        core.submit(None, "/out/add", (oid, port), None)
    dst = np.zeros((128, 2), dtype=np.float32)
    for _ in range(200):
        core.render_block(dst)
    assert np.abs(dst).max() > 0, "the patch did not build"
    return {
        "block": _traced(lambda: core.render_block(dst), blocks),
        "renderer": _traced(lambda: core.renderer.process(128), blocks),
    }


# -- IPC ---------------------------------------------------------------------------------------


def ipc01(engine: Engine, n: int) -> list[float]:
    with Client(path=engine.socket_path) as c:
        for _ in range(50):
            c.ping()
        return [c.ping() for _ in range(n)]


def ipc02(engine: Engine, rate: float, seconds: float) -> tuple[int, int, float]:
    """(sent, lost, achieved rate) of /param/set at ``rate`` messages per second."""
    engine.send("/module/new", 1, "MulAdd", json.dumps({"values": {"input": 0, "mul": 0}}))
    engine.send("/out/add", 1)
    engine.sync()
    sender = Client(path=engine.socket_path)
    packets = [
        encode_message("/param/set", (1, "add", (k % 100) / 1000), "isf") for k in range(1000)
    ]
    with Client(path=engine.socket_path) as c:
        before = c.status()
        total = int(rate * seconds)
        chunk = max(1, int(rate / 1000))  # a chunk per millisecond
        t0 = time.perf_counter()
        sent = 0
        while sent < total:
            for k in range(chunk):
                sender.send_raw(packets[(sent + k) % 1000])
            sent += chunk
            lag = sent / rate - (time.perf_counter() - t0)
            if lag > 0:
                time.sleep(lag)
        took = time.perf_counter() - t0
        c.sync(timeout=30)
        after = c.status()
    sender.close()
    # the status request and the sync are messages too
    received = after["messages"] - before["messages"] - 2
    engine.send("/panic")
    engine.sync()
    return sent, sent - received, sent / took


def ipc03(blocks: int) -> float:
    """Microseconds per block to hand a rendered block to the device (ring write index)."""
    import rtmixer

    storage = np.zeros((4096, 2), dtype=np.float32)
    ring = rtmixer.RingBuffer(8, buffer=storage)
    ptr, lib = ring._ptr, ring._lib
    t = time.perf_counter()
    for _ in range(blocks):
        index = (ptr.writeIndex & ptr.smallMask) // 128  # the slot rendered into, in place
        lib.PaUtil_AdvanceRingBufferWriteIndex(ptr, 128)
        lib.PaUtil_AdvanceRingBufferReadIndex(ptr, 128)  # stands for the device's read
    del index
    return (time.perf_counter() - t) / blocks * 1e6


# -- processes ---------------------------------------------------------------------------------


def proc01(engine: Engine, n: int) -> list[float]:
    """Seconds from /module/new + /out/add until the engine confirms it renders it."""
    with Client(path=engine.socket_path) as c:
        out = []
        for k in range(n):
            i = 100 + k
            t = time.perf_counter()
            c.send("/module/new", i, "Sine", '{"values": {"freq": 440, "amp": 0.01}}')
            c.send("/out/add", i)
            errors = c.sync()
            out.append(time.perf_counter() - t)
            assert not errors, errors
        c.send("/panic")
        c.sync()
    return out


def proc01_engine_side(n: int) -> list[float]:
    """Seconds the engine's block takes beyond a plain block when it creates and adds a module.

    Measured in this process on the engine's own core (the OSC hop excluded),
    with 64 sines already playing: the whole patch is recompiled.
    """
    from jupysynth.control.packets import ntp_from_unix
    from jupysynth.engine.core import EngineCore

    core = EngineCore(SR, 128, ntp_from_unix(0.0), lambda *a: None, lambda *a: None)
    for i in range(1, 65):
        core.submit(None, "/module/new", (i, "Sine", '{"values": {"amp": 0.01}}'), None)
        core.submit(None, "/out/add", (i,), None)
    dst = np.zeros((128, 2), dtype=np.float32)
    for _ in range(100):
        core.render_block(dst)
    out = []
    for k in range(n):
        t = time.perf_counter()
        core.render_block(dst)
        plain = time.perf_counter() - t
        i = 1000 + k
        core.submit(None, "/module/new", (i, "Saw", '{"values": {"amp": 0.01}}'), None)
        core.submit(None, "/out/add", (i,), None)
        t = time.perf_counter()
        core.render_block(dst)
        out.append(time.perf_counter() - t - plain)
    return out


def heavy_voices(n: int) -> js.Module:
    """``n`` voices of three oscillators, a modulated resonant low-pass and a gain, one Mix."""
    voices = []
    for i in range(n):
        f = 55 * 2 ** (5 * i / n)
        osc = js.Saw(freq=f, amp=0.3) + js.Saw(freq=f * 1.005, amp=0.3)
        osc = osc + js.Square(freq=f / 2, amp=0.2)
        lfo = js.Sine(freq=0.2 + i / n, phase=i / n)
        voices.append(js.Gain(js.LowPass(osc, cutoff=600 + 400 * lfo, q=3), gain=0.5 / n))
    return js.Mix(*voices)


class Additive(js.Module):
    """A module written as in a cell: 16 partials a sample (compute-bound, little memory)."""

    params = (js.Param("freq", 110.0, 1.0, 20000.0), js.Param("amp", 0.1, 0.0, 1.0))
    sample_state = 1

    @staticmethod
    def sample(s, freq, amp):
        s[0] = (s[0] + freq / 48000.0) % 1.0
        acc = 0.0
        for k in range(1, 17):
            acc += math.sin(2.0 * math.pi * k * s[0]) / k
        return amp * acc


def rt03(patch: js.Module, seconds: float, blocksize: int = 128) -> dict[int, float]:
    """DSP load (render time / block time) of ``patch`` with 1 and 2 workers."""
    out = {}
    for workers in (1, 2):
        with Engine(headless=True, workers=workers, blocksize=blocksize) as engine:
            play(patch, engine)
            # the load average settles, and the pool divides the patch again once it
            # has measured what its modules cost (after half a second)
            time.sleep(2.0)
            engine.status()  # resets the peak
            time.sleep(seconds)
            out[workers] = engine.status()["dsp_load"]
    return out


def _pool_with(n_sines: int, workers: int):
    from jupysynth.engine.patch import PatchTable
    from jupysynth.engine.workers import PoolRenderer

    pool = PoolRenderer(SR, 128, workers)
    table = PatchTable()
    for i in range(1, n_sines + 1):
        table.new(i, "Sine", '{"values": {"amp": 0.01}}')
        table.out_add(i)
    pool.update(table.nodes, table.outputs)
    return pool, table


def ipc04(blocks: int) -> np.ndarray:
    """Seconds per block of the pool's round trip with workers that render nothing."""
    pool, _ = _pool_with(0, 2)
    try:
        for _ in range(200):
            pool.process(128)
        t = np.zeros(blocks)
        for k in range(blocks):
            t0 = time.perf_counter()
            pool.process(128)
            t[k] = time.perf_counter() - t0
        return t
    finally:
        pool.close()


def proc02(n: int) -> list[float]:
    """Seconds to assign one new module to a pool of 2 workers playing 64 sines."""
    pool, table = _pool_with(64, 2)
    try:
        out = []
        for k in range(n):
            i = 1000 + k
            table.new(i, "Saw", '{"values": {"amp": 0.01}}')
            table.out_add(i)
            t = time.perf_counter()
            pool.update(table.nodes, table.outputs)
            out.append(time.perf_counter() - t)
            pool.process(128)
        return out
    finally:
        pool.close()


def proc04_worker() -> tuple[float, float]:
    """(seconds until a SIGKILLed worker's modules play again, seconds for a new spare)."""
    pool, _ = _pool_with(8, 2)
    try:
        pool.process(128)
        victim = pool.pids()[0]
        os.kill(victim, signal.SIGKILL)
        t = time.perf_counter()
        while pool.restarts == 0 or pool.workers < 2 or not np.abs(pool.process(128)).max():
            pool.process(128)
        back = time.perf_counter() - t
        while not pool._spare_ready():
            time.sleep(0.005)
        return back, time.perf_counter() - t
    finally:
        pool.close()


def children() -> set[int]:
    me = os.getpid()
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[1]) == me and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def _fds() -> dict[str, str]:
    """This process's open file descriptors and what they point to.

    JACK's semaphores are left out: this process's own JACK client (the earlier
    rows' streams) opens those of the engines that played on the card, whenever
    the JACK library gets to it; the headless engines cycled here never use JACK.
    """
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the directory's own descriptor, closed meanwhile
        if not target.startswith("/dev/shm/jack"):
            out[fd] = target
    return out


def proc04(cycles: int) -> dict:
    kids, shm, fds = (
        children(),
        {n for n in os.listdir("/dev/shm") if not n.startswith("jack")},
        _fds(),
    )
    starts, stops = [], []
    for _ in range(cycles):
        t = time.perf_counter()
        e = Engine(headless=True).start()
        starts.append(time.perf_counter() - t)
        t = time.perf_counter()
        e.stop()
        stops.append(time.perf_counter() - t)
    e = Engine(headless=True).start()
    t = time.perf_counter()
    os.kill(e.pid, signal.SIGKILL)
    while e.running:
        time.sleep(0.001)
    detect = time.perf_counter() - t
    e.stop()
    t = time.perf_counter()
    e.start()
    restart = time.perf_counter() - t + detect
    e.stop()
    return {
        "start": statistics.median(starts),
        "stop": statistics.median(stops),
        "restart": restart,
        "detect": detect,
        "leaked_processes": len(children() - kids),
        "leaked_shm": len({n for n in os.listdir("/dev/shm") if not n.startswith("jack")} - shm),
        "leaked_fds": sorted(v for k, v in _fds().items() if fds.get(k) != v),
        "cycles": cycles,
    }


def cpu_of(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_share(engine: Engine, seconds: float) -> float:
    c0, t0 = cpu_of(engine.pid), time.perf_counter()
    time.sleep(seconds)
    return (cpu_of(engine.pid) - c0) / (time.perf_counter() - t0) * 100


# -- the table ---------------------------------------------------------------------------------


def ms(x: float) -> str:
    return f"{x * 1e3:.2f} ms"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--long", action="store_true", help="the seed's durations (several minutes)")
    ap.add_argument("--only", nargs="+", default=None, help="row ids to run, e.g. RT-01 IPC-02")
    args = ap.parse_args(argv)
    long = args.long
    want: Callable[[str], bool] = lambda key: args.only is None or key in args.only  # noqa: E731
    cards = Card()
    print(
        f"jupysynth phase 0 ({'long' if long else 'short'} run; 2 cores here; "
        f"audio through the JACK dummy virtual card)"
    )
    try:
        if want("RT-01"):
            card = cards.get(128)
            if card is None:
                row("RT-01", "round trip through the card", f"n/a ({cards.why_not})", "<= 6 ms")
            else:
                for bs in (0, 128):
                    frames = rt01_device_round_trip(card, bs)
                    row(
                        "RT-01",
                        f"card round trip, JACK period 128, stream block {bs or 'auto'}",
                        f"{frames:.0f} frames = {ms(frames / SR)}",
                        "<= 6 ms at 128",
                        "5.9 ms",
                    )
                with Engine(device=card.device_index()) as engine:
                    lat = knob_to_sound(card, engine, 40 if long else 16)
                    row(
                        "RT-01",
                        "knob to sound: untagged /param/set until the card's output "
                        "crosses 50 % (median, max)",
                        f"{ms(statistics.median(lat))}, {ms(max(lat))} (n={len(lat)}; "
                        f"engine latency {ms(engine.status()['latency'])})",
                    )
        if want("RT-02"):
            seconds = 60.0 if long else 3.0
            for bs in (64, 128, 256):
                r = rt02(cards, bs, seconds)
                if not r:
                    row("RT-02", f"underruns at {bs}", f"n/a ({cards.why_not})", "0")
                    continue
                row(
                    "RT-02",
                    f"underruns over {seconds:g} s at block {bs} = JACK period {bs}, "
                    "P3 x 32 voices, GC + FFT load in the kernel process",
                    f"{r['xruns']} engine xruns, {r['underflows']} device underflows "
                    f"(dsp {r['dsp'] * 100:.1f} %, peak {r['peak'] * 100:.0f} %, "
                    f"latency {ms(r['latency'])})",
                    "0",
                )
        if want("RT-03"):
            cases = (
                ("P3 x 1024 voices", lambda: p3(1024), 128),
                ("P3 x 2048 voices", lambda: p3(2048), 256),
                ("512 voices of 8 modules", lambda: heavy_voices(512), 128),
                ("1024 voices of 8 modules", lambda: heavy_voices(1024), 256),
                (
                    "48 voices of a 16-partial cell module",
                    lambda: js.Mix(*[Additive(freq=55 + i, amp=0.01) for i in range(48)]),
                    128,
                ),
            )
            for label, make, block in cases:
                what = (
                    f"speed-up of 2 workers over 1: {label} in one Mix, block {block}, "
                    "headless (DSP load 1 worker / 2 workers)"
                )
                try:
                    loads = rt03(make(), 10.0 if long else 3.0, block)
                except EngineError as exc:  # one case failing must not lose the table
                    row("RT-03", what, f"failed: {exc}", "> 1.6x")
                    continue
                row(
                    "RT-03",
                    what,
                    f"{loads[1] / loads[2]:.2f}x ({loads[1] * 100:.0f} % / {loads[2] * 100:.0f} % "
                    "of the block time; 2 cores shared with the engine)",
                    "> 1.6x",
                )
        if want("RT-04"):
            blocks = 20000 if long else 3000
            r = rt04(blocks)
            for part, label in (
                ("block", "engine block (core + renderer)"),
                ("renderer", "of which Renderer.process"),
            ):
                mean, allocating, retained = r[part]
                row(
                    "RT-04",
                    f"allocations per block, {label}, P3 x 16, tracemalloc",
                    f"{mean:.0f} B transient on average, {allocating}/{blocks} blocks "
                    f"allocate, {retained} B retained after {blocks} blocks",
                    "0",
                )
        headless = (
            Engine(headless=True).start()
            if any(want(k) for k in ("IPC-01", "IPC-02", "PROC-01"))
            else None
        )
        try:
            if want("IPC-01"):
                rtt = ipc01(headless, 2000 if long else 500)
                q = np.percentile(rtt, [50, 99])
                row(
                    "IPC-01",
                    "OSC /ping round trip, median / p99 (one way ~ half)",
                    f"{ms(q[0])} / {ms(q[1])}",
                    "",
                    "0.068 ms",
                )
            if want("IPC-02"):
                seconds = 40.0 if long else 2.0
                for rate in (10_000, 20_000, 40_000):
                    sent, lost, achieved = ipc02(headless, rate, seconds)
                    row(
                        "IPC-02",
                        f"OSC /param/set at {rate} msg/s for {seconds:g} s",
                        f"{achieved:,.0f} msg/s sent, {lost} of {sent} lost",
                        ">= 10,000 msg/s, 0 loss",
                    )
            if want("PROC-01"):
                t = proc01(headless, 100 if long else 30)
                row(
                    "PROC-01",
                    "module creation: /module/new + /out/add + /sync round trip (median, max)",
                    f"{ms(statistics.median(t))}, {ms(max(t))}",
                    "<= 1 ms",
                )
        finally:
            if headless is not None:
                headless.stop()
        if want("PROC-01"):
            t = proc01_engine_side(100)
            row(
                "PROC-01",
                "module creation inside the engine: extra time of the block that adds a "
                "module to 64 playing (median, max)",
                f"{ms(statistics.median(t))}, {ms(max(t))}",
                "<= 1 ms",
            )
        if want("IPC-03"):
            row(
                "IPC-03",
                "block hand-off to the device (rendered in place into the ring)",
                f"{ipc03(100000):.2f} us per block",
            )
        if want("IPC-04"):
            t = ipc04(20000 if long else 3000) * 1e6
            q = np.percentile(t, [50, 99])
            row(
                "IPC-04",
                "worker sync: a block's round trip to 2 workers rendering nothing, median / p99",
                f"{q[0]:.0f} / {q[1]:.0f} us",
                "",
                "84 / 190 us",
            )
        if want("PROC-02"):
            t = proc02(30)
            row(
                "PROC-02",
                "assignment of a new module to 2 workers playing 64 sines (median, max)",
                f"{ms(statistics.median(t))}, {ms(max(t))}",
            )
        if want("PROC-04"):
            r = proc04(50 if long else 10)
            row(
                "PROC-04",
                "engine start / stop (median), restart after SIGKILL (detect + start)",
                f"{ms(r['start'])} / {ms(r['stop'])}, {ms(r['restart'])} "
                f"(detect {ms(r['detect'])})",
                "",
                "",
            )
            back, spare = proc04_worker()
            row(
                "PROC-04",
                "worker SIGKILLed: its modules play again on the warm spare / a new spare ready",
                f"{ms(back)} / {ms(spare)}",
                "",
                "60 ms",
            )
            row(
                "PROC-04",
                f"leaks after {r['cycles']} start/stop cycles",
                f"{r['leaked_processes']} processes, {r['leaked_shm']} /dev/shm entries, "
                f"{len(r['leaked_fds'])} fds {r['leaked_fds'] or ''}",
                "0",
            )
        if want("CPU"):
            card = cards.get(128)
            for label, kw in (
                ("headless", {"headless": True}),
                ("on the card", {"device": card.device_index()} if card else None),
            ):
                if kw is None:
                    continue
                with Engine(**kw) as engine:
                    time.sleep(0.5)
                    idle = cpu_share(engine, 10.0 if long else 4.0)
                    play(js.Sine(freq=440, amp=0.1), engine)
                    time.sleep(0.5)
                    one = cpu_share(engine, 10.0 if long else 4.0)
                row(
                    "CPU",
                    f"engine process, {label}: idle / one sine",
                    f"{idle:.2f} % / {one:.2f} % of a core",
                    "idle < 1 %",
                )
    finally:
        cards.stop()

    print()
    print("| id | measurement | result | target | seed |")
    print("|---|---|---|---|---|")
    for key, what, value, target, seed in ROWS:
        print(f"| {key} | {what} | {value} | {target} | {seed} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
