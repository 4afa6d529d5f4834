#!/usr/bin/env bash
# The oldest torch and torchvision that settings.ini allows, checked on the tests that run every entry point on a CPU
# (tests/test_devices.py: layers, models, training, meta-learning, the runners, the main job at its tiny budget). The
# newest end is the project's own .venv (scripts/setup.sh installs the newest release), which the suite runs under.
#
#   bash .ci/oldest_torch.sh build   # a venv ($OLDEST_VENV) with torch/torchvision at the floor, numpy < 2, learn2learn
#                                    # built by scripts/setup.sh --learn2learn, symmetries' requirements (mostly a download)
#   bash .ci/oldest_torch.sh test    # tests/test_devices.py under it
#
# .ci/run starts `build` in the background before the main suite and runs `test` after it.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH=${OLDEST_TORCH:-2.4.1} TORCHVISION=${OLDEST_TORCHVISION:-0.19.1}
V=${OLDEST_VENV:-build/venv-oldest-torch}          # build/ is ignored by git
case "$V" in /*) ;; *) V=$PWD/$V ;; esac              # setup.sh runs it from another folder
# --no-compile: no .pyc for all of torch up front (CPU the main suite needs); Python compiles what it imports
PIP=("$V/bin/python" -m pip install -q --disable-pip-version-check --no-compile)
case "${1:-}" in
  build)
    t0=$SECONDS
    rm -rf "$V"; mkdir -p "$(dirname "$V")"; "${PYTHON:-python3}" -m venv "$V"
    # numpy < 2: what the oldest torch was released with; pytest to run the tests
    "${PIP[@]}" "torch==$TORCH" "torchvision==$TORCHVISION" "numpy<2" pytest
    PYTHON="$V/bin/python" bash scripts/setup.sh --learn2learn
    # what settings.ini requires, with the meta and data extras (learn2learn is built above; its own pins are not
    # installed, as scripts/setup.sh does); the package itself through a .pth file, not `pip install -e .`, which
    # would write into the clone while the main set-up installs it there at the same time
    mapfile -t NEEDS < <("$V/bin/python" -c 'import configparser; c = configparser.ConfigParser(delimiters=["="])
c.read("settings.ini"); d = c["DEFAULT"]
print("\n".join(r for k in ("requirements", "extras_meta", "extras_data") for r in d[k].split() if "learn2learn" not in r))')
    "${PIP[@]}" "${NEEDS[@]}" "numpy<2"
    "$V/bin/python" -c 'import sysconfig, pathlib; p = pathlib.Path(sysconfig.get_paths()["purelib"], "symmetries-repo.pth")
p.write_text(str(pathlib.Path.cwd()) + "\n")'
    "$V/bin/python" -c 'import torch, torchvision, numpy, learn2learn, symmetries
print(f"oldest-torch venv: torch {torch.__version__}, torchvision {torchvision.__version__}, numpy {numpy.__version__}")'
    echo "oldest-torch venv built in $((SECONDS - t0)) s" ;;
  test)
    [ -x "$V/bin/python" ] || { echo "no venv at $V: run 'bash .ci/oldest_torch.sh build' first" >&2; exit 2; }
    t0=$SECONDS
    # the gpu_check tests need the nbdev stack, which is not the point here; one process beats -n 2 for this file
    "$V/bin/python" -m pytest -q -p no:cacheprovider tests/test_devices.py -k "not gpu_check"
    echo "tests under torch $("$V/bin/python" -c 'import torch; print(torch.__version__)') passed in $((SECONDS - t0)) s" ;;
  *) echo "usage: bash .ci/oldest_torch.sh build|test" >&2; exit 2 ;;
esac
