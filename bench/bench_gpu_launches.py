"""What launches cost on a GPU, side by side in one run: the layers and training steps with the eager Sinkhorn (the
default) and with the opt-in one-kernel Sinkhorn (`symmetries.sinkhorn.FUSED_SINKHORN`), and CUDA-graphed steps.

    python bench/bench_gpu_launches.py --device cuda                  # about a minute on a recent GPU
    python bench/bench_gpu_launches.py --device cuda --authors PATH   # also the authors' layers (a checkout of theirs)
    python bench/bench_gpu_launches.py --device cpu --quick           # plumbing only: no fused kernel on a CPU

Printed and written to bench/results/gpu_launches.json (a copy into $OUT when that is set; --quick writes
gpu_launches_quick.json, never a recorded result):
0. the fused Sinkhorn against the eager one on this device (`fused_sinkhorn_deviations`: values, row errors, gradients);
1. one training step (forward, cross-entropy, backward, AdamW) at batch 64 and the paper's size (28x28, width 32, 4
   group layers, kernel 5, |G| 4): CNN, GCNN, WSCNN with the eager and with the fused Sinkhorn, and the GCNN and
   fused WSCNN steps captured as CUDA graphs, each with its ratio to the GCNN and, on CUDA, the kernels it launches;
2. the group and lifting layers (forward + backward, sharp logits: all 20 iterations) at batch 64 and 256: eager,
   fused, the plain convolution with the prebuilt kernel (the floor) and, with --authors, the authors' layer, each
   with its ratio to the floor.
Each time is the median over interleaved rounds of the mean time per call (CUDA events on a GPU).
"""
import argparse, json, os, statistics, sys, time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchutil import device_name, load_authors, sync

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import symmetries.sinkhorn as sk
from symmetries.layers import WSGroupConv2d, WSLiftConv2d, set_representation_logits
from symmetries.models import CNN, GCNN, WSCNN


def per_call(fn, n, dev) -> float:
    "Mean seconds per call of `fn` over `n` calls."
    sync(dev)
    if dev.type == "cuda":
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(n): fn()
        b.record(); b.synchronize()
        return a.elapsed_time(b) / 1e3 / n
    t = time.perf_counter()
    for _ in range(n): fn()
    return (time.perf_counter() - t) / n


def compare(fns: dict, dev, rounds: int, n: int, warmup: int = 5) -> dict:
    "{name: median ms per call} over interleaved rounds (the order reversed every other round)."
    for f in fns.values():
        for _ in range(warmup): f()
    times = {k: [] for k in fns}
    for r in range(rounds):
        for k in (list(fns) if r % 2 == 0 else list(fns)[::-1]): times[k].append(per_call(fns[k], n, dev))
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


FUSED_CALLS = [0]


def count_fused_calls():
    "Count the calls of the fused Sinkhorn, so that a row labelled fused is known to have used it."
    inner = sk.fused_sinkhorn
    def counted(*args, **kwargs):
        FUSED_CALLS[0] += 1
        return inner(*args, **kwargs)
    sk.fused_sinkhorn = counted


def with_fused(on: bool, fn):
    "`fn` run with the opt-in fused Sinkhorn switched on or off."
    def call():
        old = sk.FUSED_SINKHORN; sk.FUSED_SINKHORN = on
        try: return fn()
        finally: sk.FUSED_SINKHORN = old
    return call


def uses_fused(fn) -> bool:
    before = FUSED_CALLS[0]; fn(); return FUSED_CALLS[0] > before


def kernels_launched(fn, dev):
    "CUDA kernels one call of `fn` launches (torch.profiler), or None where that cannot be counted."
    if dev.type != "cuda": return None
    try:
        from torch.profiler import ProfilerActivity, profile
        fn(); sync(dev)
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn(); sync(dev)
        return sum(e.count for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA)
    except Exception as e:                                   # the profiler's API moves between releases
        print(f"(kernel count unavailable: {type(e).__name__}: {e})")
        return None


def train_step(model, x, y, opt):
    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def graphed_step(model, x, y, opt):
    "The same step captured once as a CUDA graph and replayed (AdamW(capturable=True); fixed shapes)."
    s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3): train_step(model, x, y, opt)()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(g):
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return g.replay


