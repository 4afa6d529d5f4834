#!/usr/bin/env bash
# Set-up for symmetries: one place that installs everything the notebooks, the library, the tests and the docs need.
#
#   bash scripts/setup.sh            # a virtual environment in .venv (what `make setup` runs)
#   bash scripts/setup.sh --system   # everything into the current python (torch already there is kept)
#   bash scripts/setup.sh --colab    # only what the notebooks need to run, into the current python (the notebooks'
#                                    # Colab cell: Colab's torch, fastcore, ... are kept; no jupyter/test/doc tools)
#   bash scripts/setup.sh --browser  # only Debian's chromium + chromedriver, for the doc-site browser test (`make test`
#                                    # runs it); optional: it never fails, it prints a note when it cannot install them
#   bash scripts/setup.sh --learn2learn  # only learn2learn 0.2.0, built from its sdist into $PYTHON with its build tools
#                                    # (what --colab does when learn2learn is missing; tests/test_setup.py checks it)
#
# Environment: PYTHON (interpreter to build the venv from, or to install into with --system/--colab; default python3),
# VENV (default .venv),
# APT_LOCK_TIMEOUT (seconds --browser waits for another apt-get/dpkg to release its lock, default 300).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=venv
BROWSER_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --system) MODE=system ;;
    --colab) MODE=colab ;;
    --browser) BROWSER_ONLY=1 ;;
    --learn2learn) MODE=learn2learn ;;
    --no-browser) ;;  # the default since the browser became its own step; kept so that older commands still work
    -h|--help) sed -n 2,14p "$0"; exit 0 ;;
    *) echo "setup: unknown option '$arg' (valid: --system, --colab, --browser, --learn2learn)" >&2; exit 2 ;;
  esac
done
LOG=$(mktemp -t symmetries-setup.XXXXXX.log)

die() { echo >&2; echo "setup: ERROR: $*" >&2; exit 1; }
step() { echo "setup: $*"; }
note() { echo "setup: note: $*" >&2; }
# Runs a command quietly; on failure shows the last lines of its output and names what failed.
quiet() {
  local what=$1; shift
  if ! "$@" >>"$LOG" 2>&1; then
    echo "---- last lines of the log ($LOG) ----" >&2
    grep -v "WARNING: Location" "$LOG" | tail -n 25 >&2
    die "$what failed (full log: $LOG)"
  fi
}

