"""The layout shows the processes: the engine process loads no kernel-side code."""

from __future__ import annotations

import subprocess
import sys


def test_the_engine_process_modules_import_nothing_of_the_kernel_side():
    code = (
        "import sys\n"
        "import jupysynth.engine.child, jupysynth.engine.worker, jupysynth.engine.auto\n"
        "import jupysynth.engine.sandbox, jupysynth.engine.browser\n"
        "print(sorted(m for m in sys.modules if m.startswith(('jupysynth.player', "
        "'jupysynth.notebook', 'IPython', 'ipywidgets'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_the_kernel_side_is_where_the_old_names_lead():
    import jupysynth as js
    import jupysynth.engine as engine
    from jupysynth.player import Engine, panic, play, stop

    assert (engine.Engine, engine.play, engine.stop, engine.panic) == (Engine, play, stop, panic)
    assert js.Engine is Engine and js.panic is panic
