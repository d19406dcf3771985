"""The kernel's side of browser audio, in a real kernel: comms carry the engine's sound.

A real IPython kernel (jupyter_client) with no sound card loads jupysynth,
which plays in the browser.  The test is the page: it opens the
``jupysynth.page`` comm as the lab extension does, reports what it "hears"
on a clock of its own, and decodes the 16-bit PCM of the ``audio`` messages.
The JupyterLab extension itself is tested in tests/browser/.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SR = 48000


class FakePage:
    """What the lab extension does with a kernel's comms, minus the speakers."""

    def __init__(self, kc) -> None:
        self.kc = kc  # a client of its own: zmq sockets are not shared between threads
        self._lock = threading.Lock()
        self.comm_id = uuid.uuid4().hex
        self.chunks: list[tuple[int, np.ndarray, float]] = []
        self.messages: queue.Queue = queue.Queue()
        self.announced = threading.Event()
        self.closed = threading.Event()
        self.hello: dict | None = None
        self.status: dict | None = None
        self.clock: tuple[float, int] | None = None  # (monotonic, frame) of playback start
        self.stop = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while not self.stop.is_set():
            try:
                msg = self.kc.get_iopub_msg(timeout=0.05)
            except queue.Empty:
                continue
            kind = msg["msg_type"]
            content = msg["content"]
            if kind == "comm_open" and content.get("target_name") == "jupysynth.kernel":
                self.announced.set()
            if kind == "comm_close" and content.get("comm_id") == self.comm_id:
                self.closed.set()
            if kind != "comm_msg" or content.get("comm_id") != self.comm_id:
                continue
            data = content["data"]
            if data["type"] == "audio":
                pcm = np.frombuffer(msg["buffers"][0], dtype="<i2").reshape(-1, 2)
                self.chunks.append((data["frame"], pcm, time.monotonic()))
                if self.clock is None:
                    # a page starts playing once it holds its jitter buffer (40 ms here)
                    self.clock = (time.monotonic() + 0.04, data["frame"])
            elif data["type"] == "hello":
                self.hello = data
            elif data["type"] == "status":
                self.status = data["status"]
            else:
                self.messages.put(data)

    def send(self, kind: str, content: dict) -> None:
        msg = self.kc.session.msg(kind, content)
        with self._lock:
            self.kc.shell_channel.send(msg)

    def open(self) -> None:
        self.send(
            "comm_open",
            {"comm_id": self.comm_id, "target_name": "jupysynth.page",
             "data": {"page": "test", "rate": SR}},
        )  # fmt: skip

    def report(self) -> None:
        """Tell the kernel which frame plays now, as the worklet would, every 50 ms."""
        while not self.stop.wait(0.05):
            if self.clock is None:
                continue
            t, f = self.clock
            heard = f + int((time.monotonic() - t) * SR)
            self.command({"type": "heard", "frame": heard, "buffered": 1920, "target": 1920,
                          "underruns": 0})  # fmt: skip

    def command(self, data: dict) -> None:
        self.send("comm_msg", {"comm_id": self.comm_id, "data": data})

    def audio(self, since: float) -> np.ndarray:
        """The stream received after monotonic time ``since``, in frame order, as float."""
        got = [(f, x) for f, x, t in self.chunks if t >= since]
        if not got:
            return np.zeros((0, 2))
        return np.concatenate([x for _, x in got]).astype(np.float64) / 32768.0


def peak_hz(x: np.ndarray) -> float:
    x = x[:, 0] * np.hanning(len(x))
    spectrum = np.abs(np.fft.rfft(x))
    k = int(np.argmax(spectrum[1:])) + 1
    a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-12)
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * SR / len(x)


@pytest.fixture
def kernel():
    jc = pytest.importorskip("jupyter_client")
    env = dict(os.environ, JUPYSYNTH_OUTPUT="browser", PYTHONPATH=str(ROOT))
    for key in ("JUPYSYNTH_HEADLESS", "JUPYSYNTH_OFFLINE"):
        env.pop(key, None)
    km = jc.KernelManager(kernel_name="python3")
    km.start_kernel(env=env)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    # a session of its own: clients sharing one would share one identity on the kernel
    page_client = km.client(session=jc.session.Session(key=km.session.key))
    page_client.start_channels()
    yield kc, page_client
    page_client.stop_channels()
    kc.stop_channels()
    km.shutdown_kernel(now=False)