def sharp(layer, seed=0):
    "Trained-regime logits: 8 x a random permutation per group element + noise (all 20 Sinkhorn iterations run)."
    g = torch.Generator().manual_seed(seed)
    d, G = layer.d, layer.group_size
    perms = torch.stack([torch.eye(d)] + [torch.eye(d)[torch.randperm(d, generator=g)] for _ in range(G - 1)])
    set_representation_logits(layer, perms.to(layer.rep_logits.device), scale=8.0, noise=1.0)


def layer_fns(layer, x, dev, fused_ok, authors=None) -> dict:
    "{name: forward + backward with a fixed upstream gradient}: eager, fused, the floor, the authors' layer."
    x = x.detach()
    with torch.no_grad():
        W = layer.kernel().detach().clone().requires_grad_()
        b = layer.kernel_bias().detach().clone().requires_grad_()
        gy = torch.randn_like(layer(x))
    xin = x if layer.lifting else x.flatten(1, 2)
    def ours():
        for p in layer.parameters(): p.grad = None
        layer(x).backward(gy)
    def floor():
        W.grad = None; b.grad = None
        F.conv2d(xin, W, b, layer.stride, layer.padding).unflatten(1, gy.shape[1:3]).backward(gy)
    fns = {"eager Sinkhorn": with_fused(False, ours)}
    if fused_ok:
        fns["fused Sinkhorn"] = with_fused(True, ours)
        assert uses_fused(fns["fused Sinkhorn"]) and not uses_fused(fns["eager Sinkhorn"]), "the switch did not switch"
    fns["plain conv"] = floor
    if authors is not None:
        O, C, k, G = layer.out_channels, layer.in_channels, layer.kernel_size, layer.group_size
        kw = dict(n_iter=layer.n_iter, device=str(dev), bias=True, init_mode="rand", padding=layer.padding,
                  fix_identity=layer.fix_identity)
        theirs = authors.WSLiftConv2d(C, O, k, G, **kw) if layer.lifting else authors.WSConv2d(C, O, k, G, G, **kw)
        with torch.no_grad():
            theirs.weight.copy_(layer.weight); theirs.bias.copy_(layer.bias.view(-1, 1, 1, 1))
            theirs.representations.copy_(layer.rep_logits)
        def auth():
            for p in theirs.parameters(): p.grad = None
            theirs(x).backward(gy)
        fns["authors'"] = auth
    return fns


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="smoke run: small sizes, few rounds (numbers mean nothing)")
    ap.add_argument("--authors", default=None, metavar="PATH", help="a checkout of the authors' repository")
    ap.add_argument("--no-graphs", action="store_true", help="skip the CUDA-graphed training steps")
    a = ap.parse_args()
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available(): raise SystemExit("--device cuda: no CUDA device here")
    authors = load_authors(a.authors) if a.authors else None
    rounds, n = (3, 2) if a.quick else (15, 20)
    width, hidden, size = (8, 1, 14) if a.quick else (32, 4, 28)
    count_fused_calls()
    fused_ok = dev.type == "cuda" and sk._HAVE_TRITON
    out = {"device": device_name(dev), "torch": torch.__version__, "fused_available": fused_ok, "quick": a.quick,
           "command": "python bench/bench_gpu_launches.py " + " ".join(sys.argv[1:]), "rows": []}
    print(f"device: {out['device']} | torch {torch.__version__} | fused Sinkhorn available: {fused_ok}", flush=True)

    # 0. the fused Sinkhorn against the eager one, on this device
    if fused_ok:
        dev_ = sk.fused_sinkhorn_deviations(dev)
        print(f"fused vs eager Sinkhorn ({dev_['cases']} stacks): max |dR| {dev_['values']:.1e}, max |d row error| "
              f"{dev_['row_errors']:.1e}, max relative |d grad| {dev_['gradients']:.1e}", flush=True)
        out["equivalence"] = dev_

    # 1. training steps at batch 64
    torch.manual_seed(0)
    x, y = torch.randn(64, 1, size, size, device=dev), torch.randint(0, 10, (64,), device=dev)
    models = {"CNN": CNN(hidden_channels=2 * width, num_hidden=hidden),
              "GCNN": GCNN(hidden_channels=width, num_hidden=hidden),
              "WSCNN": WSCNN(hidden_channels=width, num_hidden=hidden)}
    for m in models.values(): m.to(dev).train()
    for layer in models["WSCNN"].ws_layers(): sharp(layer)
    steps = {}
    for k, m in models.items():
        step = train_step(m, x, y, torch.optim.AdamW(m.parameters(), lr=1e-4))
        if k != "WSCNN": steps[k] = step; continue
        steps["WSCNN (eager Sinkhorn)"] = with_fused(False, step)
        if fused_ok:
            steps["WSCNN (fused Sinkhorn)"] = with_fused(True, step)
            assert uses_fused(steps["WSCNN (fused Sinkhorn)"]), "the fused WSCNN step did not use the fused Sinkhorn"
    launches = {k: kernels_launched(f, dev) for k, f in steps.items()}
    res = compare(steps, dev, rounds, n)
    if dev.type == "cuda" and not a.no_graphs:
        for k, on in (("GCNN", False), ("WSCNN", fused_ok)):
            name = f"{k} (CUDA graph{', fused Sinkhorn' if on else ''})"
            try:
                m = models[k]
                opt = torch.optim.AdamW(m.parameters(), lr=1e-4, capturable=True)
                replay = with_fused(on, lambda: graphed_step(m, x, y, opt))()
                res[name] = compare({name: replay}, dev, rounds, n)[name]
            except Exception as e:                           # e.g. a host read inside the step: not capturable
                print(f"CUDA-graphed {k} step failed: {type(e).__name__}: {e}", flush=True)
    gcnn = res["GCNN"]
    print(f"\ntraining step, batch 64, {size}x{size}, width {width}, {hidden} group layers:")
    for k, v in res.items():
        kl = launches.get(k)
        print(f"  {k:36s} {v:8.3f} ms   x{v / gcnn:5.2f} GCNN" + (f"   {kl} kernels" if kl is not None else ""))
    out["rows"].append({"what": "train_step_b64", "ms": res, "ratio_to_gcnn": {k: v / gcnn for k, v in res.items()},
                        "kernels_launched": launches})

    # 2. the layers against the plain convolution (and the authors' layers)
    for kind in ("group", "lifting"):
        for B in ((8, 16) if a.quick else (64, 256)):
            torch.manual_seed(0)
            if kind == "group":
                layer = WSGroupConv2d(width, width, 5, 4).to(dev)
                xin = torch.randn(B, width, 4, size - 4, size - 4, device=dev)
            else:
                layer = WSLiftConv2d(1, width, 5, 4).to(dev); xin = torch.randn(B, 1, size, size, device=dev)
            sharp(layer)
            r = compare(layer_fns(layer, xin, dev, fused_ok, authors), dev, rounds, n)
            floor = r["plain conv"]
            print(f"\n{kind} layer, batch {B}, forward + backward:")
            for k, v in r.items(): print(f"  {k:20s} {v:8.3f} ms   x{v / floor:5.2f} plain conv")
            theirs = r.get("authors'")
            for k in ("eager Sinkhorn", "fused Sinkhorn"):
                if theirs and k in r: print(f"  {k} / authors': x{r[k] / theirs:.2f}")
            out["rows"].append({"what": f"{kind}_layer_b{B}", "ms": r,
                                "ratio_to_plain": {k: v / floor for k, v in r.items()}})

    dest = ROOT / "bench" / "results" / ("gpu_launches_quick.json" if a.quick else "gpu_launches.json")
    dest.parent.mkdir(parents=True, exist_ok=True); dest.write_text(json.dumps(out, indent=1))
    if os.environ.get("OUT") and Path(os.environ["OUT"]).is_dir():      # the device machine's output folder
        Path(os.environ["OUT"], dest.name).write_text(json.dumps(out, indent=1))
    print(f"\nwrote {dest}")


if __name__ == "__main__": main()
