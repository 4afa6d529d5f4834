"""The notebooks' Colab cell works: in a fresh interpreter that looks like a Colab kernel it clones the repository,
installs what is missing (scripts/setup.sh --colab) and makes the library importable in the same process, no restart.

The "Colab" here: a throwaway virtual environment whose site-packages sees this project's .venv through a path line
(torch, learn2learn, ... are found, nothing heavy is installed; .venv's own editable `symmetries` is *not* active, as
.pth files of a folder added that way are not read), a stand-in `google.colab` module, SYMMETRIES_REPO pointing at a
snapshot of this working tree (a local git repository) and SYMMETRIES_DIR at a temporary folder. About 30 s.
The cell streams the output of `git clone` and `setup.sh --colab` into itself and, when one fails, raises with its last lines.
"""
import json, os, stat, subprocess, sys, sysconfig
from pathlib import Path

import pytest

from conftest import ROOT, run

sys.path.insert(0, str(ROOT / "scripts"))
import colab_cells   # noqa: E402

# what a Colab kernel has imported before the first cell runs, plus a reader who tried `import symmetries` already
# while a folder named `symmetries` (the old clone location) sat in the working directory: a namespace package
PRELUDE = """
import sys, types
sys.modules['google.colab'] = types.ModuleType('google.colab')
import symmetries
assert getattr(symmetries, '__file__', None) is None, 'expected a namespace package before the cell, got ' + repr(symmetries)
try:
    import symmetries.layers
    raise SystemExit('symmetries.layers was importable before the Colab cell ran: the test proves nothing')
except ModuleNotFoundError:
    pass
"""
AFTER = """
import symmetries.layers, symmetries.meta, torch
layer = symmetries.layers.WSLiftConv2d(1, 2, 3, 4)
assert layer(torch.randn(1, 1, 5, 5)).shape == (1, 2, 4, 3, 3)
print('IMPORTED_FROM', symmetries.layers.__file__)
"""
# the Benchmarks page, run from a working directory without ../bench/results (Colab's /content): its numbers show
BENCHMARKS = """
import json, os, matplotlib
matplotlib.use('Agg')
for c in json.load(open(os.path.join(os.environ['SYMMETRIES_DIR'], 'nbs', '30_benchmarks.ipynb')))['cells']:
    src = ''.join(c['source'])
    if c['cell_type'] == 'code' and 'google.colab' not in src and 'nbdev_export' not in src: exec(src)
print('BENCHMARKS_FROM', results)
"""


def snapshot(dest: Path) -> Path:
    "A git repository holding this working tree's files (tracked and new, not ignored): what a clone would give."
    files = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        src = ROOT / f
        if not src.is_file(): continue          # deleted in the working tree
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        (dest / f).write_bytes(src.read_bytes()); (dest / f).chmod(src.stat().st_mode)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "init.defaultBranch=main"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "snapshot"]):
        subprocess.run(git + cmd, cwd=dest, check=True, capture_output=True)
    return dest


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    "(python of a throwaway environment, a repository to clone, a /content-like working directory)."
    tmp = tmp_path_factory.mktemp("colab")
    repo = snapshot(tmp / "repo")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "dev_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    content = tmp / "content"; (content / "symmetries").mkdir(parents=True)
    return py, repo, content


def run_cell(py, content, env, code):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")} | {"CI": "true"} | env
    env["PATH"] = f"{Path(py).parent}:{env['PATH']}"
    return subprocess.run([str(py), "-c", code], cwd=content, env=env, capture_output=True, text=True, timeout=600)


def test_colab_cell_then_import_in_the_same_kernel(colab):
    py, repo, content = colab
    target = content / "symmetries-repo"
    res = run_cell(py, content, {"SYMMETRIES_REPO": str(repo), "SYMMETRIES_DIR": str(target)},
                   PRELUDE + colab_cells.cell() + "\n" + AFTER + BENCHMARKS)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert (target / ".git").is_dir() and (target / "settings.ini").exists()
    assert f"IMPORTED_FROM {target / 'symmetries' / 'layers.py'}" in res.stdout, out[-3000:]
    assert "setup: done" in res.stdout and "already installed: kept" in res.stdout, out[-3000:]
    assert f"BENCHMARKS_FROM {target / 'bench' / 'results'}" in res.stdout, out[-3000:]
    # the editable install landed in the throwaway environment, for the kernels that start after this one
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True).stdout.strip())
    assert list(site.glob("__editable__*symmetries*")), sorted(p.name for p in site.iterdir())
    assert (target / ".git" / "colab-setup-done").exists()
    # running the cell again (a second notebook, or Run all twice) neither clones nor sets up again, nor fails
    again = run_cell(py, content, {"SYMMETRIES_REPO": str(repo / "nowhere"), "SYMMETRIES_DIR": str(target)},
                     "import sys, types; sys.modules['google.colab'] = types.ModuleType('google.colab')\n"
                     + colab_cells.cell() + "\n" + AFTER)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert "setup:" not in again.stdout, again.stdout


