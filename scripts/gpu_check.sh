#!/usr/bin/env bash
# What only a GPU can check: every notebook under nbdev_test with `default_device()` picking CUDA, the main job on
# `--device cuda` at the tiny and fast budgets, the device tests with real CUDA tensors, the benchmarks on CUDA (the
# launch-bound costs with the eager and the opt-in fused Sinkhorn among them), the WSCNN ablation at the paper's size,
# and the data-parallel scaling of `fit` under torchrun over 1, 2, 4, ... of the machine's GPUs.
# CI has no GPU; tests/test_devices.py catches most device bugs on a CPU, this script the rest (and the speed).
#
#   bash scripts/gpu_check.sh                      # every part, in this order
#   bash scripts/gpu_check.sh notebooks            # parts: env pytest notebooks reproduce bench ablation ddp, and
#                                                  # launches (bench/bench_gpu_launches.py alone): any subset, in order
#   bash scripts/gpu_check.sh ddp                  # data-parallel scaling only: step time and samples/s for 1, 2, 4, ... ranks
#   bash scripts/gpu_check.sh notebooks 20_msr_synthetic 21_msr_2d   # only these notebooks
#
# One device call of at most 10 minutes that checks the GPU path (device tests, the fused Sinkhorn against the eager
# one and the speed table, every notebook 12 at a time) and spends what is left on the paper-size ablation:
#   GPU_CHECK_BUDGET=540 GPU_CHECK_WORKERS=12 bash scripts/gpu_check.sh env pytest launches notebooks ablation
#
# On the project's GPU machine (no network; see ../shared/gpu/README.md): here, once, `bash ../shared/gpu/bundle.sh`
# (writes .gpu-bundle/); then the device command `bash scripts/gpu_check.sh PARTS` with carry [".gpu-bundle"]. The
# script sources .gpu-bundle/remote-setup.sh when the project's dependencies are not importable. One device call runs
# at most 10 minutes: run the parts in separate calls; the log accumulates.
#
# Writes (appends) bench/results/gpu_check.log, a per-part PASS/FAIL summary at its end; benchmark JSON files go to
# bench/results/ as the bench scripts write them. When $OUT is set (the device machine's output folder) the log and
# the new result files are copied there too. Commit the log with the results when a session had a GPU.
#
# The ddp part writes bench/results/ddp_scaling_cuda.json: per number of ranks, the seconds per step and the samples/s of
# a WSCNN at a fixed batch per GPU (the global batch grows with the ranks), and the efficiency against one rank. With one
# GPU it measures one rank only and says so.
#
# Environment: GPU_CHECK_WORKERS (notebooks side by side, default 4), GPU_CHECK_LOG (default bench/results/gpu_check.log),
# GPU_CHECK_TIMEOUT (seconds per part, default 3000), GPU_CHECK_BUDGET (seconds for the whole call: a part gets what
# is left, one that cannot start in time is SKIPPED, the ablation stops starting runs in time), ABLATION_EPOCHS (default
# 30), ABLATION_JOBS (runs side by side, default 12), PYTHON (default python3; .venv/bin/python when present),
# GPU_CHECK_ALLOW_CPU=1 (run anyway without CUDA: only to test this script's plumbing, as tests/test_devices.py does).
# Exit status: 0 all parts passed, 1 some part failed, 3 no CUDA device (nothing was run), 4 none failed but the
# budget left some part out.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LOG=${GPU_CHECK_LOG:-bench/results/gpu_check.log}
WORKERS=${GPU_CHECK_WORKERS:-4}
TIMEOUT=${GPU_CHECK_TIMEOUT:-3000}
BUDGET=${GPU_CHECK_BUDGET:-}
ALL_PARTS=(env pytest notebooks reproduce bench ablation ddp)

PARTS=(); NOTEBOOKS=()
for arg in "$@"; do
  case "$arg" in
    env|pytest|notebooks|reproduce|bench|launches|ablation|ddp) PARTS+=("$arg") ;;
    -h|--help) sed -n 2,37p "$0"; exit 0 ;;
    *) if [ -f "nbs/$arg.ipynb" ] || [ -f "nbs/$arg" ]; then NOTEBOOKS+=("nbs/${arg%.ipynb}.ipynb")
       else echo "gpu_check: unknown part or notebook '$arg' (parts: ${ALL_PARTS[*]} launches; notebooks: names in nbs/)" >&2; exit 2; fi ;;
  esac