# ---- Chromium for the doc-site browser test: a step of its own (--browser), which never fails -----------------
# The main job never uses a browser, so `make setup` / `make reproduce` do not install one; `make test` (and so CI)
# does. Another apt-get or dpkg (unattended-upgrades on a fresh machine) may hold dpkg's lock: wait for it, bounded.
APT_LOCK_TIMEOUT=${APT_LOCK_TIMEOUT:-300}
apt_get() {  # apt-get "$@" as root, retried while another apt/dpkg holds a lock, for APT_LOCK_TIMEOUT seconds in all
  local deadline=$((SECONDS + APT_LOCK_TIMEOUT)) out left
  while :; do
    left=$((deadline - SECONDS)); [ "$left" -gt 0 ] || left=0
    if out=$("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="$left" -q -y "$@" 2>&1); then
      echo "$out" >>"$LOG"; return 0
    fi
    echo "$out" >>"$LOG"
    left=$((deadline - SECONDS))
    # apt's own DPkg::Lock::Timeout waits for dpkg's lock; this loop also covers the package lists' lock and older apt
    if grep -qiE "could not get lock|unable to acquire|another process" <<<"$out" && [ "$left" -gt 0 ]; then
      sleep $((left < 2 ? left : 2)); continue
    fi
    APT_ERROR=$(grep -E "^(E|W|Err):" <<<"$out" | tail -n 3 || true)
    [ -n "$APT_ERROR" ] || APT_ERROR=$(tail -n 3 <<<"$out")
    return 1
  done
}
install_browser() {
  if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    step "chromium and chromedriver found (doc-site browser test)"; rm -f "$LOG"; return 0
  fi
  local hint="the doc-site browser test (tests/test_docs.py) will fail until they are installed (Debian/Ubuntu, as root: apt-get install chromium chromium-driver)"
  SUDO=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then SUDO=(sudo -n)
    else note "chromium/chromedriver not found and not installed: that needs root (or sudo without a password); $hint"; return 0; fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    note "chromium/chromedriver not found and not installed: no apt-get here; $hint"; return 0
  fi
  step "installing Debian's chromium and chromium-driver for the doc-site browser test (waits up to ${APT_LOCK_TIMEOUT} s for a held apt/dpkg lock)"
  APT_ERROR=
  apt_get update || note "apt-get update failed (${APT_ERROR//$'\n'/ }); trying the install with the package lists there are"
  if ! apt_get install chromium chromium-driver; then
    note "could not install chromium/chromium-driver: ${APT_ERROR//$'\n'/ } (full log: $LOG); $hint"; return 0
  fi
  if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    step "chromium and chromium-driver installed"; rm -f "$LOG"
  else
    note "apt-get installed chromium and chromium-driver, but chromium or chromedriver is not on PATH (log: $LOG); $hint"
  fi
}
if [ "$BROWSER_ONLY" = 1 ]; then
  install_browser || true
  [ -s "$LOG" ] || rm -f "$LOG"
  exit 0
fi

# ---- interpreter ---------------------------------------------------------------------------------------
BASE_PY=${PYTHON:-python3}
command -v "$BASE_PY" >/dev/null 2>&1 || die "no Python interpreter '$BASE_PY' found. Install Python >= 3.10 or set PYTHON=/path/to/python3."
"$BASE_PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || die "Python >= 3.10 is needed, found $("$BASE_PY" -V 2>&1). Set PYTHON=/path/to/python3.10+."
if [ "$MODE" = venv ]; then
  VENV=${VENV:-.venv}
  if [ ! -x "$VENV/bin/python" ]; then
    step "creating virtual environment $VENV"
    "$BASE_PY" -m venv "$VENV" >>"$LOG" 2>&1 || die "could not create a virtual environment with '$BASE_PY -m venv' (Debian: apt-get install python3-venv)."
  fi
  case "$VENV" in /*) PY=$VENV/bin/python ;; *) PY=$ROOT/$VENV/bin/python ;; esac
else
  PY=$(command -v "$BASE_PY")
fi
PIP=("$PY" -m pip install --disable-pip-version-check)

# The oldest torch and torchvision the project is tested with (.ci/oldest_torch.sh); settings.ini declares the same
TORCH_FLOOR=2.4 TORCHVISION_FLOOR=0.19
# Which of the modules named as arguments this Python cannot import, one per line (one interpreter for all of them:
# importing learn2learn, which imports torch, takes seconds); a torch or torchvision older than the floor counts too
missing_modules() {
  FLOORS="torch=$TORCH_FLOOR torchvision=$TORCHVISION_FLOOR" "$PY" - "$@" <<'PYEOF' 2>/dev/null
import importlib, os, sys
floors = dict(f.split("=") for f in os.environ["FLOORS"].split())
release = lambda v: tuple(int(p) for p in v.split("+")[0].split(".")[:2])
for name in sys.argv[1:]:
    try: mod = importlib.import_module(name)
    except Exception: print(name); continue
    if name in floors and release(mod.__version__) < release(floors[name]): print(name)
PYEOF
}
# --colab: module=pip name of what the notebooks and learn2learn's import need, and its build tools
COLAB_NEEDS=("torch=torch>=$TORCH_FLOOR" "torchvision=torchvision>=$TORCHVISION_FLOOR" numpy=numpy scipy=scipy matplotlib=matplotlib
             tqdm=tqdm mlxtend=mlxtend sklearn=scikit-learn requests=requests gym=gym fastcore.test=fastcore IPython=ipython)
L2L_BUILD_NEEDS=(Cython=cython setuptools=setuptools wheel=wheel)
if [ "$MODE" = colab ]; then
  COLAB_MISSING=$(missing_modules learn2learn "${COLAB_NEEDS[@]%%=*}" "${L2L_BUILD_NEEDS[@]%%=*}")
  if grep -qx learn2learn <<<"$COLAB_MISSING"; then HAVE_L2L=0; else HAVE_L2L=1; fi
elif "$PY" -c 'import learn2learn' >/dev/null 2>&1; then HAVE_L2L=1; else HAVE_L2L=0; fi

# ---- a C compiler and Python headers: learn2learn compiles three Cython extensions ----------------------
# checked before the long installs, and only when learn2learn still has to be built
if [ "$HAVE_L2L" = 0 ]; then
  CC_BIN=${CC:-$("$PY" -c 'import sysconfig; print((sysconfig.get_config_var("CC") or "cc").split()[0])')}
  command -v "$CC_BIN" >/dev/null 2>&1 \
    || die "no C compiler found ('$CC_BIN'). learn2learn builds C extensions: install one (Debian/Ubuntu: apt-get install build-essential), or set CC."
  HDR=$("$PY" -c 'import sysconfig, os; print(os.path.join(sysconfig.get_paths()["include"], "Python.h"))')
  [ -f "$HDR" ] || die "Python headers are missing ($HDR). learn2learn builds C extensions: install them (Debian/Ubuntu: apt-get install python3-dev)."
fi

# ---- --colab: only what the notebooks import at run time, each installed only when it is missing ---------------
# Colab already has torch, numpy, scipy, matplotlib, tqdm, scikit-learn, requests and (through fastai) fastcore: they
# are kept. The notebooks need fastcore only for `fastcore.test`, which every fastcore has; installing the nbdev 2 stack
# would pin fastcore to 1.x and break Colab's fastai (it needs fastcore<1.9 up to 2.8.5 and >=1.14.6 / >=2.2.21 from
# 2.8.8), so it is left out: the notebooks' last cell (nbdev_export) is a no-op there (see the Colab cell).
colab_setup() {
  local pairs=("${COLAB_NEEDS[@]}") missing=() pair mod
  [ "$HAVE_L2L" = 1 ] || pairs+=("${L2L_BUILD_NEEDS[@]}")     # build tools only when learn2learn has to be built
  for mod in $COLAB_MISSING; do
    for pair in "${pairs[@]}"; do if [ "${pair%%=*}" = "$mod" ]; then missing+=("${pair#*=}"); fi; done
  done
  if [ ${#missing[@]} -gt 0 ]; then
    step "installing what the notebooks need: ${missing[*]}"
    quiet "installing ${missing[*]}" "${PIP[@]}" "${missing[@]}"
  else
    step "torch, torchvision and the notebooks' other needs already installed: kept"
  fi
}

if [ "$MODE" = colab ]; then
  colab_setup
elif [ "$MODE" = learn2learn ]; then
  [ "$HAVE_L2L" = 1 ] || quiet "installing learn2learn's build tools" "${PIP[@]}" "${L2L_BUILD_NEEDS[@]#*=}"
else
# ---- torch: keep one that is already there (Colab ships its own CUDA build) unless it is older than the floor -----
if [ -z "$(missing_modules torch torchvision)" ]; then
  step "torch $("$PY" -c 'import torch; print(torch.__version__)') already installed: kept"
else
  if OLD=$("$PY" -c 'import torch, torchvision; print(torch.__version__, "/", torchvision.__version__)' 2>/dev/null); then
    step "torch / torchvision $OLD: older than the oldest tested ($TORCH_FLOOR / $TORCHVISION_FLOOR), upgraded"
  fi
  step "installing torch and torchvision (several GB for a CUDA build; a few minutes)"
  quiet "installing torch/torchvision" "${PIP[@]}" "torch>=$TORCH_FLOOR" "torchvision>=$TORCHVISION_FLOOR"
fi

# ---- the nbdev 2 stack (see CONTRIBUTING.md: nbdev 3 refuses settings.ini; these versions import together) --------
step "installing the nbdev 2 stack, jupyter, matplotlib and test tools"
quiet "installing the python dependencies" "${PIP[@]}" -r requirements-dev.txt

fi

# ---- learn2learn 0.2.0: its sdist ships C files generated by an old Cython that include longintrepr.h,
# which Python 3.11 removed. Regenerate them from the .pyx sources with today's Cython, then build.
install_learn2learn() {
  if [ "$HAVE_L2L" = 1 ]; then step "learn2learn already installed: kept"; return; fi
  step "building learn2learn 0.2.0 from source (re-cythonized for Python >= 3.11)"
  local tmp; tmp=$(mktemp -d)
  quiet "downloading the learn2learn 0.2.0 sdist" "$PY" -m pip download --disable-pip-version-check --no-deps --no-binary :all: learn2learn==0.2.0 -d "$tmp"
  tar -xzf "$tmp"/learn2learn-0.2.0.tar.gz -C "$tmp"
  # its setup.py imports setup from distutils, which Python 3.12 removed: setuptools' setup is the same function
  sed -i 's/^from distutils.core import setup$/from setuptools import setup/' "$tmp/learn2learn-0.2.0/setup.py"
  (cd "$tmp/learn2learn-0.2.0" && quiet "cythonizing learn2learn" "$PY" -m cython -3 learn2learn/data/meta_dataset.pyx learn2learn/data/task_dataset.pyx learn2learn/data/transforms.pyx)
  # --no-deps: its install_requires pulls gsutil and qpth, which nothing here uses; what its import needs is in requirements-dev.txt
  quiet "compiling learn2learn (needs a C compiler)" "${PIP[@]}" --no-deps --no-build-isolation "$tmp/learn2learn-0.2.0"
  rm -rf "$tmp"
}
install_learn2learn
if [ "$MODE" = learn2learn ]; then step "done: learn2learn built into $PY"; rm -f "$LOG"; exit 0; fi

step "installing symmetries in editable mode"
if [ "$MODE" = colab ]; then   # Colab's setuptools builds it: no isolated build environment to download
  quiet "installing the package (pip install -e .)" "${PIP[@]}" --no-deps --no-build-isolation -e .
  versions=$("$PY" -c 'import symmetries, learn2learn, torch, fastcore.test, mlxtend, matplotlib, scipy, tqdm, IPython
print(f"torch {torch.__version__}, learn2learn {learn2learn.__version__}")' 2>>"$LOG") \
    || { tail -n 20 "$LOG" >&2; die "the final import check failed"; }
  step "done ($versions); in a running notebook the Colab cell puts the clone on sys.path, no restart needed"
  [ -d .git ] && date > .git/colab-setup-done   # the Colab cell skips the set-up of a clone that has it
  rm -f "$LOG"; exit 0
fi
quiet "installing the package (pip install -e .)" "${PIP[@]}" --no-deps -e .

# ---- KaTeX for the doc site's maths, so the built site renders formulas offline (npm registry; optional) --------
KATEX_DIR=$("$PY" -c 'import sys; print(sys.prefix)')/share/katex
if [ ! -f "$KATEX_DIR/dist/katex.min.js" ]; then
  if command -v npm >/dev/null 2>&1; then
    step "fetching KaTeX 0.16.11 (offline maths in the doc site)"
    ktmp=$(mktemp -d)
    if (cd "$ktmp" && npm pack --silent katex@0.16.11 >>"$LOG" 2>&1); then
      mkdir -p "$KATEX_DIR" && tar -xzf "$ktmp"/katex-0.16.11.tgz -C "$KATEX_DIR" --strip-components=1 package/dist
    else echo "setup: note: could not fetch KaTeX with npm; the doc site will load it from its CDN" >&2; fi
    rm -rf "$ktmp"
  else echo "setup: note: npm not found; the doc site will load KaTeX from its CDN (maths needs a connection)" >&2; fi
fi

"$PY" -c 'import symmetries, learn2learn, torch, nbdev' >>"$LOG" 2>&1 || { tail -n 20 "$LOG" >&2; die "the final import check failed"; }
[ "$MODE" = venv ] && touch "$VENV/.setup-done"
step "done ($("$PY" -c 'import torch, learn2learn, nbdev; print(f"torch {torch.__version__}, learn2learn {learn2learn.__version__}, nbdev {nbdev.__version__}")' 2>/dev/null))"
rm -f "$LOG"
