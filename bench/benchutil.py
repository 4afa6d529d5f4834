"""What the benchmark scripts share: glibc's allocator settings, the device's name, synchronisation, and the authors'
layers."""
import importlib.util, os, platform, sys
from pathlib import Path

import torch

_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(2 ** 31), "MALLOC_TRIM_THRESHOLD_": str(2 ** 36)}


def reexec_with_malloc_settings():
    "Re-execute the script with glibc's mmap/trim thresholds set high (else fresh 10-20 MB activations page-fault)."
    if any(os.environ.get(k) != v for k, v in _MALLOC.items()):
        os.environ.update(_MALLOC)
        os.execv(sys.executable, [sys.executable] + sys.argv)


def device_name(device: torch.device) -> str:
    "The GPU's name, or the CPU's model name."
    if device.type == "cuda": return torch.cuda.get_device_name(device)
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"): return line.split(":", 1)[1].strip()
    except OSError: pass
    return platform.processor() or platform.machine()


def sync(device: torch.device):
    "Wait for the GPU (a no-op on the CPU), so that a clock read after it measures finished work."
    if device.type == "cuda": torch.cuda.synchronize(device)


def load_authors(path):
    "Import wsmodules.py from a checkout of the authors' repository (github.com/computri/learnable-weight-sharing)."
    f = Path(path) / "wsmodules.py"
    if not f.exists(): raise SystemExit(f"--authors: no wsmodules.py in {path}")
    spec = importlib.util.spec_from_file_location("authors_wsmodules", f)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod
