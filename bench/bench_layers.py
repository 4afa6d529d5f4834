"""Benchmark of the weight-sharing layers (symmetries.layers) against the floor: a plain convolution whose expanded
kernel (and bias) are already built, so the floor pays for the convolution only.

    python bench/bench_layers.py            # full run (minutes on 2 cores): bench/results/layers.json + PNGs
    python bench/bench_layers.py --quick    # smoke run (fewer repeats, smaller sweep)

Forward + backward on the CPU at the paper's MNIST shapes (batch 64, width 32, |G| 4, kernel 5, 28×28; the group layer
on (64, 32, 4, 24, 24)), the trained regime at |G| 8 / kernel 7 / batch 16 (sharp logits, all 20 Sinkhorn
iterations), the frozen layer, the whole WSCNN, peak memory of the group layer, and a sweep over |G| × kernel size.
Every ratio is measured side by side in one process: warm-up, then repeated interleaved blocks (ours, floor, ours,
floor, ...), and the reported ratio is the median over blocks of (ours / floor) in the same round. glibc's
MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ are set high (the script re-executes itself if they are absent):
otherwise every fresh 10–20 MB activation is a new mmap that page-faults, and timings swing by several times.
For context the table also times an *unfused reference* built like the authors' layers (log-space autograd Sinkhorn,
einsum kernel expansion, bias added to the output afterwards).
"""
import argparse, json, os, platform, resource, subprocess, sys, time
from pathlib import Path

from benchutil import reexec_with_malloc_settings, device_name, load_authors, sync as _sync
reexec_with_malloc_settings()

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from symmetries.layers import WSLiftConv2d, WSGroupConv2d, set_representation_logits, invariant_pool
from symmetries.models import WSCNN
from symmetries.sinkhorn import sinkhorn

RESULTS = ROOT / "bench" / "results"
DEVICE = torch.device("cpu")
AUTHORS = None          # the authors' wsmodules module, when --authors points at a checkout of their repository


def authors_layer(layer):
    "The authors' layer with our layer's parameters (same function: same kernels, logits, bias), or None."
    if AUTHORS is None or not layer.learned: return None
    O, C, k, G = layer.out_channels, layer.in_channels, layer.kernel_size, layer.group_size
    kw = dict(n_iter=layer.n_iter, device=str(DEVICE), bias=True, init_mode="rand", padding=layer.padding,
              fix_identity=layer.fix_identity)
    theirs = (AUTHORS.WSLiftConv2d(C, O, k, G, **kw) if layer.lifting else AUTHORS.WSConv2d(C, O, k, G, G, **kw))
    with torch.no_grad():
        theirs.weight.copy_(layer.weight); theirs.bias.copy_(layer.bias.view(-1, 1, 1, 1))
        theirs.representations.copy_(layer.rep_logits)
    return theirs


# ---------------------------------------------------------------- workloads
def sharp_logits(layer, seed=0, scale=8.0, noise=1.0):
    "Trained regime: logits near random permutations (sharp, so Sinkhorn needs all its iterations)."
    g = torch.Generator().manual_seed(seed)
    G, d = layer.group_size, layer.d
    shuffled = [torch.eye(d)[torch.randperm(d, generator=g)] for _ in range(G - 1)]
    perms = torch.stack([torch.eye(d)] + shuffled).to(DEVICE)
    torch.manual_seed(seed)
    set_representation_logits(layer, perms, scale=scale, noise=noise)


def sync(): _sync(DEVICE)


