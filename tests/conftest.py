import json, os, subprocess, sys, time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(cmd, timeout=600, env=None, **kw):
    "Run `cmd` (list) in the repo root, capturing text output."
    return subprocess.run(cmd, cwd=kw.pop("cwd", ROOT), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, **kw)


@pytest.fixture(scope="session")
def root(): return ROOT


# ---- the main job, run once for the whole test session ------------------------------------------------------------

MAIN_JOB_SEEDS = [0, 1, 2, 3]
"The seeds of the shared tiny run: enough for a distribution (the mean differs from the median), 2 per process."


@dataclass
class MainJob:
    "The shared run: its output folder (read it, never write into it), exit status, what each rank printed, seconds."
    out: Path
    returncode: int | None
    said: dict                  # rank -> {"stdout": ..., "stderr": ...} (torchrun's per-rank logs)
    launcher: dict              # torchrun's own {"stdout", "stderr"}
    seconds: float
    seeds: list

    @property
    def results(self) -> dict: return json.loads((self.out / "results.json").read_text())

    def failure(self) -> str:
        "Everything printed, for an assertion message."
        return f"exit {self.returncode}\n{self.launcher['stderr'][-3000:]}\n{json.dumps(self.said)[-6000:]}"


def _run_main_job(base: Path) -> dict:
    """`symmetries_reproduce --budget tiny --seeds 0-3` under torchrun with two processes (the runs spread over them),
    with rank 0's progress bars on, into `base/out`; what it printed is kept in `base/main_job.json`."""
    out, logs = base / "out", base / "logs"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--log-dir",
           str(logs), "--redirects", "3", "-m", "symmetries.reproduce", "--budget", "tiny",
           "--seeds", ",".join(map(str, MAIN_JOB_SEEDS)), "--out", str(out), "--device", "cpu"]
    t0 = time.time()
    try:
        res = run(cmd, timeout=900, env={"OMP_NUM_THREADS": "1", "CI": "", "SYMMETRIES_QUIET": ""})
        rc, launcher = res.returncode, {"stdout": res.stdout, "stderr": res.stderr}
    except subprocess.TimeoutExpired as e:
        rc, launcher = None, {"stdout": str(e.stdout or ""), "stderr": f"timed out after {e.timeout} s"}
    said = {r: {s: "".join(p.read_text() for p in logs.rglob(f"attempt_0/{r}/{s}.log")) for s in ("stdout", "stderr")}
            for r in (0, 1)}
    record = {"returncode": rc, "said": said, "launcher": launcher, "seconds": time.time() - t0,
              "seeds": MAIN_JOB_SEEDS}
    (base / "main_job.json").write_text(json.dumps(record))
    return record


@pytest.fixture(scope="session")
def main_job(tmp_path_factory, request) -> MainJob:
    """The main job's tiny budget over `MAIN_JOB_SEEDS`, run once per test session and read by every test that needs
    it. Under pytest-xdist the workers share it: the first to ask runs it under a file lock in the session's common
    temporary folder, the others wait for the lock and read what it left."""
    if not hasattr(request.config, "workerinput"):          # not an xdist worker: this process is the session
        base = tmp_path_factory.mktemp("main_job")
        record = _run_main_job(base)
    else:
        from filelock import FileLock
        base = tmp_path_factory.getbasetemp().parent / "main_job"       # one folder per session, shared by workers
        with FileLock(str(base) + ".lock"):
            done = base / "main_job.json"
            if done.exists(): record = json.loads(done.read_text())
            else:
                base.mkdir(exist_ok=True)
                record = _run_main_job(base)
    record["said"] = {int(r): s for r, s in record["said"].items()}
    return MainJob(base / "out", **record)
