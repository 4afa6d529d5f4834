"""The set-up: what it installs imports cleanly, bad environments get a readable error, README and CI agree."""
import re, subprocess, sys

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