def layer_case(layer, x, requires_input_grad):
    "{ours, floor, reference or authors} closures doing forward + backward with a fixed upstream gradient."
    layer = layer.to(DEVICE); x = x.to(DEVICE)
    x = x.detach().requires_grad_(requires_input_grad)
    with torch.no_grad():
        W = layer.kernel().detach().clone().requires_grad_()
        b = None if layer.bias is None else layer.kernel_bias().detach().clone().requires_grad_()
        gy = torch.randn_like(layer(x))
    conv_in = (lambda v: v) if layer.lifting else (lambda v: v.flatten(1, 2))
    params = list(layer.parameters())

    def ours():
        for p in params: p.grad = None
        x.grad = None
        layer(x).backward(gy)

    def floor():
        W.grad = None; x.grad = None
        if b is not None: b.grad = None
        F.conv2d(conv_in(x), W, b, layer.stride, layer.padding).unflatten(1, gy.shape[1:3]).backward(gy)

    def reference():
        for p in params: p.grad = None
        x.grad = None
        O, C, d, G = layer.out_channels, layer.in_channels, layer.d, layer.group_size
        R = sinkhorn(layer.rep_logits, n_iter=layer.n_iter)
        R = torch.cat([torch.eye(d).unsqueeze(0), R]) if layer.fix_identity else R
        Wr = torch.einsum("gnm,oim->ogin", R, layer.weight)
        Wr = Wr.reshape(O * G, C * layer.group_in, layer.kernel_size, layer.kernel_size)
        out = F.conv2d(conv_in(x), Wr, None, layer.stride, layer.padding).unflatten(1, (O, G))
        out = out + layer.bias.view(O, 1, 1, 1)
        out.backward(gy)

    ours.overhead = kernel_overhead([layer])
    fns = {"ours": ours, "floor": floor}
    theirs = authors_layer(layer)
    if theirs is not None:
        tparams = list(theirs.parameters())
        with torch.no_grad(): assert torch.allclose(theirs(x), layer(x), atol=1e-4, rtol=1e-3), "authors' layer differs"
        def authors():
            for p in tparams: p.grad = None
            x.grad = None
            theirs(x).backward(gy)
        fns["authors"] = authors
    else: fns["reference"] = reference
    return fns


def inference_case(layer, x):
    "{ours, floor}: eval-mode forward under no_grad (ours reuses its cached kernel) vs conv2d with the prebuilt kernel."
    layer = layer.to(DEVICE).eval(); x = x.to(DEVICE)
    with torch.no_grad():
        W, b = layer.kernel().clone(), layer.kernel_bias().clone()
        xin = x if layer.lifting else x.flatten(1, 2)
    def ours():
        with torch.no_grad(): layer(x)
    def floor():
        with torch.no_grad(): F.conv2d(xin, W, b, layer.stride, layer.padding)
    return {"ours": ours, "floor": floor}


def kernel_overhead(layers):
    "Forward+backward of the kernel construction alone (Sinkhorn, expansion, bias): what ours adds to the floor."
    with torch.no_grad():
        gW = [torch.randn_like(l.kernel()) for l in layers]
        gb = [torch.randn_like(l.kernel_bias()) for l in layers]
    params = [p for l in layers for p in l.parameters()]
    def overhead():
        for p in params: p.grad = None
        outs = [t for l in layers for t in (l.kernel(), l.kernel_bias())]
        torch.autograd.backward(outs, [g for pair in zip(gW, gb) for g in pair])
    return overhead


def network_case(model, x, y):
    "(ours, floor): the whole WSCNN vs the same network running on prebuilt kernels."
    layers = [model.lift, *model.convs]
    with torch.no_grad():
        Ws = [l.kernel().detach().clone().requires_grad_() for l in layers]
        bs = [l.kernel_bias().detach().clone().requires_grad_() for l in layers]
    head_w = model.head.weight.detach().clone().requires_grad_()
    head_b = model.head.bias.detach().clone().requires_grad_()
    params = list(model.parameters()); fparams = Ws + bs + [head_w, head_b]
    G, O = model.lift.group_size, model.lift.out_channels

    def ours():
        for p in params: p.grad = None
        F.cross_entropy(model(x), y).backward()

    def floor():
        for p in fparams: p.grad = None
        h = x
        for i, (W, b) in enumerate(zip(Ws, bs)):
            h = F.conv2d(h if i == 0 else h.flatten(1, 2), W, b).unflatten(1, (O, G))
            h = F.relu(F.layer_norm(h, h.shape[1:]))
        F.cross_entropy(F.linear(invariant_pool(h), head_w, head_b), y).backward()

    ours.overhead = kernel_overhead(layers)
    return ours, floor


# ---------------------------------------------------------------- timing
CLOCK = time.process_time      # CPU time of this process: robust to other jobs sharing the cores (see --clock)

def timed(fn, n):
    sync(); t = CLOCK()
    for _ in range(n): fn()
    sync()
    return (CLOCK() - t) / n


