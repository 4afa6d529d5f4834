"""How long the main job takes: runs `symmetries_reproduce` at a budget, one experiment after another, and records the
wall time of each with the machine it ran on. Its output is the measured source of the main job's time estimates
(`symmetries.experiments.CPU_SECONDS`, which the job announces and the README quotes).

    .venv/bin/python bench/bench_reproduce.py --budget fast     # about 5 min on 2 cores -> results/reproduce_fast.json
    .venv/bin/python bench/bench_reproduce.py --budget tiny     # seconds -> results/reproduce_tiny.json

What the fast budget produces, over seeds (the README's expectations read it):

    .venv/bin/python bench/bench_reproduce.py --budget fast --only msr_synthetic ws_shift_toy --seeds 0-2 \
        --threads 1 --out bench/results/reproduce_fast_results.json

The machine's load average before and after is recorded: other jobs on the same cores stretch every figure.
"""
import argparse, datetime, json, os, platform, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", default="fast", choices=["tiny", "fast", "paper"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="JSON file (default: bench/results/reproduce_BUDGET.json)")
    p.add_argument("--only", nargs="+", default=None, help="only these experiments (default: all)")
    p.add_argument("--seeds", default=None, help="seeds as the main job takes them (0-2, 0,3); records the numbers too")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    a = p.parse_args(argv)
    import torch
    from symmetries import __version__
    from symmetries.reproduce import reproduce
    from benchutil import device_name
    if a.threads: torch.set_num_threads(a.threads)
    load_before = os.getloadavg()
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        res = reproduce(tmp, budget=a.budget, device=a.device, quiet=True, only=a.only, seeds=a.seeds)
    total = time.time() - t0
    extra = "".join(f" {flag} {v}" for flag, v in (("--only", " ".join(a.only or ())), ("--seeds", a.seeds),
                                                   ("--threads", a.threads)) if v)
    record = {"command": f"python bench/bench_reproduce.py --budget {a.budget} --device {a.device}{extra}",
              "date": datetime.date.today().isoformat(), "budget": a.budget, "device": a.device,
              "machine": f"{device_name(torch.device(a.device))}, {os.cpu_count()} cores, "
                         f"{torch.get_num_threads()} torch threads",
              "torch": torch.__version__, "python": platform.python_version(), "symmetries": __version__,
              "load_average_before": [round(x, 2) for x in load_before],
              "load_average_after": [round(x, 2) for x in os.getloadavg()],
              "seconds": res["meta"]["seconds"], "total_seconds": round(total, 1)}
    if a.seeds:      # the numbers themselves: each experiment's first seed, and every number over the seeds
        record.update(seeds=res["meta"]["seeds"], runs=res["meta"]["runs"],
                      results={n: res[n] for n in res["meta"]["finished"]}, over_seeds=res["meta"]["over_seeds"])
    out = Path(a.out) if a.out else HERE / "results" / f"reproduce_{a.budget}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