def execute(kc, code: str, timeout: float = 60.0) -> str:
    """Run ``code`` and return its stdout (the shell reply is awaited)."""
    msg_id = kc.execute(code)
    reply = kc.get_shell_msg(timeout=timeout)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=timeout)
    assert reply["content"]["status"] == "ok", reply["content"]
    return ""


def test_a_page_hears_the_engine_through_comms_and_leads_its_clock(kernel):
    kernel, page_client = kernel
    page = FakePage(page_client)
    try:
        execute(kernel, "%load_ext jupysynth")
        assert page.announced.wait(10), "no jupysynth.kernel announcement comm"
        page.open()
        deadline = time.monotonic() + 10
        while page.hello is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert page.hello == {"type": "hello", "samplerate": SR, "output": "browser",
                              "device": "browser", "channels": 2}  # fmt: skip
        threading.Thread(target=page.report, daemon=True).start()
        execute(kernel, "import jupysynth as js\nosc = js.Sine(freq=440, amp=0.5)\nosc.play()")
        time.sleep(1.0)
        t = time.monotonic()
        time.sleep(1.0)
        x = page.audio(t)
        assert len(x) > 0.8 * SR, f"{len(x)} frames in a second"
        assert abs(peak_hz(x) - 440) < 1.0
        assert 0.45 < np.abs(x).max() < 0.52
        # the stream is gapless: each chunk starts where the last ended
        frames = [(f, len(c)) for f, c, _ in page.chunks]
        assert all(f0 + n0 == f1 for (f0, n0), (f1, _) in zip(frames, frames[1:]))
        # the engine keeps what it renders about 60 ms (40 ms buffer + 20 ms transit)
        # ahead of what the page hears: its clock follows the page's
        status = page.status
        assert status["output"] == "browser" and status["listening"]
        assert status["browser"]["target"] == 1920
        playing_at = page.clock[1] + (time.monotonic() - page.clock[0]) * SR
        ahead = (page.chunks[-1][0] + len(page.chunks[-1][1]) - playing_at) / SR
        assert 0.02 < ahead < 0.12, ahead
        execute(kernel, "osc.freq = 660")
        time.sleep(0.3)
        t = time.monotonic()
        time.sleep(0.5)
        assert abs(peak_hz(page.audio(t)) - 660) < 1.5
        # the page's panic command silences everything
        page.command({"type": "command", "name": "panic"})
        said = page.messages.get(timeout=10)
        assert said == {"type": "said", "text": "panic: everything silenced"}
        time.sleep(0.3)
        t = time.monotonic()
        time.sleep(0.3)
        assert np.abs(page.audio(t)).max() == 0.0
    finally:
        page.stop.set()
        page.reader.join(2)


def test_a_page_that_went_silent_gets_no_more_sound_and_is_dropped(kernel):
    kernel, page_client = kernel
    page = FakePage(page_client)
    try:
        execute(kernel, "%load_ext jupysynth\nimport jupysynth.notebook.browser as b\n"
                        "b.GONE_SECONDS = 6.0\nimport jupysynth as js\n"
                        "js.Sine(freq=440, amp=0.5).play()")  # fmt: skip
        page.open()  # and then never reports: a tab closed before its first report
        time.sleep(1.0)
        assert page.chunks, "the page got nothing at first"
        time.sleep(3.0)  # QUIET_SECONDS of kernel idle time
        n = len(page.chunks)
        time.sleep(1.0)
        assert len(page.chunks) == n, "a silent page still gets the stream"
        # a long cell does not count as silence: its messages wait behind it
        execute(kernel, "import time; time.sleep(3)")
        # 8 s since the page opened, but only 5 of them idle: it is still there
        assert not page.closed.is_set(), "time spent in a cell was counted as silence"
        assert page.closed.wait(6.0 + 4.0), "a page silent for GONE_SECONDS was not dropped"
    finally:
        page.stop.set()
        page.reader.join(2)
