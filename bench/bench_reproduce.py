"""How long the main job takes: runs `symmetries_reproduce` at a budget, one experiment after another, and records the
wall time of each with the machine it ran on. Its output is the measured source of the main job's time estimates
(`symmetries.experiments.CPU_SECONDS`, which the job announces and the README quotes).

    .venv/bin/python bench/bench_reproduce.py --budget fast     # about 5 min on 2 cores -> results/reproduce_fast.json
    .venv/bin/python bench/bench_reproduce.py --budget tiny     # seconds -> results/reproduce_tiny.json

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
    a = p.parse_args(argv)
    import torch
    from symmetries import __version__
    from symmetries.reproduce import reproduce
    from benchutil import device_name
    load_before = os.getloadavg()
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        res = reproduce(tmp, budget=a.budget, device=a.device, quiet=True)
    total = time.time() - t0
    record = {"command": f"python bench/bench_reproduce.py --budget {a.budget} --device {a.device}",
              "date": datetime.date.today().isoformat(), "budget": a.budget, "device": a.device,
              "machine": f"{device_name(torch.device(a.device))}, {os.cpu_count()} cores, "
                         f"{torch.get_num_threads()} torch threads",
              "torch": torch.__version__, "python": platform.python_version(), "symmetries": __version__,
              "load_average_before": [round(x, 2) for x in load_before],
              "load_average_after": [round(x, 2) for x in os.getloadavg()],
              "seconds": res["meta"]["seconds"], "total_seconds": round(total, 1)}
    out = Path(a.out) if a.out else HERE / "results" / f"reproduce_{a.budget}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
