"""Whole training steps of the MNIST networks (CNN, GCNN, WSCNN), side by side in one process, and the number of aten
operations one step dispatches.

    python bench/bench_models.py                    # CPU, paper sizes -> bench/results/models.json
    python bench/bench_models.py --device cuda      # the same on a GPU: bench/results/models_cuda.json
    python bench/bench_models.py --quick            # smoke run (batch 8, width 8, few rounds)

Step = forward, cross-entropy, backward, AdamW step (what `symmetries.train.fit` does per batch). Timing as in
`bench_layers.py`: warm-up, then interleaved rounds (cnn, gcnn, wscnn, then reversed), the median of per-round ratios
to the GCNN. WSCNN is timed in two regimes: at initialisation (logits uniform in [0, 1): Sinkhorn stops after a few
iterations on a CPU) and trained (sharp logits: all 20 iterations, the worst case).

Operation count: every aten operation that reaches the dispatcher below autograd (a `TorchDispatchMode`, so the
backward's operations count too) in one training step, at width 8 and batch 8 (where the count, not the arithmetic,
sets the cost). Operations inside a composite operation are not counted separately; no custom operator hides any
of ours (everything the layers run is plain aten).
"""
import argparse, collections, json, platform, sys, time, warnings
from pathlib import Path

from benchutil import reexec_with_malloc_settings, device_name, sync
reexec_with_malloc_settings()

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from symmetries.models import CNN, GCNN, WSCNN

RESULTS = ROOT / "bench" / "results"


class CountOps(TorchDispatchMode):
    "Counts the aten operations dispatched while active (each operation once, its internals not)."
    def __init__(self):
        super().__init__(); self.n = 0; self.by_op = collections.Counter()
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1; self.by_op[str(func)] += 1
        return func(*args, **(kwargs or {}))


def sharpen(model, std=5.0, seed=0):
    "Trained regime: logits with a large spread, so Sinkhorn runs all its iterations."
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.representation_parameters(): p.copy_(std * torch.randn(p.shape, generator=g))
    return model


def make(name, hidden, device, sharp=False):
    torch.manual_seed(0)
    m = {"cnn": lambda: CNN(hidden_channels=2 * hidden), "gcnn": lambda: GCNN(hidden_channels=hidden),
         "wscnn": lambda: WSCNN(hidden_channels=hidden)}[name]()
    if sharp: sharpen(m)
    return m.to(device)


def step_fn(model, x, y):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    return step


def count_ops(fn):
    fn(); fn()                                   # optimiser state exists from here on
    with CountOps() as c: fn()
    return c


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2, the CI machine's cores)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    warnings.simplefilter("ignore")              # the sharp regime is meant to be unconverged
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available(): raise SystemExit("--device cuda: no CUDA device here")
    clock = time.process_time if device.type == "cpu" and a.threads == 1 else time.perf_counter
    B, hidden = (8, 8) if a.quick else (64, 32)
    rounds = a.rounds or (3 if a.quick else 7)
    name = device_name(device)
    res = {"meta": {"torch": torch.__version__, "device": str(device), "device_name": name, "threads": a.threads,
                    "batch": B, "hidden": hidden, "python": platform.python_version()}}
    print(f"{name} ({device}), torch {torch.__version__}, batch {B}, width {hidden}", flush=True)

    # operation counts: width 8, batch 8 (CPU), at init and in the trained regime
    xs, ys = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    counts = {}
    for label, nm, sharp in (("cnn", "cnn", False), ("gcnn", "gcnn", False), ("wscnn init", "wscnn", False),
                             ("wscnn trained", "wscnn", True)):
        counts[label] = count_ops(step_fn(make(nm, 8, "cpu", sharp), xs, ys)).n
    res["ops_per_step"] = {"shape": "width 8, batch 8, CPU, one AdamW training step", **counts,
                           "ratio_init": counts["wscnn init"] / counts["gcnn"],
                           "ratio_trained": counts["wscnn trained"] / counts["gcnn"], "target_ratio": 3.0}
    for k, v in counts.items():
        print(f"aten ops per training step  {k:<14} {v:5d}  ({v / counts['gcnn']:.2f}x GCNN)", flush=True)

    # timing at the paper's sizes
    x, y = torch.randn(B, 1, 28, 28, device=device), torch.randint(0, 10, (B,), device=device)
    fns = {"cnn": step_fn(make("cnn", hidden, device), x, y), "gcnn": step_fn(make("gcnn", hidden, device), x, y),
           "wscnn init": step_fn(make("wscnn", hidden, device), x, y),
           "wscnn trained": step_fn(make("wscnn", hidden, device, sharp=True), x, y)}
    for f in fns.values():
        for _ in range(3): f()
    times = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for k in (names if r % 2 == 0 else names[::-1]):
            n = 1 if device.type == "cpu" and not a.quick else 10
            sync(device); t = clock()
            for _ in range(n): fns[k]()
            sync(device); times[k].append((clock() - t) / n)
    med = lambda v: sorted(v)[len(v) // 2]
    res["step_s"] = {k: {"median_s": med(v), "times_s": v} for k, v in times.items()}
    for k in names:
        ratios = sorted(a_ / b_ for a_, b_ in zip(times[k], times["gcnn"]))
        res["step_s"][k]["ratio_to_gcnn"] = med(ratios)
        print(f"training step {k:<14} {med(times[k]) * 1e3:9.2f} ms  ({med(ratios):.2f}x GCNN)", flush=True)
    res["step_s"]["target_ratio_wscnn_to_gcnn"] = 1.25
    out = Path(a.out or RESULTS / ("models.json" if device.type == "cpu" else f"models_{device.type}.json"))
    out.parent.mkdir(parents=True, exist_ok=True); out.write_text(json.dumps(res, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