done
[ ${#PARTS[@]} -gt 0 ] || { [ ${#NOTEBOOKS[@]} -gt 0 ] && PARTS=(notebooks) || PARTS=("${ALL_PARTS[@]}"); }

# ---- the interpreter and the project's dependencies (the bundle on the offline GPU machine) -------------------------
PY=${PYTHON:-}
if [ -z "$PY" ]; then if [ -x .venv/bin/python ]; then PY=$ROOT/.venv/bin/python; else PY=python3; fi; fi
probe() { "$PY" -c 'import torch, learn2learn, nbdev, symmetries; print(int(torch.cuda.is_available()), torch.__version__)' 2>/dev/null; }
if ! INFO=$(probe) && [ -f .gpu-bundle/remote-setup.sh ]; then
  echo "gpu_check: sourcing .gpu-bundle/remote-setup.sh (the offline GPU machine's dependencies)"
  # shellcheck disable=SC1091
  source .gpu-bundle/remote-setup.sh || true
  PY=python3; INFO=$(probe)
fi
[ -n "${INFO:-}" ] \
  || { echo "gpu_check: ERROR: '$PY' cannot import torch, learn2learn, nbdev and symmetries (run scripts/setup.sh, or carry .gpu-bundle from ../shared/gpu/bundle.sh)" >&2; exit 2; }
read -r HAS_CUDA TORCH_VERSION <<<"$INFO"
# console scripts (nbdev_test) by their entry point, with this interpreter: the offline GPU machine's bundle installs
# their files into its own bin/, not next to the interpreter
CONSOLE=("$PY" "$ROOT/scripts/console.py")

# ---- fail clearly without CUDA: none of this means anything on a CPU ----------------------------------------------
if [ "$HAS_CUDA" != 1 ] && [ "${GPU_CHECK_ALLOW_CPU:-0}" != 1 ]; then
  echo "gpu_check: ERROR: no CUDA device (torch.cuda.is_available() is False with torch $TORCH_VERSION)." >&2
  echo "gpu_check: this script checks the GPU path; on a CPU run the test suite instead (make test; tests/test_devices.py checks devices)." >&2
  exit 3
fi

mkdir -p "$(dirname "$LOG")"
STAMP=$(date -u +%Y-%m-%dT%H:%M:%SZ)
{ echo; echo "===== gpu_check $STAMP: parts ${PARTS[*]} ${NOTEBOOKS[*]:-} (commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git rev-parse --git-dir >/dev/null 2>&1 && ! git diff --quiet 2>/dev/null && echo ', with local changes'))"; } | tee -a "$LOG"
RESULTS=()
left() {   # seconds this part may run: GPU_CHECK_TIMEOUT, or less where the call's budget ends sooner
  local limit=$TIMEOUT
  if [ -n "$BUDGET" ] && [ $((BUDGET - SECONDS - 10)) -lt "$limit" ]; then limit=$((BUDGET - SECONDS - 10)); fi
  echo "$limit"
}
run_part() {   # name, command...: runs it with a time limit, logs its output, records PASS/FAIL and the seconds
  local name=$1; shift
  local t0=$SECONDS rc limit; limit=$(left)
  if [ "$limit" -lt 20 ]; then
    RESULTS+=("$name: SKIPPED (the call's budget of $BUDGET s is spent)")
    echo "----- [$name] SKIPPED: budget spent" | tee -a "$LOG"
    return
  fi
  echo "----- [$name] $*" | tee -a "$LOG"
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"; rc=${PIPESTATUS[0]}
  local verdict=PASS; [ "$rc" = 0 ] || verdict="FAIL (exit $rc$([ "$rc" = 124 ] && echo ", timed out after ${limit} s"))"
  RESULTS+=("$name: $verdict, $((SECONDS - t0)) s")
  echo "----- [$name] $verdict in $((SECONDS - t0)) s" | tee -a "$LOG"
}
# one CPU thread per notebook / process: the CPU only draws the data; several runs side by side must not oversubscribe it
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} MKL_NUM_THREADS=${MKL_NUM_THREADS:-2} PYTHONUNBUFFERED=1 SYMMETRIES_QUIET=1
OUTDIR=$(mktemp -d -t gpu_check.XXXXXX)

for part in "${PARTS[@]}"; do
  case "$part" in
    env)
      run_part env bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true;
        '$PY' -c 'import torch, sys, learn2learn, symmetries; print(\"python\", sys.version.split()[0], \"| torch\", torch.__version__, \"| CUDA\", torch.version.cuda, \"|\", torch.cuda.get_device_name() if torch.cuda.is_available() else \"no CUDA device\", \"| learn2learn\", learn2learn.__version__, \"| symmetries\", symmetries.__version__)'" ;;
    pytest)   # the device tests, with their CUDA cases (skipped on a CPU) running for real
      run_part pytest "$PY" -m pytest -q -p no:cacheprovider tests/test_devices.py ;;
    notebooks)
      if [ ${#NOTEBOOKS[@]} -gt 0 ]; then
        for nb in "${NOTEBOOKS[@]}"; do run_part "nbdev_test $(basename "$nb" .ipynb)" "${CONSOLE[@]}" nbdev_test --path "$nb" --do_print --timing; done
      else
        run_part "nbdev_test (all, $WORKERS workers)" "${CONSOLE[@]}" nbdev_test --n_workers "$WORKERS" --do_print --timing
      fi ;;
    reproduce)
      for budget in tiny fast; do
        run_part "symmetries_reproduce --device cuda --budget $budget" "$PY" -c \
          'import sys; from symmetries.reproduce import main; main(sys.argv[1:])' --device cuda --budget "$budget" --out "$OUTDIR/reproduce_$budget"
        [ -f "$OUTDIR/reproduce_$budget/results.md" ] && { echo "--- results.md ($budget)"; cat "$OUTDIR/reproduce_$budget/results.md"; } | tee -a "$LOG" >/dev/null
      done ;;
    bench)
      for script in bench/bench_layers.py bench/bench_models.py bench/bench_meta.py bench/bench_gpu_launches.py; do
        [ -f "$script" ] || continue
        if "$PY" "$script" --help 2>/dev/null | grep -q -- "--device"; then
          run_part "$script --device cuda" "$PY" "$script" --device cuda
        else
          RESULTS+=("$script: SKIPPED (it has no --device option: it measures the CPU only)")
          echo "----- [$script] SKIPPED: no --device option" | tee -a "$LOG"
        fi
      done ;;
    launches)   # the launch-bound costs alone: eager and fused Sinkhorn, CUDA graphs, the layers against a plain conv
      if [ "$HAS_CUDA" = 1 ]; then run_part "bench_gpu_launches --device cuda" "$PY" bench/bench_gpu_launches.py --device cuda
      else run_part "bench_gpu_launches (CPU plumbing)" "$PY" bench/bench_gpu_launches.py --device cpu --quick; fi ;;
    ablation)   # the WSCNN at the paper's size (studies/ws_paper_size_ablation.py): as many runs as the time allows
      ABL=(--device cuda --jobs "${ABLATION_JOBS:-12}" --threads 1 --epochs "${ABLATION_EPOCHS:-30}")
      [ "$HAS_CUDA" = 1 ] || ABL=(--quick --variants cnn baseline --jobs 2 --threads 1)   # plumbing only
      lim=$(left)
      if [ "$lim" -lt 150 ]; then
        RESULTS+=("ablation: SKIPPED ($lim s left of the call's budget: too few for one round of runs)")
        echo "----- [ablation] SKIPPED: $lim s left" | tee -a "$LOG"
      else   # it stops starting runs in time and writes what it finished (the hard stop is 60 s after its limit)
        run_part "ablation (${ABL[*]})" "$PY" studies/ws_paper_size_ablation.py "${ABL[@]}" --time-limit $((lim - 80)) \
          --out "$OUTDIR/ablation/ws_paper_size_ablation.json"
        [ -f "$OUTDIR/ablation/ws_paper_size_ablation_runs/summary.md" ] \
          && { echo "--- ablation summary"; cat "$OUTDIR/ablation/ws_paper_size_ablation_runs/summary.md"; } | tee -a "$LOG" >/dev/null
      fi ;;
    ddp)   # one torchrun launch per number of ranks (1, 2, 4, ... up to the GPUs present); rank 0 appends its measurement
      NGPU=$("$PY" -c 'import torch; print(torch.cuda.device_count())'); SIZE="128 40 32"; DDP_JSON=bench/results/ddp_scaling_cuda.json
      if [ "$HAS_CUDA" != 1 ]; then   # GPU_CHECK_ALLOW_CPU: two gloo ranks at a tiny size test the plumbing; no figure is kept
        NGPU=2; SIZE="8 2 4"; DDP_JSON=$OUTDIR/ddp_scaling_plumbing.json
      fi
      cat > "$OUTDIR/ddp_scaling.py" <<'EOF'