def compare(fns: dict, rounds: int, min_block_s: float = 0.25, warmup: int = 2):
    "Interleaved blocks; returns per-variant median seconds per call and the median paired ratio to 'floor'."
    for f in fns.values():
        for _ in range(warmup): f()
    per = max(1, int(min_block_s / max(timed(fns["floor"], 1), 1e-6)))
    times = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for k in order: times[k].append(timed(fns[k], per))
    med = lambda v: sorted(v)[len(v) // 2]
    out = {k: {"median_s": med(v), "min_s": min(v), "times_s": v} for k, v in times.items()}
    for k in names:
        if k != "floor":
            ratios = sorted(a / b for a, b in zip(times[k], times["floor"]))
            out[k].update(ratio=med(ratios), ratio_quartiles=[ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]],
                          ratio_of_mins=min(times[k]) / min(times["floor"]))
    oh = getattr(fns.get("ours"), "overhead", None)
    if oh is not None:                     # low-noise estimate: 1 + (kernel construction time) / (floor time)
        for _ in range(warmup): oh()
        n = max(1, int(min_block_s / max(timed(oh, 1), 1e-6)))
        ohs = [timed(oh, n) for _ in range(max(3, rounds))]
        out["ours"].update(overhead_s=med(ohs), est_ratio=1 + med(ohs) / out["floor"]["median_s"])
    out["calls_per_block"], out["rounds"] = per, rounds
    return out


# ---------------------------------------------------------------- peak memory (fresh subprocess per measurement)
def _rss_kb():
    with open("/proc/self/statm") as f: return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def mem_child(variant, G, k, B, C, S):
    "Run in a fresh process: peak extra resident memory (MiB) of one forward+backward of the group layer or its floor."
    torch.manual_seed(0)
    layer = WSGroupConv2d(C, C, k, G)
    sharp_logits(layer)
    small = layer_case(layer, torch.randn(1, C, G, k + 2, k + 2), True)  # initialise kernels/libraries on a tiny input
    small["ours"](); small["floor"]()
    fns = layer_case(layer, torch.randn(B, C, G, S, S), True)
    before = _rss_kb()
    fns[variant]()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_extra_mib": (peak - before) / 1024}))


