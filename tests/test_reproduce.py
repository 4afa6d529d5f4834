"""The main job's console script at its tiny budget: the files, keys and meta it writes, its progress bars, its
numbers against the distribution of healthy runs, its refusals (before any work, in one line), and what an interrupted
run leaves behind.

Most tests read one shared run (the session fixture `main_job` in conftest.py): seeds 0-3 spread over two processes
under torchrun. The thresholds below come from healthy runs of the tiny budget over seeds 0-7, measured on 2026-12-04
(torch 2.14.1, 2-core CPU, one thread): `symmetries.experiments.run_rotated_digits(seed=s, config="tiny")`,
`run_ws_shift_toy(...)` and `run_msr_synthetic(...)` for s = 0..7 after `set_seed(s)`, as the main job calls them; and
the same rotated-digit runs with `fit`'s `augment` replaced by None (a wrapper around `symmetries.ws_mnist.fit`), the
pipeline with its augmentation silently off. Each threshold sits between the two with a margin. The rotated-digit
numbers were measured again on 2026-12-05 with the WSCNN started at the group `discover_kernel_symmetry` finds in the
training images (C4 for every seed 0-7, the same way)."""
import json, os, shutil, signal, statistics, subprocess, sys, time

import pytest

from conftest import BIN, ROOT, run

REPRODUCE = str(BIN / "symmetries_reproduce")

# test accuracy per seed (chance 0.1). Healthy, seeds 0-7: CNN 0.500-0.618, GCNN 0.436-0.596, WSCNN 0.376-0.534.
# Augmentation off: CNN 0.288-0.384 (GCNN 0.402-0.538, WSCNN 0.376-0.528 overlap the healthy ones: for those two the
# threshold only catches a network that does not learn).
MIN_ACCURACY = {"cnn": 0.44, "gcnn": 0.38, "wscnn": 0.34}
# quarter_turn_consistency, seed 0 of the run (the share of test digits put in one class in all four orientations).
# Healthy, seeds 0-7: CNN 0.516-0.636, GCNN 1.0, WSCNN 0.986-0.998. Augmentation off: CNN 0.022-0.074,
# WSCNN 0.956-0.984.
MIN_CONSISTENCY = {"cnn": 0.35, "gcnn": 1.0, "wscnn": 0.95}
# shift toy per seed. Healthy, seeds 0-7: equivariant rep_error 0.136-0.149 and test MSE 0.0019-0.0023 (the targets have
# unit variance: an untrained layer is near 1); invariant test accuracy 0.867-0.961 (chance 1/12).
MAX_SHIFT_REP_ERROR, MAX_SHIFT_MSE, MIN_SHIFT_ACCURACY = 0.2, 0.004, 0.8
# MSR, per seed, rank and model: the meta-test MSE after the tiny run's 10 outer steps over the MSE of the same learner
# untrained (the same run with outer_lr=0). Healthy, seeds 0-7: MAML-FC 0.867-0.957, MAML-LC 0.961-0.987,
# MAML-Conv 0.839-0.911, MSR-FC 0.9958-0.9996 (10 steps move MSR's sharing matrix very little).
MAX_MSE_RATIO = {"maml_fc": 0.975, "maml_lc": 0.993, "maml_conv": 0.95, "msr_fc": 0.99985}


def _runs(seeds):
    from symmetries.experiments import EXPERIMENTS
    return [(name, s) for name in EXPERIMENTS for s in seeds]


