"""No block of a live patch loads machine code: every kernel it may switch to is warm first.

A kernel first called inside a block loads its machine code there (about 2 ms
of a 2.7 ms block): a knob's first glide, a cell's first crossfade.  The check
counts numba's compiled signatures over every kernel of the package in a fresh
process, plays a live session (knobs turned, numbers become signals and back,
cells re-run with crossfades, a module muted), and counts again.  It runs the
same session without :func:`jupysynth.warmup.warm_live` too, to show that the
count does move when something is cold.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SESSION = textwrap.dedent(
    """
    import json, sys, warnings
    import jupysynth as js
    from jupysynth import kernels
    from jupysynth.graph import snapshot
    from jupysynth.renderer import Renderer
    from jupysynth.warmup import warm_live, warmup

    SR, BS = 48000, 128

    def compiled():
        import importlib, pkgutil
        out = {}
        for info in pkgutil.iter_modules(kernels.__path__):
            mod = importlib.import_module(f"jupysynth.kernels.{info.name}")
            for name, fn in vars(mod).items():
                if hasattr(fn, "signatures") and fn.__module__ == mod.__name__:
                    out[f"{info.name}.{name}"] = len(fn.signatures)
        return out

    warmup()
    if sys.argv[1] == "warm":
        warm_live(SR, BS)
    before = compiled()

    saw, sine = js.Saw(freq=110, amp=0.2), js.Sine(freq=330, amp=0.2)
    pulse = js.Pulse(freq=55, width=0.3)
    lp = js.LowPass(saw + pulse, cutoff=900)
    r = Renderer(*snapshot([lp, sine]), SR, BS)
    ids = {spec.type: i for i, spec in r.nodes.items()}
    r.process(BS)
    for name, value in [("freq", 440.0), ("amp", 0.1), ("phase", 0.25)]:
        r.set(ids["Sine"], name, value, ramp=True)  # knobs turned, gliding
        r.process(BS)
    r.set(ids["Pulse"], "width", 0.6, ramp=True)
    r.set(ids["LowPass"], "cutoff", 1200.0, ramp=True)
    r.process(BS)
    # a cell run again, three times: its patch crossfades to the new one
    lfo = js.LFO(freq=2.0)
    for k in range(3):
        again = js.LowPass(js.Saw(freq=js.MulAdd(lfo, 5.0, 110.0 + k)), cutoff=900 + 100 * k)
        r.update(*snapshot([again, js.Sine(freq=220.0 + k)]), 3 * BS)
        for _ in range(4):
            r.process(BS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r.update(*snapshot([js.Gain(js.Gain(js.Square(freq=99.0), gain=1e6), gain=1e6)]))
        r.process(BS)
    after = compiled()
    print(json.dumps({k: [before.get(k, 0), n] for k, n in after.items() if before.get(k, 0) != n}))
    """
)


def _newly_compiled(mode: str) -> dict[str, list[int]]:
    out = subprocess.run(
        [sys.executable, "-c", SESSION, mode], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_live_session_after_warm_live_compiles_nothing_in_a_block():
    assert _newly_compiled("warm") == {}


def test_without_warm_live_the_same_session_loads_kernels_in_its_blocks():
    cold = _newly_compiled("cold")
    assert {"bus.ramp", "bus.mix_out_fade", "bus.scrub"} <= set(cold), cold
