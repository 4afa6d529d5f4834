"""The main job's console script, at its tiny budget: the files and keys it writes, and its refusals."""
import json

from conftest import BIN, run


def test_reproduce_tiny(tmp_path):
    res = run([str(BIN / "symmetries_reproduce"), "--budget", "tiny", "--out", str(tmp_path), "--device", "cpu"],
              timeout=900, env={"OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == {"msr_synthetic", "ws_shift_toy", "rotated_digits"}
    for rank in ("rank1", "rank2", "rank5"):
        row = results["msr_synthetic"][rank]
        assert set(row) == {"maml_fc", "maml_lc", "maml_conv", "msr_fc"}
        assert all(isinstance(v, float) and v >= 0 for v in row.values())
    for mode in ("equivariant", "invariant"):
        row = results["ws_shift_toy"][mode]
        assert set(row) == {"rep_error", "accuracy_or_mse"} and all(isinstance(v, float) for v in row.values())
    assert set(results["rotated_digits"]) == {"cnn", "gcnn", "wscnn"}
    assert all(0.0 <= v <= 1.0 for v in results["rotated_digits"].values())
    md = (tmp_path / "results.md").read_text()
    assert "tiny smoke run (CPU)" in md and "not** a reproduction" in md
    assert (tmp_path / "ws_shift_toy_equivariant.png").stat().st_size > 1000
    assert (tmp_path / "ws_shift_toy_invariant.png").stat().st_size > 1000


def test_reproduce_refuses_unknown_names():
    res = run([str(BIN / "symmetries_reproduce"), "--only", "cifar"])
    assert res.returncode == 2
    assert "invalid choice: 'cifar'" in res.stderr and "msr_synthetic" in res.stderr
    res = run([str(BIN / "symmetries_reproduce"), "--frobnicate"])
    assert res.returncode == 2 and "unrecognized arguments" in res.stderr