def test_colab_cell_fails_loudly_when_the_clone_fails(colab, tmp_path):
    py, repo, content = colab
    res = run_cell(py, content, {"SYMMETRIES_REPO": str(tmp_path / "no-such-repo"), "SYMMETRIES_DIR": str(tmp_path / "x")},
                   KERNEL + colab_cells.cell())
    assert res.returncode != 0
    assert "RuntimeError: git clone failed" in res.stderr, res.stderr[-2000:]
    assert "no-such-repo" in res.stderr.split("RuntimeError")[-1], res.stderr[-2000:]   # git's own message, in the error
    assert "setup:" not in res.stdout, "setup.sh ran although the clone failed"


# a kernel's view of output: what the cell prints reaches the notebook, what a child process writes to the inherited
# file descriptors 1 and 2 does not (Colab shows a silent cell)
KERNEL = """
import os, sys, types
sys.modules['google.colab'] = types.ModuleType('google.colab')
sys.stdout, sys.stderr = os.fdopen(os.dup(1), 'w', buffering=1), os.fdopen(os.dup(2), 'w', buffering=1)
os.dup2(os.open(os.devnull, os.O_WRONLY), 1); os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
"""
FAKE_SETUP = """#!/bin/bash
echo "setup: step one"
for i in $(seq 200); do [ -f "$GO_ON" ] && break; sleep 0.1; done   # waits until the reader has seen step one
[ -f "$GO_ON" ] || { echo "setup: step one never reached the cell while setup.sh ran" >&2; exit 3; }
echo "setup: ERROR: Python headers are missing (a stand-in failure)" >&2
exit 1
"""


def test_colab_cell_streams_setup_and_shows_its_failure(colab, tmp_path):
    "setup.sh's lines reach the cell while it runs, and a failure ends the cell with setup.sh's own last lines."
    py, repo, content = colab
    clone = tmp_path / "clone"; (clone / ".git").mkdir(parents=True); (clone / "scripts").mkdir()
    (clone / "scripts" / "setup.sh").write_text(FAKE_SETUP)
    go_on = tmp_path / "go-on"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")} | {
        "SYMMETRIES_REPO": str(repo), "SYMMETRIES_DIR": str(clone), "GO_ON": str(go_on)}
    code = KERNEL + colab_cells.cell()
    proc = subprocess.Popen([str(py), "-c", code], cwd=content, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        first = proc.stdout.readline()          # arrives while setup.sh still waits: the output is streamed
        go_on.touch()
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert first == "setup: step one\n", (first, err[-2000:])
    assert proc.returncode != 0
    assert "setup.sh failed (exit status 1)" in err, err[-2000:]
    assert "setup: ERROR: Python headers are missing" in err.split("RuntimeError")[-1], err[-2000:]
    assert "setup: ERROR" in out, out        # shown in the cell as it happened, too


def test_colab_cell_does_nothing_outside_colab(colab, tmp_path):
    py, repo, content = colab
    res = run_cell(py, content, {"SYMMETRIES_REPO": str(repo), "SYMMETRIES_DIR": str(tmp_path / "x")}, colab_cells.cell())
    assert res.returncode == 0 and not (tmp_path / "x").exists()


def fake_python(path: Path, calls: Path, missing: bool) -> Path:
    """A `python` for setup.sh that logs `-m pip` calls; `import X` checks fail when `missing` (except learn2learn,
    whose build is not what these tests are about), the final import check passes."""
    check = "exit 1" if missing else "exit 0"
    report = 'printf "%s\\n" "$@" | grep -vx learn2learn' if missing else ":"
    path.write_text(f"""#!/bin/bash
if [ "$1" = - ]; then   # setup.sh's one-interpreter probe: prints the modules it cannot import
  shift; cat > /dev/null; {report}; exit 0
fi
case "$*" in
  "-m pip"*) echo "$*" >> {calls}; exit 0 ;;
  *"sys.version_info"*|*"import learn2learn"*|*"import symmetries,"*) exit 0 ;;
  "-c import "*) {check} ;;
esac
exit 0
""")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.mark.parametrize("missing", [True, False], ids=["bare-python", "colab-like"])
def test_setup_colab_installs_only_what_the_notebooks_need(tmp_path, missing):
    calls = tmp_path / "calls"
    py = fake_python(tmp_path / "python3", calls, missing)
    res = run(["bash", "scripts/setup.sh", "--colab"], env={"PYTHON": str(py)}, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    log = calls.read_text().splitlines()
    installs = " ".join(log)
    for tool in ("jupyter", "selenium", "pytest", "smalldocs", "nbdev", "execnb", "ghapi", "-r requirements-dev.txt"):
        assert tool not in installs, f"--colab installed {tool}: {log}"
    assert log[-1].endswith("--no-deps --no-build-isolation -e ."), log      # the package itself, last
    if missing:   # a bare Python gets the notebooks' runtime needs, torch included
        for pkg in ("torch>=2.4", "torchvision>=0.19", "mlxtend", "scipy", "matplotlib", "fastcore", "gym", "scikit-learn"):
            assert pkg in installs, (pkg, log)
    else:         # Colab: everything is there and kept (its torch, its fastcore)
        assert len(log) == 1, log
        assert "already installed: kept" in res.stdout
