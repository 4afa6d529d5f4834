"""Every chapter follows the project's notebook skeleton (CONTRIBUTING.md)."""
import ast, json, re, sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import colab_cells   # noqa: E402  the one template of the Colab badge and cell

CHAPTERS = sorted(p for p in (ROOT / "nbs").glob("[0-9]*.ipynb"))


def cells(nb): return [(c["cell_type"], "".join(c["source"])) for c in json.loads(nb.read_text())["cells"]]


@pytest.mark.parametrize("nb", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_skeleton(nb):
    cs = cells(nb)
    md = [s for t, s in cs if t == "markdown"]
    assert re.search(r"^# .+\n+> .+", md[0], re.M), f"{nb.name}: first markdown cell must be '# Title' and '> summary'"
    assert any(colab_cells.badge(nb.name) in s for s in md[:3]), \
        f"{nb.name}: no Colab badge linking to this notebook near the top (run scripts/colab_cells.py)"
    colab = [s for t, s in cs[:6] if t == "code" and "google.colab" in s]
    assert colab and colab[0] == colab_cells.cell(), \
        f"{nb.name}: the hidden Colab set-up cell differs from scripts/colab_cells.py's template (run it)"
    last = [s for t, s in cs if t == "code"][-1]
    if any("#| default_exp" in s for t, s in cs if t == "code"):
        assert "#| hide" in last and "nbdev_export()" in last, f"{nb.name}: last cell must be the hidden nbdev_export()"


@pytest.mark.parametrize("nb", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_imports_in_their_own_cells(nb):
    # nbdev runs every cell that imports something while building the docs: such cells must not depend on others
    for t, s in cells(nb):
        if t != "code" or re.search(r"#\|\s*(export|exports|hide|eval:\s*false)", s): continue
        try: body = ast.parse(s).body
        except SyntaxError: continue
        imports = [n for n in body if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert not imports or len(imports) == len(body), f"{nb.name}: a cell mixes imports with other code:\n{s}"


def test_colab_cells_come_from_settings():
    # one source for the repository URL: settings.ini's git_url, read when the cells are generated
    cfg = colab_cells.settings()
    owner_name = colab_cells.repo_path(cfg["git_url"])
    assert colab_cells.badge("02_groups.ipynb").endswith(f"/github/{owner_name}/blob/{cfg['branch']}/nbs/02_groups.ipynb)")
    cell = colab_cells.cell()
    assert f"os.environ.get('SYMMETRIES_REPO', '{cfg['git_url']}')" in cell
    assert "#| hide" in cell and "#| eval: false" in cell and "setup.sh'), '--colab'" in cell
    assert "check=True" in cell and ";" not in cell.split("git', 'clone'")[1].split("\n")[0]   # a failed clone stops the cell
    fork = colab_cells.cell({**cfg, "git_url": "https://github.com/someone/fork"})
    assert "'https://github.com/someone/fork'" in fork and cfg["git_url"] not in fork
    with pytest.raises(ValueError, match="git_url"): colab_cells.cell({**cfg, "git_url": "not a url"})
    res = __import__("subprocess").run([sys.executable, str(ROOT / "scripts" / "colab_cells.py"), "--check"],
                                       capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
