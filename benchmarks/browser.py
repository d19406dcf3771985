"""What browser audio costs and how it behaves: latency, underruns, bytes, CPU, students per core.

    python benchmarks/browser.py               # 10 minutes of steady streaming
    python benchmarks/browser.py --minutes 1   # a quick look

A real JupyterLab (tests/labserver.py) in Debian's Chromium, a kernel whose
engine plays in the browser (``JUPYSYNTH_OUTPUT=browser``), the jupysynth lab
extension playing it.  Prints one table beside the targets of issue 11:

- **added latency**: a knob change from Python (``osc.amp = 0.3`` on a sine at
  amp 0, from a thread in the kernel, its ``time.time()`` noted) until the
  page's analyser sees the level rise (polled every millisecond in the page,
  ``performance.timeOrigin + performance.now()``: the same machine's wall
  clock), 40 times; median and p95;
- **underruns** over the steady run, from the page's worklet;
- **bytes per second** the page received;
- **CPU** of the kernel, the engine and the Jupyter server over the steady run
  (``/proc/<pid>/stat``), and of a headless engine playing the same patch with
  no page (what streaming adds is the difference); **students per core** is
  one over the CPU share one student's processes take while streaming.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from labserver import CHROMIUM, CHROMIUM_ARGS, LabServer, descendants, idle, notebook  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")

CELLS = [
    "%load_ext jupysynth",
    "import jupysynth as js\nosc = js.Sine(freq=440, amp=0.0)\nosc.play()",
]

TOGGLE = """
import json, threading, time
def _toggle(n=40, path={path!r}):
    ons = []
    for _ in range(n):
        time.sleep(0.35)
        osc.amp = 0.3
        ons.append(time.time())
        time.sleep(0.35)
        osc.amp = 0.0
    open(path, "w").write(json.dumps(ons))
