"""Every notebook runs top to bottom under `nbdev_test` (fast defaults; `slow`/`gpu`/`colab` cells skipped)."""
import os
from pathlib import Path

import pytest

from conftest import BIN, ROOT, run

NOTEBOOKS = sorted((ROOT / "nbs").glob("*.ipynb"))


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook(nb):
    # pytest-xdist runs notebooks side by side: one thread each keeps 2 cores busy without oversubscribing them
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"} if workers > 1 else {}
    res = run([str(BIN / "nbdev_test"), "--path", str(nb.relative_to(ROOT)), "--do_print"], timeout=1800, env=env)
    assert res.returncode == 0, f"nbdev_test failed for {nb.name}:\n{res.stdout[-3000:]}\n{res.stderr[-6000:]}"