def test_main_job_files_meta_and_output(main_job):
    "The shared run: its files, keys, meta and results.md; rank 0's progress bars and last line; rank 1 silent."
    assert main_job.returncode == 0, main_job.failure()
    out, said = main_job.out, main_job.said
    for r in (0, 1): assert "SinkhornConvergenceWarning" not in said[r]["stderr"], said[r]["stderr"][-4000:]
    assert said[1] == {"stdout": "", "stderr": ""}, said[1]             # the other rank prints nothing (no error)
    results = main_job.results
    assert set(results) == {"msr_synthetic", "ws_shift_toy", "rotated_digits", "meta"}
    for rank in ("rank1", "rank2", "rank5"):
        assert set(results["msr_synthetic"][rank]) == {"maml_fc", "maml_lc", "maml_conv", "msr_fc"}
    for mode in ("equivariant", "invariant"):
        assert set(results["ws_shift_toy"][mode]) == {"rep_error", "accuracy_or_mse"}
    assert set(results["rotated_digits"]) == {"cnn", "gcnn", "wscnn"}
    meta = results["meta"]
    assert (meta["status"], meta["complete"], meta["budget"], meta["seed"], meta["seeds"], meta["processes"],
            meta["device"]) == ("complete", True, "tiny", 0, main_job.seeds, 2, "cpu")
    assert {"torch", "symmetries", "seconds", "units", "configurations", "runs"} <= set(meta)
    assert set(meta["seconds"]) == set(meta["configurations"]) == {"msr_synthetic", "ws_shift_toy", "rotated_digits"}
    assert "fraction in [0, 1]" in meta["units"]["rotated_digits"]
    md = (out / "results.md").read_text()
    assert "Symmetry found" in md and "discover_kernel_symmetry" in md
    assert "Predictions unchanged by quarter turns" in md
    assert "(budget `tiny`)" in md and "not** a reproduction" in md and "Incomplete" not in md
    from symmetries.experiments import reference_numbers
    ref = reference_numbers()
    assert "under-determined" in md and "colour bar" in md
    assert f"Reference rows: {ref['msr_synthetic']['source']}" in md and ref["rotated_digits"]["source"] in md
    assert "Seeds 0, 1, 2, 3" in md and "run by 2 processes" in md
    assert md.count("Mean ± std over seeds 0, 1, 2, 3 (n = 4") == 3, md
    for name in ("ws_shift_toy_equivariant.png", "ws_shift_toy_invariant.png"):
        assert (out / name).stat().st_size > 1000 and f"({name})" in md
    assert sorted(p.name for p in out.iterdir()) == sorted(["results.json", "results.md", *meta["figures"]])
    # rank 0: progress while the shift toy and the digits train; the last line names the files written
    err = said[0]["stderr"]
    assert "ws_shift_toy: 100%" in err and "rotated_digits: 100%" in err, err[-3000:]
    last = said[0]["stdout"].strip().splitlines()[-1]
    assert last == "wrote " + ", ".join(str(out / f) for f in ("results.json", "results.md", *meta["figures"])), last


def test_main_job_makes_each_run_once(main_job):
    "Under torchrun every (experiment, seed) run is made by exactly one process, as `spread_runs` deals them."
    assert main_job.returncode == 0, main_job.failure()
    from symmetries.reproduce import spread_runs
    runs = main_job.results["meta"]["runs"]
    made = sorted((r["experiment"], r["seed"]) for r in runs)
    assert made == sorted(_runs(main_job.seeds)), made                 # each once: none missing, none twice
    shares = spread_runs(_runs(main_job.seeds), 2, "tiny")
    assert {(r["experiment"], r["seed"]): r["process"] for r in runs} == {run: p for p, share in enumerate(shares)
                                                                           for run in share}
    assert all(share for share in shares) and all(r["seconds"] > 0 for r in runs)


def test_main_job_statistics_over_seeds(main_job):
    "meta.over_seeds: every number's values over the seeds (seeds differ), their mean and sample std; seed 0 on top."
    assert main_job.returncode == 0, main_job.failure()
    results = main_job.results; over = results["meta"]["over_seeds"]
    n = len(main_job.seeds)
    assert set(over) == {"msr_synthetic", "ws_shift_toy", "rotated_digits"}
    assert set(over["rotated_digits"]) == {"cnn", "gcnn", "wscnn"} and len(over["msr_synthetic"]) == 12
    assert set(over["ws_shift_toy"]) == {f"{m}.{k}" for m in ("equivariant", "invariant")
                                          for k in ("rep_error", "accuracy_or_mse")}
    for name, stats in over.items():
        per_seed = {tuple(s["values"][i] for s in stats.values()) for i in range(n)}
        assert len(per_seed) == n, (name, stats)              # each seed its own run (not one run's numbers n times)
        for path, s in stats.items():
            assert len(s["values"]) == n, (path, s)
            assert s["mean"] == pytest.approx(statistics.fmean(s["values"]), rel=1e-12), (path, s)
            assert s["std"] == pytest.approx(statistics.stdev(s["values"]), rel=1e-12), (path, s)
    assert over["rotated_digits"]["cnn"]["values"][0] == results["rotated_digits"]["cnn"]     # the top level is seed 0
    assert over["msr_synthetic"]["rank1.msr_fc"]["values"][0] == results["msr_synthetic"]["rank1"]["msr_fc"]
    assert over["ws_shift_toy"]["invariant.accuracy_or_mse"]["values"][0] == \
        results["ws_shift_toy"]["invariant"]["accuracy_or_mse"]


