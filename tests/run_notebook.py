"""Run one notebook as `nbdev_test` runs it (`nbdev.test.test_nb`: its cells executed in this process), then fail if the
notebook left process-wide state changed. `nbdev_test --n_workers N` runs several notebooks one after another in each
worker process, so a notebook that switches gradients off (or changes torch's default dtype or device, its threads, an
environment variable, the working directory) breaks whichever notebook that worker runs next.

    python tests/run_notebook.py nbs/26_ws_mnist.ipynb   # exit 0: passed and left nothing; 1: failed;
                                                         # 3: passed but left state changed
"""
import os, sys
from pathlib import Path

import torch

# variables that change how the next notebook runs (torch itself sets others on import: KMP_*, TORCHINDUCTOR_*, ...)
WATCHED_ENV = ("SYMMETRIES_", "CUDA_", "OMP_", "MKL_", "CI", "WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_",
               "PYTHONHASHSEED", "TRITON_")


def process_state() -> dict:
    "What one notebook can leave behind for the next one run in the same process."
    s = {"grad enabled": torch.is_grad_enabled(), "inference mode": torch.is_inference_mode_enabled(),
         "default dtype": torch.get_default_dtype(), "threads": torch.get_num_threads(),
         "deterministic algorithms": torch.are_deterministic_algorithms_enabled(),
         "anomaly mode": torch.is_anomaly_enabled(), "float32 matmul precision": torch.get_float32_matmul_precision(),
         "cudnn benchmark": torch.backends.cudnn.benchmark, "cudnn deterministic": torch.backends.cudnn.deterministic,
         "cwd": os.getcwd(), "environment": {k: v for k, v in os.environ.items() if k.startswith(WATCHED_ENV)}}
    if hasattr(torch, "get_default_device"): s["default device"] = str(torch.get_default_device())
    return s


def changes(before: dict, after: dict) -> dict:
    "{what: (before, after)} for every entry that differs; environment variables one by one."
    out = {k: (before[k], after.get(k)) for k in before if before[k] != after.get(k)}
    if "environment" in out:
        b, a = out.pop("environment")
        out.update({f"${k}": (b.get(k), a.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)})
    return out


def main(path: str) -> int:
    from fastcore.xtras import working_directory
    from nbdev.config import get_config
    from nbdev.test import test_nb
    nb, cfg = Path(path).resolve(), get_config()
    with working_directory(cfg.nbs_path):          # where nbdev_test runs its notebooks from
        before = process_state()
        ok, secs = test_nb(nb, skip_flags=cfg.tst_flags.split(), basepath=cfg.config_path, do_print=True)
        if not ok: return 1
        changed = changes(before, process_state())
    if changed:
        sys.stderr.write(f"{nb.name} passed but left process-wide state changed, (before, after): {changed}\n"
                         "nbdev_test --n_workers N runs the next notebook in the same process: restore it before the "
                         "notebook ends\n")
        return 3
    print(f"{nb.name}: passed in {secs:.0f} s and left no process-wide state behind")
    return 0


if __name__ == "__main__": sys.exit(main(sys.argv[1]))
