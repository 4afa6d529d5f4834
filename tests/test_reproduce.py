"""The main job's console script, at its tiny budget: the files, keys and meta it writes, its progress bars, its
refusals (before any work, in one line), and what an interrupted run leaves behind."""
import json, os, signal, subprocess, sys, time

import pytest

from conftest import BIN, ROOT, run

REPRODUCE = str(BIN / "symmetries_reproduce")
BARS_ON = {"OMP_NUM_THREADS": "1", "CI": "", "SYMMETRIES_QUIET": ""}   # progress bars print even off a terminal


def test_reproduce_tiny(tmp_path):
    res = run([REPRODUCE, "--budget", "tiny", "--out", str(tmp_path), "--device", "cpu"], timeout=900, env=BARS_ON)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    assert "SinkhornConvergenceWarning" not in res.stderr, res.stderr[-4000:]   # the R_g stay doubly stochastic
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == {"msr_synthetic", "ws_shift_toy", "rotated_digits", "meta"}
    for rank in ("rank1", "rank2", "rank5"):
        row = results["msr_synthetic"][rank]
        assert set(row) == {"maml_fc", "maml_lc", "maml_conv", "msr_fc"}
        assert all(isinstance(v, float) and v >= 0 for v in row.values())
    for mode in ("equivariant", "invariant"):
        row = results["ws_shift_toy"][mode]
        assert set(row) == {"rep_error", "accuracy_or_mse"} and all(isinstance(v, float) for v in row.values())
    assert set(results["rotated_digits"]) == {"cnn", "gcnn", "wscnn"}
    assert all(0.0 <= v <= 1.0 for v in results["rotated_digits"].values())
    meta = results["meta"]
    assert (meta["status"], meta["complete"], meta["budget"], meta["seed"], meta["device"]) == ("complete", True, "tiny", 0, "cpu")
    assert {"torch", "symmetries", "seconds", "units", "configurations"} <= set(meta)
    assert set(meta["seconds"]) == set(meta["configurations"]) == {"msr_synthetic", "ws_shift_toy", "rotated_digits"}
    assert "fraction in [0, 1]" in meta["units"]["rotated_digits"]
    sym = meta["rotated_digits_symmetry"]           # what the WSCNN found: C4 on every layer, from the training images
    assert sym["lift_c4_match"] >= 0.9 and sym["lift_quarter_turn"] >= 0.9 and sym["group_c4_match"] >= 0.9, sym
    assert "order 4" in sym["symmetry"] and sym["regularizer"] == "none"
    md = (tmp_path / "results.md").read_text()
    assert "Symmetry found" in md and "discover_kernel_symmetry" in md
    assert "(budget `tiny`)" in md and "not** a reproduction" in md and "Incomplete" not in md
    assert "under-determined" in md and "Reference rows: the MSR authors' own code" in md and "colour bar" in md
    for name in ("ws_shift_toy_equivariant.png", "ws_shift_toy_invariant.png"):
        assert (tmp_path / name).stat().st_size > 1000 and f"![shift toy" in md and f"({name})" in md
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["results.json", "results.md", *meta["figures"]])
    # progress while the shift toy and the digits train; the last line names the files written
    assert "ws_shift_toy: 100%" in res.stderr and "rotated_digits: 100%" in res.stderr, res.stderr[-3000:]
    last = res.stdout.strip().splitlines()[-1]
    assert last == "wrote " + ", ".join(str(tmp_path / f) for f in ("results.json", "results.md", *meta["figures"])), last
    # an --only run into the same folder keeps the other finished results, each with its own metadata
    res = run([REPRODUCE, "--budget", "tiny", "--only", "msr_synthetic", "--seed", "3", "--out", str(tmp_path), "--device", "cpu"],
              timeout=600, env={"SYMMETRIES_QUIET": "1"})
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    merged = json.loads((tmp_path / "results.json").read_text())
    assert set(merged) == set(results)
    assert merged["ws_shift_toy"] == results["ws_shift_toy"] and merged["rotated_digits"] == results["rotated_digits"]
    assert (merged["meta"]["seed"], merged["meta"]["experiments"]) == (3, ["msr_synthetic"])
    assert set(merged["meta"]["earlier"]) == {"ws_shift_toy", "rotated_digits"}
    assert merged["meta"]["earlier"]["ws_shift_toy"]["figures"] == meta["figures"]
    assert all(e["seed"] == 0 and e["started"] == meta["started"] for e in merged["meta"]["earlier"].values())
    assert "keeping ws_shift_toy, rotated_digits from the earlier run" in res.stdout, res.stdout
    md = (tmp_path / "results.md").read_text()
    assert "| rank1 | ours (`tiny`) |" in md and "Kept from an earlier run in this folder: budget `tiny`, seed 0" in md
    assert "![shift toy, invariant](ws_shift_toy_invariant.png)" in md
    # --overwrite starts afresh: only this run's experiment is left in the files
    res = run([REPRODUCE, "--budget", "tiny", "--only", "msr_synthetic", "--overwrite", "--out", str(tmp_path), "--device", "cpu"],
              timeout=600, env={"SYMMETRIES_QUIET": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert set(json.loads((tmp_path / "results.json").read_text())) == {"msr_synthetic", "meta"}


def test_help_answers_before_torch_loads():
    # --help (and every refused argument) must not wait for torch and the experiment modules
    code = ("import sys, time; t = time.time()\nfrom symmetries.reproduce import main\ntry: main(['--help'])\n"
            "except SystemExit: pass\nprint('LOADED', sorted(m for m in ('torch', 'symmetries.meta', 'symmetries.ws_mnist', "
            "'matplotlib') if m in sys.modules), round(time.time() - t, 2))")
    res = run([sys.executable, "-c", code])
    assert res.returncode == 0, res.stderr
    assert "--overwrite" in res.stdout and "LOADED [] " in res.stdout, res.stdout[-500:]
    t0 = time.time()
    res = run([REPRODUCE, "--help"])
    assert res.returncode == 0 and "usage: symmetries_reproduce" in res.stdout
    assert time.time() - t0 < 5, time.time() - t0     # about 0.2 s; torch alone takes seconds


def _machine_has():
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("device, message", [
    ("mps", "--device mps: no Apple GPU (MPS) is present here; this machine has cpu"),
    ("gpu", "--device 'gpu' is not a device name (a GPU is named cuda, or cuda:N); this machine has cpu"),
    ("cuda:0", "--device cuda:0: no GPU is present here; this machine has cpu (no GPU)"),
    ("cuda", "--device cuda: no GPU is present here; this machine has cpu (no GPU)"),
    ("xpu", "--device xpu: the main job runs on cpu, cuda or mps; this machine has cpu"),
])
def test_reproduce_refuses_a_device_this_machine_lacks(tmp_path, device, message):
    if device.startswith("cuda") and _machine_has() == "cuda": pytest.skip("this machine has a GPU")
    out = tmp_path / "out"
    res = run([REPRODUCE, "--budget", "tiny", "--device", device, "--out", str(out)])
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.startswith("symmetries_reproduce: error: " + message) and res.stderr.count("\n") == 1, res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""
    assert not out.exists(), "the results folder was created before the device was checked"


def test_reproduce_refuses_an_unreadable_results_file(tmp_path):
    (tmp_path / "results.json").write_text('{"msr_synthetic": {')
    res = run([REPRODUCE, "--budget", "tiny", "--only", "msr_synthetic", "--out", str(tmp_path), "--device", "cpu"])
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert f"results.json holds results this job cannot read" in res.stderr and "(--overwrite)" in res.stderr
    assert (tmp_path / "results.json").read_text() == '{"msr_synthetic": {'     # untouched


def test_reproduce_refuses_unknown_names():
    res = run([REPRODUCE, "--only", "cifar"])
    assert res.returncode == 2
    assert "invalid choice: 'cifar'" in res.stderr and "msr_synthetic" in res.stderr
    res = run([REPRODUCE, "--frobnicate"])
    assert res.returncode == 2 and "unrecognized arguments" in res.stderr


@pytest.mark.parametrize("args, message", [
    (["--seed", "-1"], "--seed must be an int in [0, 2147483647], got -1"),
    (["--out", "/dev/null/x"], "--out /dev/null/x cannot be created: /dev/null is not a folder"),
    (["--out", "/proc/x"], "--out /proc/x: cannot create this folder (No such file or directory)"),
    (["--out", "setup.py"], "--out setup.py exists and is not a folder"),
    (["--out", "/sys"], "--out /sys: cannot write into this folder ("),   # exists, takes no files (even for root)
])
def test_reproduce_refuses_bad_arguments_before_any_work(args, message):
    t0 = time.time()
    res = run([REPRODUCE, "--budget", "tiny", *args])
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.startswith("symmetries_reproduce: error: " + message) and res.stderr.count("\n") == 1, res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""
    assert time.time() - t0 < 60


def _interrupt_after_msr(out):
    "Start the tiny run into `out`, send Ctrl-C once the MSR table is written; (return code, stderr)."
    # pytest-xdist's workers ignore SIGINT and a child inherits that (Python then installs no Ctrl-C handler): restore
    # the default in the child, as an interactive shell would have it
    proc = subprocess.Popen([REPRODUCE, "--budget", "tiny", "--out", str(out), "--device", "cpu"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "SYMMETRIES_QUIET": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        try: finished = json.loads((out / "results.json").read_text())["meta"]["finished"]
        except (OSError, ValueError, KeyError): finished = []
        if "msr_synthetic" in finished: break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted: " + proc.stderr.read()[-2000:]
    proc.send_signal(signal.SIGINT)
    out_, err = proc.communicate(timeout=300)
    return proc.returncode, err


def test_reproduce_interrupted_keeps_what_finished(tmp_path):
    "Ctrl-C after the MSR table: exit 130, results.json/md keep it and say the run is incomplete, no temporary files."
    rc, err = _interrupt_after_msr(tmp_path)
    assert rc == 130, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("symmetries_reproduce: error: interrupted"), err[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert "msr_synthetic" in results and results["meta"]["status"] == "interrupted" and not results["meta"]["complete"]
    assert results["meta"]["pending"], results["meta"]
    assert "**Incomplete run** (the run was interrupted)" in (tmp_path / "results.md").read_text()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_reproduce_seeds_under_torchrun_and_in_one_process(tmp_path):
    # two processes share the (experiment, seed) runs of the tiny budget over seeds 0 and 1; rank 0 alone writes and speaks
    two, logs = tmp_path / "two", tmp_path / "logs"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--log-dir", str(logs),
           "--redirects", "3", "-m", "symmetries.reproduce", "--budget", "tiny", "--seeds", "0-1", "--out", str(two), "--device", "cpu"]
    env = {"OMP_NUM_THREADS": "1", "SYMMETRIES_QUIET": "1"}
    res = run(cmd, timeout=600, env=env)
    said = {r: {s: "".join(p.read_text() for p in logs.rglob(f"attempt_0/{r}/{s}.log")) for s in ("stdout", "stderr")} for r in (0, 1)}
    assert res.returncode == 0, res.stderr[-3000:] + str(said)
    assert said[1] == {"stdout": "", "stderr": ""}, said[1]             # the other rank prints nothing (no error happened)
    assert said[0]["stdout"].strip().splitlines()[-1].startswith(f"wrote {two / 'results.json'}"), said[0]
    results = json.loads((two / "results.json").read_text()); meta = results["meta"]
    assert sorted(p.name for p in two.iterdir()) == sorted(["results.json", "results.md", *meta["figures"]])
    assert (meta["status"], meta["seeds"], meta["seed"], meta["processes"]) == ("complete", [0, 1], 0, 2)
    assert set(results) == {"msr_synthetic", "ws_shift_toy", "rotated_digits", "meta"}
    assert isinstance(results["rotated_digits"]["cnn"], float) and isinstance(results["msr_synthetic"]["rank1"]["msr_fc"], float)
    over = meta["over_seeds"]
    assert set(over) == {"msr_synthetic", "ws_shift_toy", "rotated_digits"}
    assert set(over["rotated_digits"]) == {"cnn", "gcnn", "wscnn"} and len(over["msr_synthetic"]) == 12
    assert set(over["ws_shift_toy"]) == {f"{m}.{k}" for m in ("equivariant", "invariant") for k in ("rep_error", "accuracy_or_mse")}
    for stats in over.values():
        for s in stats.values():
            assert len(s["values"]) == 2 and s["mean"] == pytest.approx(sum(s["values"]) / 2)
            assert s["std"] == pytest.approx(abs(s["values"][0] - s["values"][1]) / 2 ** 0.5)
    assert over["rotated_digits"]["cnn"]["values"][0] == results["rotated_digits"]["cnn"]     # the top level is seed 0
    assert over["msr_synthetic"]["rank1.msr_fc"]["values"][0] == results["msr_synthetic"]["rank1"]["msr_fc"]
    md = (two / "results.md").read_text()
    assert "Seeds 0, 1" in md and "run by 2 processes" in md and md.count("Mean ± std over seeds 0, 1 (n = 2") == 3, md
    # one process, the same seeds: the runs in turn, the same layout and the same numbers (the MSR table, the quickest)
    one = tmp_path / "one"
    res = run([REPRODUCE, "--budget", "tiny", "--only", "msr_synthetic", "--seeds", "0-1", "--out", str(one),
               "--device", "cpu"], timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    alone = json.loads((one / "results.json").read_text())
    assert (alone["meta"]["seeds"], alone["meta"]["processes"]) == ([0, 1], 1)
    assert alone["meta"]["over_seeds"]["msr_synthetic"].keys() == over["msr_synthetic"].keys()
    for path, s in over["msr_synthetic"].items():      # seed 0 ran on rank 0 and seed 1 on rank 1, each alone
        assert alone["meta"]["over_seeds"]["msr_synthetic"][path]["values"] == pytest.approx(s["values"], rel=1e-5), path
    # --seed and --seeds together are refused before any work
    res = run([REPRODUCE, "--seed", "1", "--seeds", "0-1", "--out", str(tmp_path / "x")])
    assert res.returncode == 2 and "argument --seeds: not allowed with argument --seed" in res.stderr and not (tmp_path / "x").exists()