def test_rotated_digits_accuracy_over_seeds(main_job):
    "Every seed's networks above their healthy minimum (the CNN's also above what it reaches without augmentation)."
    assert main_job.returncode == 0, main_job.failure()
    over = main_job.results["meta"]["over_seeds"]["rotated_digits"]
    for model, least in MIN_ACCURACY.items():
        assert min(over[model]["values"]) >= least, (model, over[model]["values"])


def test_rotated_digits_symmetry_and_invariance(main_job):
    """Seed 0: the group found in the rotated training digits holds the quarter turns, the WSCNN's layers keep it
    through training (C4 by `c4_match` too where |G| = 4); the networks' predictions are as invariant as healthy ones."""
    assert main_job.returncode == 0, main_job.failure()
    sym = main_job.results["meta"]["rotated_digits_symmetry"]
    # healthy, seeds 0-7: C4 found (order 4); every layer's rounded R_g are the found group (1.0), and the lifting
    # layer's C4 score 1.0; tied copies of one rotation score at most 0.04 on the lifting layer
    assert sym["contains_c4"] and sym["order"] in (4, 8) and sym["discovered"] in ("C4", "D4"), sym
    assert sym["symmetry"].startswith(sym["discovered"]) and sym["regularizer"] == "none", sym
    assert sym["lift_group_match"] >= 0.95 and sym["group_group_match"] >= 0.95, sym
    assert ("lift_c4_match" in sym) == (sym["order"] == 4), sym            # the C4 score only where |G| = 4
    if sym["order"] == 4:
        assert sym["lift_c4_match"] >= 0.95 and sym["lift_quarter_turn"] >= 0.95, sym
        assert sym["group_c4_match"] >= 0.95, sym        # the group layers hold the found C4: C4 by this score too
    for model, least in MIN_CONSISTENCY.items():
        assert sym["quarter_turn_consistency"][model] >= least, (model, sym["quarter_turn_consistency"])


def test_shift_toy_over_seeds(main_job):
    "Every seed's shift toys: the equivariant layer recovers the shifts and fits; the invariant one classifies."
    assert main_job.returncode == 0, main_job.failure()
    over = main_job.results["meta"]["over_seeds"]["ws_shift_toy"]
    assert max(over["equivariant.rep_error"]["values"]) < MAX_SHIFT_REP_ERROR, over["equivariant.rep_error"]
    assert max(over["equivariant.accuracy_or_mse"]["values"]) < MAX_SHIFT_MSE, over["equivariant.accuracy_or_mse"]
    assert min(over["invariant.accuracy_or_mse"]["values"]) > MIN_SHIFT_ACCURACY, over["invariant.accuracy_or_mse"]


def test_msr_below_untrained_learner(main_job):
    """Every seed's MSE of every rank and model is below that of the same learner untrained: the run with outer_lr=0
    (the same tasks, the same start, the same held-out tasks), by at least the margin healthy runs show."""
    assert main_job.returncode == 0, main_job.failure()
    from symmetries.msr_synthetic import run_synthetic_table
    from symmetries.utils import cpu_threads
    over = main_job.results["meta"]["over_seeds"]["msr_synthetic"]
    for i, seed in enumerate(main_job.seeds):
        with cpu_threads(1): untrained = run_synthetic_table(config="tiny", seed=seed, outer_steps=1, outer_lr=0.0)
        for rank, row in untrained.items():
            for model, before in row.items():
                after = over[f"{rank}.{model}"]["values"][i]
                assert after / before < MAX_MSE_RATIO[model], (seed, rank, model, after, before)


