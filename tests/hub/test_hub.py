"""Three students on one real JupyterHub each hear their own sine, and nobody else's.

JupyterHub from PyPI with ``configurable-http-proxy`` from npm (``tests/hub``'s
lockfile), the DummyAuthenticator and the SimpleLocalProcessSpawner: each
student's single-user JupyterLab runs as the current user with its own home,
its engine playing in the browser (``JUPYSYNTH_OUTPUT=browser``).  Three
students, each in their own Chromium context (their own hub cookie), log in at
``/hub/login``, open lesson 01 through the hub's proxy, load jupysynth and play
a sine: 330, 440 and 550 Hz.  With all three playing at once, each page's
analyser peaks at its own student's frequency, and has nothing (40 dB down or
more) at the other two; each page's stream comes from its own student's
kernel, and each student has one kernel and one engine, under their own
single-user server.  When the hub stops, nothing it started is left.

Measured per student and printed (``pytest -s``), and written to
``tests/hub/artifacts/hub.json``, never asserted (the machines are shared):
memory (RSS and PSS of the single-user server, kernel and engine), CPU of the
engine and kernel over 5 s idle (engine loaded, nothing playing) and over 5 s
playing and streaming to the page, and students per core: one over the CPU
share of one playing student's processes (engine, kernel and server).
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import time
from pathlib import Path

import pytest
from browser.test_lab import need_browser
from labserver import CHROMIUM, CHROMIUM_ARGS, idle, poll

from .hubserver import HubServer, cmdline, cpu_seconds, ensure_proxy, environ, memory_mb

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
LESSON = ROOT / "notebooks" / "01-first-sound.ipynb"
ARTIFACTS = HERE / "artifacts"
STUDENTS = {"ada": 330.0, "bob": 440.0, "cyd": 550.0}
WINDOW = 5.0  # seconds of each CPU measurement

# the page's spectrum at its own and the other students' frequencies (dB, the
# strongest of the 5 bins around each), from analyser windows (8192 samples, 170 ms)
# that sound all through: a window with a gap (an underrun on a loaded machine)
# splatters the sine over the spectrum, which says nothing about other streams
SPECTRUM = """async ([own, others, want, timeout]) => {
  const at = (db, a, hz) => {
    const k = Math.round((hz * a.fftSize) / a.context.sampleRate);
    let m = -300;
    for (let j = k - 2; j <= k + 2; j++) m = Math.max(m, db[j]);
    return m;
  };
  const out = [];
  let gaps = 0;
  const t0 = performance.now();
  while (out.length < want && performance.now() - t0 < timeout) {
    for (const a of window.jupysynth.analysers()) {
      const wave = new Float32Array(a.fftSize);
      a.getFloatTimeDomainData(wave);
      const db = new Float32Array(a.frequencyBinCount);
      a.getFloatFrequencyData(db);
      const seg = a.fftSize / 16;
      let steady = true;
      for (let s = 0; s < 16; s++) {
        let e = 0;
        for (let i = s * seg; i < (s + 1) * seg; i++) e += wave[i] * wave[i];
        steady = steady && Math.sqrt(e / seg) > 0.05;
      }
      if (steady) out.push([at(db, a, own), others.map(hz => at(db, a, hz))]);
      else gaps += 1;
    }
    await new Promise(r => setTimeout(r, 200));
  }
  return {reads: out, gaps};
}"""


@pytest.fixture(scope="module")
def proxy():
    """``configurable-http-proxy`` from tests/hub/node_modules (``npm ci`` once if missing)."""
    need_browser()
    pytest.importorskip("jupyterhub", reason="jupyterhub is not installed (the test extra)")
    path = ensure_proxy()
    if path is None:
        pytest.skip("npm not found: configurable-http-proxy comes from npm (tests/hub)")
    return path


@pytest.fixture(scope="module")
def hub(tmp_path_factory, proxy):
    work = tmp_path_factory.mktemp("hub")
    srv = HubServer(work, list(STUDENTS), proxy, env={"JUPYSYNTH_OUTPUT": "browser"})
    for name in STUDENTS:
        shutil.copy(LESSON, srv.home(name) / LESSON.name)
    yield srv
    left = srv.stop()
    assert not left, "processes left behind by the hub:\n" + "\n".join(left)


def seen(pg) -> dict:
    """What the page's sound is doing (for a failure's message)."""
    return pg.evaluate(
        """() => ({visibility: document.visibilityState, contexts: window.jupysynth.contexts(),
        streams: window.jupysynth.stats(), level: window.jupysynth.level(),
        hz: window.jupysynth.peakHz()})"""
    )


def add_cell(pg, code: str) -> None:
    """Type ``code`` into a new cell at the end of the notebook and run it."""
    pg.locator(".jp-Cell").last.click()
    pg.keyboard.press("Escape")
    pg.keyboard.press("b")
    pg.locator(".jp-Cell.jp-mod-active .cm-content").click()
    pg.keyboard.insert_text(code)
    pg.keyboard.press("Shift+Enter")


def cpu_shares(trees: dict[str, dict[int, str]], seconds: float) -> dict[str, dict[str, float]]:
    """Each student's CPU share (of one core) over ``seconds``, by role."""
    c0 = {n: {p: cpu_seconds(p) for p in t} for n, t in trees.items()}
    t0 = time.monotonic()
    time.sleep(seconds)
    c1 = {n: {p: cpu_seconds(p) for p in t} for n, t in trees.items()}
    elapsed = time.monotonic() - t0
    out: dict[str, dict[str, float]] = {}
    for name, tree in trees.items():
        share = {"server": 0.0, "kernel": 0.0, "engine": 0.0, "other": 0.0}
        for pid, what in tree.items():
            a, b = c0[name][pid], c1[name][pid]
            if a is not None and b is not None:
                share[what] += (b - a) / elapsed
        out[name] = share
    return out


