"""The lessons in notebooks/ run top to bottom and print what they printed when written (nbval).

Each notebook runs in its own pytest process with ``--nbval``: cells marked
``# NBVAL_IGNORE_OUTPUT`` (players, widgets, plots, the engine's load line)
only have to run; every other cell's output (the measurements the lesson
teaches from) must match the stored output.  The engine runs headless, so
no sound card is needed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_the_lessons_are_all_there():
    names = [p.stem[:2] for p in NOTEBOOKS]
    assert names == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_its_checked_outputs_match(notebook, tmp_path):
    root = str(notebook.parents[1])  # this checkout, whatever is installed
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, JUPYSYNTH_HEADLESS="1", MPLBACKEND="Agg", PYTHONPATH=path)
    env.pop("JUPYSYNTH_OFFLINE", None)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "--nbval",
        "--nbval-current-env",
        "--nbval-cell-timeout=300",
        "-p",
        "no:cacheprovider",
        "-q",
        "--rootdir",
        str(tmp_path),
        str(notebook),
    ]
    proc = subprocess.run(
        cmd, cwd=notebook.parent, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, f"nbval failed on {notebook.name}:\n{proc.stdout[-6000:]}"