def test_only_run_keeps_the_other_results(main_job, tmp_path):
    "An --only run into a folder keeps the other finished results with their metadata; --overwrite starts afresh."
    assert main_job.returncode == 0, main_job.failure()
    folder = tmp_path / "out"; shutil.copytree(main_job.out, folder)
    results = main_job.results; meta = results["meta"]
    env = {"OMP_NUM_THREADS": "1", "SYMMETRIES_QUIET": "1"}
    only = [REPRODUCE, "--budget", "tiny", "--only", "msr_synthetic", "--device", "cpu", "--out", str(folder)]
    res = run([*only, "--seed", "3"], timeout=600, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    merged = json.loads((folder / "results.json").read_text())
    assert set(merged) == set(results)
    assert merged["ws_shift_toy"] == results["ws_shift_toy"] and merged["rotated_digits"] == results["rotated_digits"]
    assert (merged["meta"]["seed"], merged["meta"]["experiments"], merged["meta"]["processes"]) == \
        (3, ["msr_synthetic"], 1)
    assert [(r["experiment"], r["seed"], r["process"]) for r in merged["meta"]["runs"]] == [("msr_synthetic", 3, 0)]
    over = meta["over_seeds"]["msr_synthetic"]          # seed 3 alone in one process: what the two processes made
    for rank, row in merged["msr_synthetic"].items():
        for model, mse in row.items(): assert mse == pytest.approx(over[f"{rank}.{model}"]["values"][3], rel=1e-5)
    assert set(merged["meta"]["earlier"]) == {"ws_shift_toy", "rotated_digits"}
    from symmetries.report import FIGURE_NAMES
    for name in ("ws_shift_toy", "rotated_digits"):       # each kept experiment keeps its own figures
        own = [f for f in meta["figures"] if f in FIGURE_NAMES[name]]
        assert own and merged["meta"]["earlier"][name]["figures"] == own, (name, merged["meta"]["earlier"][name])
    assert all(e["seed"] == 0 and e["started"] == meta["started"] for e in merged["meta"]["earlier"].values())
    assert "keeping ws_shift_toy, rotated_digits from the earlier run" in res.stdout, res.stdout
    md = (folder / "results.md").read_text()
    assert "| rank1 | ours (`tiny`) |" in md and "Kept from an earlier run in this folder: budget `tiny`, seed 0" in md
    assert "![shift toy, invariant](ws_shift_toy_invariant.png)" in md
    # --overwrite starts afresh: only this run's experiment is left in the files
    res = run([*only, "--overwrite"], timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert set(json.loads((folder / "results.json").read_text())) == {"msr_synthetic", "meta"}


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


def _refusal(argv, capsys):
    """Exit status, stdout and stderr of the console script's `main(argv)` called in this process: the refusals below
    need no process of their own (the console script itself refuses in `test_reproduce_refuses_unknown_names` and
    `test_reproduce_refuses_an_unreadable_results_file`)."""
    from symmetries.reproduce import main
    with pytest.raises(SystemExit) as stop: main(argv)
    said, err = capsys.readouterr()
    return stop.value.code, said, err


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
def test_reproduce_refuses_a_device_this_machine_lacks(tmp_path, capsys, device, message):
    if device.startswith("cuda") and _machine_has() == "cuda": pytest.skip("this machine has a GPU")
    out = tmp_path / "out"
    code, said, err = _refusal(["--budget", "tiny", "--device", device, "--out", str(out)], capsys)
    assert code == 2, said + err
    assert err.startswith("symmetries_reproduce: error: " + message) and err.count("\n") == 1, err
    assert "Traceback" not in err and said == ""
    assert not out.exists(), "the results folder was created before the device was checked"


def test_reproduce_refuses_an_unreadable_results_file(tmp_path):
    (tmp_path / "results.json").write_text('{"msr_synthetic": {')
    res = run([REPRODUCE, "--budget", "tiny", "--only", "msr_synthetic", "--out", str(tmp_path), "--device", "cpu"])
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "results.json holds results this job cannot read" in res.stderr and "(--overwrite)" in res.stderr
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
def test_reproduce_refuses_bad_arguments_before_any_work(capsys, monkeypatch, args, message):
    monkeypatch.chdir(ROOT)                     # `--out setup.py` names the repository's file
    t0 = time.time()
    code, said, err = _refusal(["--budget", "tiny", *args], capsys)
    assert code == 2, said + err
    assert err.startswith("symmetries_reproduce: error: " + message) and err.count("\n") == 1, err
    assert "Traceback" not in err and said == ""
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


def test_seed_and_seeds_together_are_refused(tmp_path):
    res = run([REPRODUCE, "--seed", "1", "--seeds", "0-1", "--out", str(tmp_path / "x")])
    assert res.returncode == 2 and "argument --seeds: not allowed with argument --seed" in res.stderr
    assert not (tmp_path / "x").exists()
