"""Meta-training speed of MSR-FC on the rank-1 synthetic problem: batched over tasks vs learn2learn's per-task loop.

    .venv/bin/python bench/bench_meta.py            # 300 timed outer steps (batched), 30 (learn2learn loop)
    .venv/bin/python bench/bench_meta.py --quick    # a few seconds: 40 / 5 steps

An outer step = sample 32 training tasks (1 support + 19 query examples each), one inner SGD step on v per task,
second-order query-loss gradient, one Adam step: exactly what `symmetries.meta.meta_train` does. Task sampling is
included in the time, as it is in the MSR authors' training loop (which this script does not run or time).
Prints tasks/s and ms per outer step for both paths and writes bench/results/meta.json (meta_quick.json with --quick).
"""
import argparse, json, os, platform, sys, time
from pathlib import Path

import torch

from symmetries.meta import MSRMAML, query_losses_batched, query_losses_l2l
from symmetries.meta_models import make_meta_model
from symmetries.tasks import make_tasks
from symmetries.utils import cpu_threads


def time_path(batched: bool, steps: int, warmup: int, meta_batch: int, problem: str, seed: int = 0) -> dict:
    "Median-free plain timing: `warmup` untimed outer steps, then `steps` timed ones."
    tasks = make_tasks(problem, seed=seed)
    torch.manual_seed(seed)
    learner = MSRMAML(make_meta_model("msr_fc", tasks), lr=0.1)
    opt = torch.optim.Adam(learner.meta_parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    loss_fn = query_losses_batched if batched else query_losses_l2l

    def step():
        batch = tasks.sample(meta_batch, "train", g)
        q = loss_fn(learner, batch)
        opt.zero_grad(set_to_none=True); q.mean().backward(); opt.step()

    for _ in range(warmup): step()
    start = time.perf_counter()
    for _ in range(steps): step()
    secs = time.perf_counter() - start
    return {"path": "batched" if batched else "learn2learn_loop", "steps": steps, "meta_batch": meta_batch,
            "ms_per_step": 1e3 * secs / steps, "tasks_per_s": steps * meta_batch / secs}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a few seconds instead of about a minute")
    p.add_argument("--steps", type=int, default=None,
                   help="timed outer steps of the batched path (default 300, quick 40)")
    p.add_argument("--loop-steps", type=int, default=None,
                   help="timed outer steps of the learn2learn loop (default 30, quick 5)")
    p.add_argument("--meta-batch", type=int, default=32)
    p.add_argument("--problem", default="rank1", choices=["rank1", "rank2", "rank5"])
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, what meta_train uses)")
    p.add_argument("--out", default=None, help="JSON output (default bench/results/meta.json or meta_quick.json)")
    a = p.parse_args()
    steps = a.steps or (40 if a.quick else 300)
    loop_steps = a.loop_steps or (5 if a.quick else 30)
    with cpu_threads(a.threads):
        rows = [time_path(True, steps, 10 if a.quick else 30, a.meta_batch, a.problem),
                time_path(False, loop_steps, 2, a.meta_batch, a.problem)]
    speedup = rows[1]["ms_per_step"] / rows[0]["ms_per_step"]
    print(f"MSR-FC on {a.problem}, {a.meta_batch} tasks per outer step, {a.threads} CPU thread(s), "
          f"{os.cpu_count()} cores")
    print(f"{'path':<18}{'ms/step':>10}{'tasks/s':>10}")
    for r in rows: print(f"{r['path']:<18}{r['ms_per_step']:>10.2f}{r['tasks_per_s']:>10.0f}")
    print(f"batched / learn2learn loop speed-up: {speedup:.1f}x  (target >= 3,000 tasks/s batched)")
    out = Path(a.out or Path(__file__).parent / "results" / ("meta_quick.json" if a.quick else "meta.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    info = {"benchmark": "msr_fc meta-training speed", "problem": a.problem, "threads": a.threads,
            "cpu_count": os.cpu_count(), "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "command": " ".join([Path(sys.executable).name] + sys.argv), "results": rows, "speedup": speedup,
            "target_tasks_per_s": 3000}
    out.write_text(json.dumps(info, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
