"""The browser is optional: its install can never break the main job's set-up (issue 14).

`make reproduce` / `make setup` never install a browser; `make test` runs `scripts/setup.sh --browser`, which waits for
a held dpkg lock for a bounded time and, when it still cannot install chromium, prints a note and exits 0 (the doc-site
test then fails with its own message). These tests run setup.sh against fake `apt-get`, `id` and `python3` commands on
a PATH without chromium, so they run anywhere, as any user, offline, in about a second each.
"""
import os, re, stat, subprocess

import pytest

from conftest import ROOT, run

HIDDEN = {"chromium", "chromedriver", "apt-get", "sudo", "id", "npm", "python3"}
LOCK_MSG = ("E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (apt-get)\n"
            "E: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), is another process using it?")


def script(path, text):
    path.write_text("#!/bin/bash\n" + text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.fixture
def fakebin(tmp_path):
    """A PATH of every real command except a browser, apt-get, sudo, npm and python3, plus fake `id` (root) and a
    fake `apt-get` whose behaviour a test chooses; the fake logs each call's arguments to `calls`."""
    bin_ = tmp_path / "bin"; bin_.mkdir()
    for d in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        if not os.path.isdir(d): continue
        for name in os.listdir(d):
            if name in HIDDEN or (bin_ / name).exists(): continue
            src = os.path.join(d, name)
            if os.path.isfile(src) and os.access(src, os.X_OK): (bin_ / name).symlink_to(src)
    script(bin_ / "id", 'if [ "$1" = -u ]; then echo "${FAKE_UID:-0}"; else echo "uid=${FAKE_UID:-0}"; fi\n')
    calls = tmp_path / "calls"
    state = tmp_path / "state"

    def apt(body):
        "Install a fake apt-get: `body` is bash run after the call is logged ($* holds the arguments)."
        script(bin_ / "apt-get", f'echo "$*" >> {calls}\n{body}\n')
    return bin_, calls, state, apt


def setup_sh(bin_, *args, env=None, timeout=120):
    return run(["/bin/bash", "scripts/setup.sh", *args], timeout=timeout,
               env={"PATH": str(bin_), "APT_LOCK_TIMEOUT": "1", **(env or {})})


def test_browser_step_survives_a_held_dpkg_lock(fakebin):
    # what broke the first `make reproduce`: apt-get cannot get dpkg's lock, for longer than the step waits
    bin_, calls, _, apt = fakebin
    apt(f"echo '{LOCK_MSG}' >&2; exit 100")
    res = setup_sh(bin_, "--browser")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "note: could not install chromium/chromium-driver" in res.stderr
    assert "Could not get lock /var/lib/dpkg/lock-frontend" in res.stderr   # the reason, in the note
    assert "apt-get install chromium chromium-driver" in res.stderr         # and what to do
    log = calls.read_text().splitlines()
    assert any(" install chromium chromium-driver" in c for c in log), log
    # apt's own bounded wait is asked for on every call
    assert all(re.search(r"-o DPkg::Lock::Timeout=\d+", c) for c in log), log


def test_browser_step_waits_for_the_lock_then_installs(fakebin):
    # the lock is held for the first two calls, then released: the step waits and installs
    bin_, calls, state, apt = fakebin
    apt(f"""n=$(cat {state} 2>/dev/null || echo 0); echo $((n + 1)) > {state}
if [ "$n" -lt 2 ]; then echo '{LOCK_MSG}' >&2; exit 100; fi
case " $* " in *" install "*) printf '#!/bin/bash\\n' > {bin_}/chromium; printf '#!/bin/bash\\n' > {bin_}/chromedriver
  chmod +x {bin_}/chromium {bin_}/chromedriver ;; esac
exit 0""")
    res = setup_sh(bin_, "--browser", env={"APT_LOCK_TIMEOUT": "30"})
    assert res.returncode == 0, res.stdout + res.stderr
    assert "chromium and chromium-driver installed" in res.stdout, res.stdout + res.stderr
    assert "note:" not in res.stderr, res.stderr
    log = calls.read_text().splitlines()
    assert len(log) == 4 and log[-1].endswith("install chromium chromium-driver"), log   # 2 refused + update + install


def test_browser_step_fails_softly_without_root(fakebin):
    bin_, calls, _, apt = fakebin
    apt("exit 0")
    res = setup_sh(bin_, "--browser", env={"FAKE_UID": "1000"})
    assert res.returncode == 0
    assert "needs root" in res.stderr and "apt-get install chromium chromium-driver" in res.stderr
    assert not calls.exists(), "apt-get must not run without root"


def test_browser_step_skips_an_installed_browser(fakebin):
    bin_, calls, _, apt = fakebin
    apt("exit 100")
    for name in ("chromium", "chromedriver"): script(bin_ / name, "exit 0\n")
    res = setup_sh(bin_, "--browser")
    assert res.returncode == 0 and "chromium and chromedriver found" in res.stdout
    assert not calls.exists()


def test_main_setup_never_runs_apt_get(fakebin, tmp_path):
    # the set-up that `make reproduce` runs, without a browser on the machine and with an apt-get that would fail:
    # it must finish without calling apt-get. A fake python3 answers every import and pip call with success.
    bin_, calls, _, apt = fakebin
    apt(f"echo '{LOCK_MSG}' >&2; exit 100")
    py = script(tmp_path / "python3", 'case "$*" in -V) echo "Python 3.11.0" ;; esac\nexit 0\n')
    res = setup_sh(bin_, "--system", env={"PYTHON": str(py)})
    assert res.returncode == 0, res.stdout + res.stderr
    assert "setup: done" in res.stdout
    assert "chromium" not in res.stdout + res.stderr
    assert not calls.exists(), f"the main set-up ran apt-get: {calls.read_text()}"


def make_dry_run(target):
    "The commands `make TARGET` would run on a fresh clone (-B: as if nothing were built yet)."
    res = subprocess.run(["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.mark.parametrize("target", ["reproduce", "setup"])
def test_main_job_targets_do_not_install_a_browser(target):
    cmds = make_dry_run(target)
    assert "scripts/setup.sh" in cmds, cmds                  # the set-up does run...
    assert "--browser" not in cmds and "apt-get" not in cmds, cmds   # ...but not the browser step


def test_test_target_installs_the_browser_before_pytest():
    cmds = make_dry_run("test").splitlines()
    browser = [i for i, c in enumerate(cmds) if "scripts/setup.sh --browser" in c]
    pytest_ = [i for i, c in enumerate(cmds) if "-m pytest" in c]
    assert browser and pytest_ and browser[0] < pytest_[0], cmds


def _newest_python():
    "The newest CPython >= 3.12 on this machine (no stdlib distutils there), else the one the project's venv came from."
    import glob, shutil, sys
    found = [shutil.which(n) for n in ("python3.13", "python3.12")] + sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python3")), reverse=True)
    for exe in filter(None, found):   # a pyenv shim of a version that is not selected fails: try the next
        ok = subprocess.run([exe, "-c", "import sysconfig, os, sys; sys.exit(sys.version_info < (3, 12) or not os.path.exists("
                             "os.path.join(sysconfig.get_paths()['include'], 'Python.h')))"], capture_output=True)
        if ok.returncode == 0: return exe
    return sys._base_executable


def test_learn2learn_builds_from_its_sdist(tmp_path):
    # what the Colab set-up does when learn2learn is missing: download its sdist, re-cythonize, compile, into a Python
    # that has never had it (a fresh venv, preferably of a Python without distutils)
    base = _newest_python()
    venv = tmp_path / "venv"
    subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    res = subprocess.run(["bash", "scripts/setup.sh", "--learn2learn"], cwd=ROOT, capture_output=True, text=True, timeout=1200,
                         env={**os.environ, "PYTHON": str(py)})
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert "building learn2learn 0.2.0 from source" in res.stdout
    built = subprocess.run([str(py), "-c", "import importlib.util, pathlib; s = importlib.util.find_spec('learn2learn'); "
                            "print(sorted(p.name.split('.')[0] for p in pathlib.Path(s.submodule_search_locations[0], 'data').glob('*.so')))"],
                           capture_output=True, text=True, timeout=120)
    assert built.stdout.strip() == "['meta_dataset', 'task_dataset', 'transforms']", built.stdout + built.stderr
    version = subprocess.run([str(py), "-c", "import sys; print(sys.version_info[:2] >= (3, 12))"], capture_output=True, text=True).stdout
    print(f"built with {base}; Python >= 3.12 (no stdlib distutils): {version.strip()}")


def declared_floor(name: str) -> str:
    "The oldest version of `name` that settings.ini's requirements allow (`name>=X`)."
    import configparser
    cfg = configparser.ConfigParser(delimiters=["="]); cfg.read(ROOT / "settings.ini")
    found = [r.split(">=")[1] for r in cfg["DEFAULT"]["requirements"].split() if r.startswith(name + ">=")]
    assert found, f"settings.ini declares no floor for {name}"
    return found[0]


def test_the_torch_floor_is_declared_once_everywhere():
    # settings.ini (what pip enforces), setup.sh (what it installs, and keeps) and the CI job that tests the floor
    torch_, vision = declared_floor("torch"), declared_floor("torchvision")
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert f"TORCH_FLOOR={torch_} TORCHVISION_FLOOR={vision}\n" in setup, (torch_, vision)
    oldest = (ROOT / ".ci" / "oldest_torch.sh").read_text()
    assert re.search(rf"OLDEST_TORCH:-{re.escape(torch_)}\.\d+\}}", oldest), torch_
    assert re.search(rf"OLDEST_TORCHVISION:-{re.escape(vision)}\.\d+\}}", oldest), vision


def test_setup_upgrades_a_torch_older_than_the_floor(fakebin, tmp_path):
    # a venv that already has torch 2.1: kept before, though the notebooks need 2.4 (torch.amp.GradScaler, the
    # autocast queries); now upgraded, and said so. A fake python3: the import probe reports both as too old.
    bin_, _, _, _ = fakebin
    pip_calls = tmp_path / "pip_calls"
    py = script(tmp_path / "python3", f"""case "$*" in
  -V) echo "Python 3.11.0" ;;
  "- torch torchvision") cat > /dev/null; printf 'torch\\ntorchvision\\n' ;;
  "-c import torch, torchvision; print"*) echo "2.1.2 / 0.16.2" ;;
  "-m pip"*) echo "$*" >> {pip_calls} ;;
esac
exit 0
""")
    res = setup_sh(bin_, "--system", env={"PYTHON": str(py)})
    assert res.returncode == 0, res.stdout + res.stderr
    torch_, vision = declared_floor("torch"), declared_floor("torchvision")
    assert f"2.1.2 / 0.16.2: older than the oldest tested ({torch_} / {vision}), upgraded" in res.stdout, res.stdout
    assert f"torch>={torch_} torchvision>={vision}" in pip_calls.read_text(), pip_calls.read_text()