def report(measured: dict) -> str:
    rows = [
        f"{'student':8} {'Hz':>4} {'RSS MB':>7} {'PSS MB':>7} {'idle CPU':>9} "
        f"{'playing CPU':>12} {'+ server':>9} {'underruns':>9} {'kB/s':>6}"
    ]
    for name, m in measured["students"].items():
        rows.append(
            f"{name:8} {m['hz']:>4.0f} {m['rss_mb']:>7.0f} {m['pss_mb']:>7.0f} "
            f"{m['idle_engine_kernel'] * 100:>8.1f}% {m['playing_engine_kernel'] * 100:>11.1f}% "
            f"{m['playing_server'] * 100:>8.1f}% {m['underruns_playing']:>9} "
            f"{m['kB_per_s_received']:>6.0f}"
        )
    rows.append(
        "(CPU: % of one core over 5 s, engine + kernel; + server: their single-user server; "
        "underruns and kB/s: the page's stream while playing)"
    )
    low = min(min(m["separation_db"].values()) for m in measured["students"].values())
    rows.append(f"each page hears the other students' frequencies {low:.0f} dB or more down")
    rows.append(
        f"hub + proxy while all three stream: {measured['hub_and_proxy_playing'] * 100:.1f}% "
        f"of a core"
    )
    rows.append(
        f"students per core = 1 / (CPU share of one playing student: engine + kernel + server, "
        f"{measured['playing_student'] * 100:.1f}%) = {measured['students_per_core']:.1f}"
    )
    return "\n".join(rows)