import json, os, sys, time
import torch
from symmetries.models import WSCNN
from symmetries.distributed import data_parallel
from symmetries.train import fit
dp = data_parallel(); world = dp.world_size if dp else 1; rank = dp.rank if dp else 0
per_gpu, steps, width = (int(a) for a in sys.argv[2:5])
g = torch.Generator().manual_seed(0)
data = (torch.randn(per_gpu * world * steps, 1, 28, 28, generator=g), torch.randint(0, 10, (per_gpu * world * steps,), generator=g))
torch.manual_seed(0); model = WSCNN(hidden_channels=width, kernel_size=5, num_hidden=4)
# epoch 1 warms up (cuDNN autotuning, allocator); epoch 2 is timed: every rank ends its epoch with the all-reduced sums
hist = fit(model, data, epochs=2, batch_size=per_gpu * world, lr=1e-3, show_progress=False)
secs = hist[-1]["seconds"]
if rank == 0:
    row = {"ranks": world, "width": width, "batch_per_gpu": per_gpu, "global_batch": per_gpu * world, "steps": steps,
           "seconds_per_step": secs / steps, "samples_per_s": per_gpu * world * steps / secs,
           "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "torch": torch.__version__}
    with open(sys.argv[1], "a") as f: f.write(json.dumps(row) + "\n")
    print(json.dumps(row))
EOF
      ROWS="$OUTDIR/ddp_rows.jsonl"; : > "$ROWS"
      n=1
      while [ "$n" -le "$NGPU" ]; do
        run_part "torchrun --nproc_per_node $n (fit, WSCNN, ${SIZE%% *} per rank)" "$PY" -m torch.distributed.run --standalone --nproc_per_node "$n" "$OUTDIR/ddp_scaling.py" "$ROWS" $SIZE
        n=$((n * 2))
      done
      [ "$NGPU" -ge 2 ] || echo "gpu_check: one GPU: data-parallel scaling needs two or more; only one rank was measured" | tee -a "$LOG"
      "$PY" - "$ROWS" "$DDP_JSON" <<'EOF' 2>&1 | tee -a "$LOG"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
base = next((r["samples_per_s"] for r in rows if r["ranks"] == 1), None)
for r in rows: r["efficiency"] = r["samples_per_s"] / (r["ranks"] * base) if base else None
if not rows: sys.exit("gpu_check: no data-parallel run finished: nothing to report")
json.dump({"what": f"fit data-parallel scaling (torchrun): WSCNN width {rows[0].get('width')}, 4 group layers, 28x28 inputs, fixed batch per GPU",
           "rows": rows}, open(sys.argv[2], "w"), indent=1)
for r in rows: print(f"ranks {r['ranks']}: {r['seconds_per_step'] * 1e3:.1f} ms/step, {r['samples_per_s']:.0f} samples/s, efficiency {r['efficiency']:.2f}" if r['efficiency'] is not None else r)
EOF
      ;;
  esac
done

{ echo "===== gpu_check $STAMP summary"; printf '  %s\n' "${RESULTS[@]}"; } | tee -a "$LOG"
if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then   # the device machine's output folder: bring the log and new results back
  cp "$LOG" "$OUT/" && find bench/results -newer "$OUTDIR" -type f -exec cp {} "$OUT/" \; 2>/dev/null
  cp -r "$OUTDIR"/reproduce_* "$OUTDIR"/ablation "$OUT/" 2>/dev/null || true
fi
printf '%s\n' "${RESULTS[@]}" | grep -q "FAIL" && exit 1
printf '%s\n' "${RESULTS[@]}" | grep -q "SKIPPED (.*budget" && exit 4
exit 0
