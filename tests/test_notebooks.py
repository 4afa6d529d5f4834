"""Every notebook runs top to bottom under `nbdev_test` (fast defaults; `slow`/`gpu`/`colab` cells skipped) and leaves
no process-wide state behind for the next notebook of an `nbdev_test --n_workers N` worker (tests/run_notebook.py)."""
import os, sys
from pathlib import Path

import pytest

from conftest import ROOT, run

NOTEBOOKS = sorted((ROOT / "nbs").glob("*.ipynb"))


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook(nb):
    # pytest-xdist runs notebooks side by side: one thread each keeps 2 cores busy without oversubscribing them
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"} if workers > 1 else {}
    # nbdev_test's own runner, in a fresh process per notebook, then a check that the notebook restored grad mode,
    # torch's defaults, threads, environment and working directory
    res = run([sys.executable, str(ROOT / "tests" / "run_notebook.py"), str(nb.relative_to(ROOT))], timeout=1800,
              env=env)
    assert res.returncode == 0, f"nbdev_test failed for {nb.name}:\n{res.stdout[-3000:]}\n{res.stderr[-6000:]}"


def test_a_notebook_that_leaves_grad_mode_off_fails(tmp_path):
    # what broke 26_ws_mnist when it ran after 05_layers in one nbdev_test worker: the harness must catch it
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import torch\n_ = torch.set_grad_enabled(False)")])
    nbformat.write(nb, tmp_path / "leaks.ipynb")
    res = run([sys.executable, str(ROOT / "tests" / "run_notebook.py"), str(tmp_path / "leaks.ipynb")], timeout=300)
    assert res.returncode == 3, res.stdout[-2000:] + res.stderr[-2000:]
    assert "'grad enabled': (True, False)" in res.stderr, res.stderr[-2000:]