def test_three_students_each_hear_their_own_sine_through_the_hub(hub):
    from playwright.sync_api import sync_playwright

    names = list(STUDENTS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pages, errors = {}, {}
            for name in names:
                ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
                pg = ctx.new_page()
                errors[name] = []
                pg.on(
                    "console",
                    lambda m, e=errors[name]: e.append(m.text) if m.type == "error" else None,
                )
                pg.on("pageerror", lambda err, e=errors[name]: e.append(str(err)))
                pages[name] = pg
            # log in: the hub spawns each student's server (all three at once)
            for name, pg in pages.items():
                pg.goto(f"{hub.base}/hub/login")
                pg.fill("input[name=username]", name)
                pg.fill("input[name=password]", hub.password)
                pg.press("input[name=password]", "Enter")
            for name, pg in pages.items():
                pg.wait_for_url(re.compile(rf"/user/{name}/lab"), timeout=180_000)
            # lesson 01 through the hub's proxy
            for name, pg in pages.items():
                pg.goto(hub.url(name, LESSON.name), wait_until="commit")
            for name, pg in pages.items():
                assert pg.url.startswith(hub.url(name, LESSON.name)), pg.url
                pg.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=120_000)
                pg.wait_for_function("window.jupysynth !== undefined", timeout=60_000)
                pg.wait_for_selector("#jp-main-statusbar >> text=Idle", timeout=120_000)
            # lesson 01's first code cell: %load_ext jupysynth, the engine starts
            for pg in pages.values():
                pg.locator(".jp-CodeCell").first.click()
                pg.keyboard.press("Shift+Enter")
            for pg in pages.values():
                idle(pg, 120)
            for name, pg in pages.items():
                out = pg.locator(".jp-CodeCell").first.locator(".jp-OutputArea").inner_text()
                assert "browser" in out, f"{name}'s %load_ext jupysynth says: {out}"

            # each student: one kernel and one engine, under their own single-user server
            servers = hub.servers()
            assert sorted(servers) == sorted(names), servers
            trees = {name: hub.student(name) for name in names}
            engines = {}
            for name, tree in trees.items():
                roles = sorted(r for r in tree.values() if r != "other")
                assert roles.count("server") == 1 and roles.count("kernel") == 1, (name, tree)
                mains = [q for q in tree if "jupysynth.engine.child" in cmdline(q)]
                assert len(mains) == 1, f"{name} has engines {mains}: {tree}"
                engines[name] = mains[0]
                assert environ(mains[0]).get("JUPYTERHUB_USER") == name, environ(mains[0])
                assert environ(mains[0]).get("HOME") == str(hub.home(name))
            assert len(set(engines.values())) == 3, engines

            time.sleep(2.0)
            idle_cpu = cpu_shares(trees, WINDOW)

            # each student plays their own sine
            for name, pg in pages.items():
                add_cell(
                    pg,
                    f"import jupysynth as js\n"
                    f"osc = js.Sine(freq={STUDENTS[name]:g}, amp=0.3)\nosc.play()",
                )
            for name, pg in pages.items():
                idle(pg, 120)
                hz = poll(
                    pg,
                    "window.jupysynth.peakHz()",
                    lambda v, f=STUDENTS[name]: v and abs(v - f) < 3,
                    timeout=60,
                )
                assert hz and abs(hz - STUDENTS[name]) < 3, f"{name}'s page: {hz} Hz, {seen(pg)}"

            time.sleep(2.0)  # all three stream now
            trees = {name: hub.student(name) for name in names}
            theirs = set().union(*trees.values())
            shared = {pid: "other" for pid in hub.processes() if pid not in theirs}
            shared[hub.pid] = "other"
            before = {name: pg.evaluate("window.jupysynth.stats()") for name, pg in pages.items()}
            t0 = time.monotonic()
            playing_cpu = cpu_shares({**trees, "_shared": shared}, WINDOW)
            elapsed = time.monotonic() - t0
            after = {name: pg.evaluate("window.jupysynth.stats()") for name, pg in pages.items()}
            stream = {
                name: {
                    key: sum(s[key] for s in after[name]) - sum(s[key] for s in before[name])
                    for key in ("underruns", "bytesReceived", "framesReceived")
                }
                for name in names
            }
            shared_cpu = sum(playing_cpu.pop("_shared").values())

            # all three at once: each hears its own frequency and nobody else's
            separation = {name: {} for name in names}
            for name, pg in pages.items():
                own = STUDENTS[name]
                others = [f for n, f in STUDENTS.items() if n != name]
                hz = poll(pg, "window.jupysynth.peakHz()", lambda v, f=own: abs(v - f) < 3)
                assert abs(hz - own) < 3, f"{name}'s page hears {hz} Hz, not {own:g}: {seen(pg)}"
                got = pg.evaluate(SPECTRUM, [own, others, 7, 30_000])
                reads = got["reads"]
                assert len(reads) >= 3, f"{name}'s page: {got['gaps']} windows with a gap, {got}"
                mine = statistics.median(r[0] for r in reads)
                for j, f in enumerate(others):
                    theirs = statistics.median(r[1][j] for r in reads)
                    separation[name][f"{f:g}"] = mine - theirs
                    assert mine - theirs >= 40, (
                        f"{name}'s page has {theirs:.1f} dB at {f:g} Hz, "
                        f"only {mine - theirs:.1f} dB under its own {own:g} Hz ({mine:.1f} dB)"
                    )
                # its one stream comes from its own student's kernel
                streams = pg.evaluate("window.jupysynth.stats()")
                assert len(streams) == 1, (name, streams)
                kernels = [
                    pid
                    for pid, r in trees[name].items()
                    if r == "kernel" and f"kernel-{streams[0]['kernel']}" in cmdline(pid)
                ]
                assert kernels, f"{name}'s stream comes from kernel {streams[0]['kernel']}"
                assert streams[0]["framesReceived"] > 0, streams

            memory = {
                name: [sum(v) for v in zip(*(memory_mb(pid) for pid in tree))]
                for name, tree in trees.items()
            }
            for name in names:
                found = [e for e in errors[name] if "jupysynth" in e.lower()]
                assert not found, f"{name}'s page: {found}"
        finally:
            browser.close()

    measured = {"students": {}, "window_s": WINDOW, "hub_and_proxy_playing": shared_cpu}
    for name in names:
        i, pl = idle_cpu[name], playing_cpu[name]
        measured["students"][name] = {
            "hz": STUDENTS[name],
            "rss_mb": memory[name][0],
            "pss_mb": memory[name][1],
            "idle_engine_kernel": i["engine"] + i["kernel"],
            "idle_server": i["server"],
            "playing_engine_kernel": pl["engine"] + pl["kernel"],
            "playing_server": pl["server"],
            "underruns_playing": stream[name]["underruns"],
            "kB_per_s_received": stream[name]["bytesReceived"] / elapsed / 1000,
            "separation_db": separation[name],
            "idle": i,
            "playing": pl,
        }
    per = [m["playing_engine_kernel"] + m["playing_server"] for m in measured["students"].values()]
    measured["playing_student"] = statistics.mean(per)
    measured["students_per_core"] = 1.0 / max(measured["playing_student"], 1e-9)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "hub.json").write_text(json.dumps(measured, indent=2))
    print("\n" + report(measured))
