"""The browser tests' shared fixture: a Jupyter server whose kernels play in the page."""

from __future__ import annotations

import pytest
from labserver import LabServer, notebook

from .test_audio import CELLS
from .test_lab import need_browser


@pytest.fixture(scope="module")
def server(tmp_path_factory, request):
    need_browser()
    work = tmp_path_factory.mktemp(request.param)
    (work / "sound.ipynb").write_text(notebook(CELLS))
    srv = LabServer(work, app=request.param, env={"JUPYSYNTH_OUTPUT": "browser"})
    yield srv
    alive = srv.stop()
    assert not alive, f"processes left behind by the kernel or its engine: {alive}"