def peak_memory(G, k, B, C, S, repeats):
    res = {}
    for variant in ("ours", "floor"):
        vals = []
        for _ in range(repeats):
            cmd = [sys.executable, __file__, "--mem-child", variant, str(G), str(k), str(B), str(C), str(S),
                   "--threads", str(torch.get_num_threads())]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            vals.append(json.loads(out)["peak_extra_mib"])
        res[variant] = sorted(vals)[len(vals) // 2]
    res["ratio"] = res["ours"] / res["floor"]
    return res

def plot_sweep(sweep, path):
    "Ratio to the floor (and absolute times) over |G| for each kernel size."
    import matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot as plt
    fig, axs = plt.subplots(1, 2, figsize=(9.5, 3.6))
    for k in sorted({s["k"] for s in sweep}):
        rs = [s for s in sweep if s["k"] == k]
        axs[0].plot([s["G"] for s in rs], [s["ratio"] for s in rs], "o-", label=f"kernel {k}")
        axs[0].plot([s["G"] for s in rs], [s["est_ratio"] for s in rs], ":", color=axs[0].lines[-1].get_color(),
                    alpha=0.7)
        axs[1].plot([s["G"] for s in rs], [s["ours_ms"] for s in rs], "o-", label=f"WS, kernel {k}")
        axs[1].plot([s["G"] for s in rs], [s["floor_ms"] for s in rs], "x--", color=axs[1].lines[-1].get_color(),
                    alpha=0.6)
    for ax in axs: ax.set_xscale("log", base=2); ax.set_xlabel("|G|"); ax.legend(fontsize=8)
    axs[0].axhline(1.0, color="k", lw=0.6); axs[0].set_ylabel("time / floor")
    axs[0].set_title("forward+backward ratio (dotted: 1 + kernel cost / floor)", fontsize=9)
    axs[1].set_yscale("log"); axs[1].set_ylabel("ms per forward+backward")
    axs[1].set_title("o: WS layer, x: floor", fontsize=9)
    fig.suptitle("Weight-sharing group layer vs prebuilt-kernel convolution (batch 8, width 16, 20×20, sharp logits)",
                 fontsize=10)
    fig.tight_layout(); fig.savefig(path, dpi=120); plt.close(fig)


# ---------------------------------------------------------------- main
def main():
    global CLOCK, DEVICE, AUTHORS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short smoke run")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: stable on a shared 2-core machine)")
    ap.add_argument("--clock", choices=["cpu", "wall"], default=None,
                    help="cpu: process CPU time (CPU default; other jobs on the shared cores do not count), wall: "
                         "perf_counter (always on cuda, with a synchronisation around each block)")
    ap.add_argument("--rounds", type=int, default=None,
                    help="interleaved rounds per comparison (default 11, 3 with --quick)")
    ap.add_argument("--authors", default=None, metavar="PATH",
                    help="a checkout of github.com/computri/learnable-weight-sharing: time the authors' layers too")
    ap.add_argument("--only", nargs="*", default=None,
                    choices=["lifting", "group", "lifting256", "group256", "frozen", "inference", "g8k7", "wscnn",
                             "memory", "sweep"], help="run only these cases")
    ap.add_argument("--out", default=None, help="JSON output (default bench/results/layers[_cuda].json)")
    ap.add_argument("--replot", action="store_true", help="only redraw the sweep PNG from the JSON at --out")
    ap.add_argument("--mem-child", nargs=6, help=argparse.SUPPRESS)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    DEVICE = torch.device(a.device)
    if DEVICE.type == "cuda" and not torch.cuda.is_available(): raise SystemExit("--device cuda: no CUDA device here")
    clock = a.clock or ("cpu" if DEVICE.type == "cpu" else "wall")
    CLOCK = time.process_time if clock == "cpu" else time.perf_counter
    if a.authors: AUTHORS = load_authors(a.authors)
    out = Path(a.out or RESULTS / ("layers.json" if DEVICE.type == "cpu" else f"layers_{DEVICE.type}.json"))
    if a.mem_child:
        v, *nums = a.mem_child
        return mem_child(v, *map(int, nums))
    if a.replot:
        return plot_sweep(json.loads(out.read_text())["sweep"]["rows"], out.with_name(out.stem + "_sweep.png"))

    rounds = a.rounds or (3 if a.quick else 11)
    B = 16 if a.quick else 64             # --quick: a quarter of the paper's batch, only to check that everything runs
    torch.manual_seed(0)
    res = {"meta": {"torch": torch.__version__, "device": str(DEVICE), "device_name": device_name(DEVICE),
                    "threads": a.threads, "clock": clock, "python": platform.python_version(),
                    "machine": platform.machine(), "cpus": os.cpu_count(), "quick": a.quick, "authors": bool(a.authors),
                    "method": "forward+backward, median over interleaved rounds of (variant / floor) per round"}}
    rows = []
    print(f"device: {res['meta']['device_name']} ({DEVICE}), torch {torch.__version__}, {a.threads} thread(s), "
          f"{clock} clock",
          flush=True)

    def report(name, r, target=None):
        r["target"] = target
        res[name] = r
        n0 = len(rows)
        for k, v in r.items():
            if isinstance(v, dict) and "ratio" in v:
                ok = "" if target is None or k != "ours" else ("  ok" if v["ratio"] <= target else "  MISSED")
                q = v["ratio_quartiles"]
                est = f"  est {v['est_ratio']:.3f}x" if "est_ratio" in v else " " * 13
                rows.append(f"{name:<38} {k:<10} {v['ratio']:6.3f}x [{q[0]:.2f}-{q[1]:.2f}]{est}  "
                            f"({v['median_s'] * 1e3:8.2f} ms; floor {r['floor']['median_s'] * 1e3:8.2f} ms)"
                            + (f"  target <= {target}" if target and k == "ours" else "") + ok)
        print("\n".join(rows[n0:]), flush=True)

    want = lambda case: a.only is None or case in a.only
    # the cases: at initialisation (logits uniform in [0, 1), the paper's init) and, for |G| 8 / k 7, sharp logits
    for case, batch in (("lifting", B), ("lifting256", 256)):
        if want(case) and not (a.quick and batch == 256):
            torch.manual_seed(0); lift = WSLiftConv2d(1, 32, 5, 4)
            report(f"lifting ({batch},1,28,28) G4 k5 init",
                   compare(layer_case(lift, torch.randn(batch, 1, 28, 28), False), rounds),
                   1.15 if batch == 64 else 1.2)
    for case, batch in (("group", B), ("group256", 256)):
        if want(case) and not (a.quick and batch == 256):
            torch.manual_seed(0); gc = WSGroupConv2d(32, 32, 5, 4)
            report(f"group ({batch},32,4,24,24) G4 k5 init",
                   compare(layer_case(gc, torch.randn(batch, 32, 4, 24, 24), True), rounds),
                   1.05 if batch == 64 else 1.2)

    torch.manual_seed(0); gc = WSGroupConv2d(32, 32, 5, 4).to(DEVICE); sharp_logits(gc)
    if want("frozen"):    # frozen group layer
        frozen = gc.freeze()
        xg = torch.randn(B, 32, 4, 24, 24, device=DEVICE, requires_grad=True)
        with torch.no_grad():
            Wf, bf = frozen.weight.detach().clone().requires_grad_(), frozen.bias.detach().clone().requires_grad_()
        gy = torch.randn(B, 32, 4, 20, 20, device=DEVICE)
        def fr():
            frozen.weight.grad = frozen.bias.grad = xg.grad = None; frozen(xg).backward(gy)
        def ff():
            Wf.grad = bf.grad = xg.grad = None; F.conv2d(xg.flatten(1, 2), Wf, bf).unflatten(1, (32, 4)).backward(gy)
        report("frozen group layer", compare({"ours": fr, "floor": ff}, rounds), 1.02)

    if want("inference"): # eval mode, no_grad: the cached kernel, no Sinkhorn, no expansion
        report(f"inference: group ({B},32,4,24,24) eval",
               compare(inference_case(gc, torch.randn(B, 32, 4, 24, 24)), rounds), 1.02)

    if want("g8k7"):      # trained regime: |G| 8, kernel 7, batch 16, 20 Sinkhorn iterations on sharp logits
        torch.manual_seed(0); g8 = WSGroupConv2d(32, 32, 7, 8).to(DEVICE); sharp_logits(g8)
        report("group (16,32,8,24,24) G8 k7 sharp",
               compare(layer_case(g8, torch.randn(16, 32, 8, 24, 24), True), rounds), 1.15)

    if want("wscnn"):     # whole WSCNN (lifting + 4 group layers, width 32) vs the same network on prebuilt kernels
        torch.manual_seed(1)
        net = WSCNN().to(DEVICE)
        for l in [net.lift, *net.convs]: sharp_logits(l)
        o, f = network_case(net, torch.randn(B, 1, 28, 28, device=DEVICE), torch.randint(0, 10, (B,), device=DEVICE))
        report(f"WSCNN ({B},1,28,28) sharp", compare({"ours": o, "floor": f}, rounds), 1.04)

    if want("memory") and DEVICE.type == "cpu":    # peak memory of the group layer (resident set size: CPU only)
        mem = peak_memory(4, 5, B, 32, 24, 1 if a.quick else 3)
        mem["target"] = 1.15
        res["group layer peak memory"] = mem
        rows.append(f"{'group layer peak memory':<38} {'ours':<10} {mem['ratio']:6.3f}x  (floor {mem['floor']:8.1f} "
                    f"MiB)  target <= 1.15"
                    + ("  ok" if mem["ratio"] <= 1.15 else "  MISSED"))
        print(rows[-1], flush=True)

    sweep = []
    Gs, ks = ([2, 4, 8, 16], [3, 5, 7]) if not a.quick else ([2, 8], [3, 7])
    if want("sweep"):     # scaling sweep over |G| x kernel size
        for k in ks:
            for G in Gs:
                torch.manual_seed(2)
                lay = WSGroupConv2d(16, 16, k, G).to(DEVICE); sharp_logits(lay)
                fns = layer_case(lay, torch.randn(8, 16, G, 20, 20), True)
                r = compare({"ours": fns["ours"], "floor": fns["floor"]}, 5 if not a.quick else 3, min_block_s=0.15)
                sweep.append(dict(G=G, k=k, d=G * k * k, ratio=r["ours"]["ratio"], est_ratio=r["ours"]["est_ratio"],
                                  ours_ms=r["ours"]["median_s"] * 1e3, floor_ms=r["floor"]["median_s"] * 1e3))
                print(f"sweep G={G:<2} k={k}  d={G * k * k:<4} ratio {sweep[-1]['ratio']:.3f}  est "
                      f"{sweep[-1]['est_ratio']:.3f}"
                      f"  floor {sweep[-1]['floor_ms']:.1f} ms", flush=True)
        res["sweep"] = {"shape": "group layer, batch 8, width 16, 20x20 maps, sharp logits", "rows": sweep}

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    if sweep: plot_sweep(sweep, out.with_name(out.stem + "_sweep.png"))
    print("\n" + "\n".join(rows))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
