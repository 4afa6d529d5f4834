"""The linter the ecosystem uses, ruff (configured in ruff.toml), passes on the library, scripts, benchmarks and
studies; and their lines stay within ruff.toml's line length, except the `__all__` line that nbdev writes."""
import sys, tomllib

from conftest import ROOT, run


def test_ruff_passes():
    res = run([sys.executable, "-m", "ruff", "check", "--no-cache", "."])
    assert "No module named ruff" not in res.stderr, "ruff is missing: pip install -r requirements-dev.txt"
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]


def test_lines_within_the_line_length():
    cfg = tomllib.loads((ROOT / "ruff.toml").read_text())
    files = sorted(p for pattern in cfg["include"] for p in ROOT.glob(pattern) if p.name != "_modidx.py")
    assert len(files) > 30, files
    long = [f"{p.relative_to(ROOT)}:{i}: {len(line)} characters" for p in files
            for i, line in enumerate(p.read_text().splitlines(), 1)
            if len(line) > cfg["line-length"] and not line.startswith("__all__ = ")]   # nbdev writes __all__
    assert not long, "lines over the line length (fix them in the notebooks for symmetries/*.py):\n" + "\n".join(long)