threading.Thread(target=_toggle, daemon=True).start()
"""

DETECTOR = """() => {
  window.__onsets = [];
  let on = false;
  const buf = new Float32Array(8192);
  setInterval(() => {
    let peak = 0;
    for (const a of window.jupysynth.analysers()) {
      a.getFloatTimeDomainData(buf);
      for (let i = buf.length - 256; i < buf.length; i++) peak = Math.max(peak, Math.abs(buf[i]));
    }
    const now = performance.timeOrigin + performance.now();
    if (!on && peak > 0.05) { on = true; window.__onsets.push(now); }
    else if (on && peak < 0.01) { on = false; }
  }, 1);
}"""


# when a websocket message whose sound starts (a stereo PCM tail, L == R, loud) reaches
# the page, on the detector's clock: the part of the latency before the page's buffer
ARRIVALS = """
(() => {
  window.__arrivals = [];
  const Native = window.WebSocket;
  let loud = false;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', e => {
        const b = e.data;
        if (!(b instanceof ArrayBuffer) || b.byteLength < 2048) return;
        const v = new DataView(b, b.byteLength - 1024);
        let peak = 0;
        for (let i = 0; i < 1024; i += 4) {
          const l = v.getInt16(i, true);
          if (l !== v.getInt16(i + 2, true)) return; // not our PCM
          peak = Math.max(peak, Math.abs(l));
        }
        if (!loud && peak > 3000) {
          loud = true;
          window.__arrivals.push(performance.timeOrigin + performance.now());
        } else if (loud && peak < 300) {
          loud = false;
        }
      });
    }
  };
})();
"""


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def role(pid: int) -> str | None:
    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    if "jupysynth.engine.child" in cmd:
        return "engine"
    if "ipykernel" in cmd:
        return "kernel"
    return None


def run_cells(pg, n: int) -> None:
    for k in range(n):
        pg.locator(".jp-CodeCell").nth(k).click()
        pg.keyboard.press("Shift+Enter")
        idle(pg, 120)


def add_cell(pg, code: str) -> None:
    pg.locator(".jp-Cell").last.click()
    pg.keyboard.press("Escape")
    pg.keyboard.press("b")
    pg.locator(".jp-Cell.jp-mod-active .cm-content").click()
    pg.keyboard.insert_text(code)
    pg.keyboard.press("Shift+Enter")
    idle(pg, 120)


def p95(values: list[float]) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]


def headless_cpu(seconds: float) -> float:
    """CPU share of a headless engine playing the same sine, no page, no kernel."""
    import jupysynth as js
    from jupysynth.player import Engine, play

    with Engine(output="none") as engine:
        play(js.Sine(freq=440, amp=0.3), engine)
        time.sleep(1.0)
        c0, t0 = cpu_seconds(engine.pid), time.monotonic()
        time.sleep(seconds)
        return (cpu_seconds(engine.pid) - c0) / (time.monotonic() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="steady streaming to watch")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="jupysynth-browser-bench-"))
    (work / "bench.ipynb").write_text(notebook(CELLS))
    server = LabServer(work, env={"JUPYSYNTH_OUTPUT": "browser"})
    rows: list[tuple[str, str, str]] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            pg = browser.new_page(viewport={"width": 1400, "height": 1000})
            pg.add_init_script(ARRIVALS)
            pg.goto(server.url("bench.ipynb"))
            pg.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            pg.wait_for_function("window.jupysynth !== undefined", timeout=60_000)
            time.sleep(2.0)
            run_cells(pg, len(CELLS))
            time.sleep(3.0)  # the page's buffer settles
            # steady streaming first (the buffer settles to what the link needs): a sine at 0.3
            add_cell(pg, "osc.amp = 0.3")
            pids = {pid: role(pid) for pid in descendants(server.pid) if role(pid) is not None}
            pids[server.pid] = "server"
            s0 = pg.evaluate("window.jupysynth.stats()")
            c0 = {pid: cpu_seconds(pid) for pid in pids}
            t0 = time.monotonic()
            time.sleep(args.minutes * 60.0)
            elapsed = time.monotonic() - t0
            c1 = {pid: cpu_seconds(pid) for pid in pids}
            s1 = pg.evaluate("window.jupysynth.stats()")
            mem = {pids[pid]: rss_mb(pid) for pid in pids}
            underruns = sum(s["underruns"] for s in s1) - sum(s["underruns"] for s in s0)
            rate = sum(s["bytesReceived"] for s in s1) - sum(s["bytesReceived"] for s in s0)
            rows.append((f"underruns over {args.minutes:g} min", str(underruns), "0"))
            rows.append(("bytes per second per student", f"{rate / elapsed / 1000:.1f} kB/s",
                         "192 kB/s (16-bit stereo 48 kHz)"))  # fmt: skip
            share = {}
            for pid, name in pids.items():
                share[name] = share.get(name, 0.0) + (c1[pid] - c0[pid]) / elapsed
            for name in ("engine", "kernel", "server"):
                rows.append((f"CPU of the {name} while streaming",
                             f"{share.get(name, 0.0) * 100:.2f} % of a core, "
                             f"RSS {mem.get(name, 0.0):.0f} MB", ""))  # fmt: skip
            buffer = s1[0]["target"] / 48.0 if s1 else float("nan")
            rows.append(("page jitter buffer after the steady run", f"{buffer:.0f} ms target", ""))
            # then the latency, a knob at a time from silence
            add_cell(pg, "osc.amp = 0.0")
            time.sleep(1.0)
            pg.evaluate(DETECTOR)
            ons_path = work / "ons.json"
            add_cell(pg, TOGGLE.format(path=str(ons_path)))
            deadline = time.monotonic() + 60
            while not ons_path.exists() and time.monotonic() < deadline:
                time.sleep(0.5)
            ons = json.loads(ons_path.read_text())
            heard = pg.evaluate("window.__onsets")
            lat = []
            for t in ons:
                after = [h / 1000.0 - t for h in heard if 0 <= h / 1000.0 - t < 0.3]
                if after:
                    lat.append(min(after) * 1000.0)
            arrivals = pg.evaluate("window.__arrivals")
            trip = []
            for t in ons:
                after = [a / 1000.0 - t for a in arrivals if 0 <= a / 1000.0 - t < 0.3]
                if after:
                    trip.append(min(after) * 1000.0)
            rows.append(
                ("added latency, knob to page (ms)",
                 f"median {statistics.median(lat):.1f}, p95 {p95(lat):.1f} "
                 f"({len(lat)}/{len(ons)} seen)",
                 "<= 60 median")
            )  # fmt: skip
            if trip:
                rows.append(
                    ("  of which knob to the page's websocket (ms)",
                     f"median {statistics.median(trip):.1f}, p95 {p95(trip):.1f}", "")
                )  # fmt: skip
            stats = pg.evaluate("window.jupysynth.stats()")
            if stats:
                rows.append(
                    ("  the page's buffer then: target, learnt trip (ms)",
                     f"{stats[0]['target'] / 48:.0f}, {stats[0]['trip'] / 48:.0f}", "")
                )  # fmt: skip
            browser.close()
    finally:
        left = server.stop()
    alone = headless_cpu(min(30.0, args.minutes * 60.0))
    rows.append(("CPU of a headless engine, same sine, no page", f"{alone * 100:.2f} %", "peer"))
    student = share.get("engine", 0.0) + share.get("kernel", 0.0) + share.get("server", 0.0)
    rows.append(("students per core (engine + kernel + server)", f"{1 / student:.1f}", ""))
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  {'measured':<44}  target / peer")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:<44}  {target}")
    if left:
        print(f"left running: {left}")


if __name__ == "__main__":
    main()
