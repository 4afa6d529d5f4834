"""Every chapter follows the project's notebook skeleton (CONTRIBUTING.md)."""
import ast, json, re

import pytest

from conftest import ROOT

CHAPTERS = sorted(p for p in (ROOT / "nbs").glob("[0-9]*.ipynb"))


def cells(nb): return [(c["cell_type"], "".join(c["source"])) for c in json.loads(nb.read_text())["cells"]]


@pytest.mark.parametrize("nb", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_skeleton(nb):
    cs = cells(nb)
    md = [s for t, s in cs if t == "markdown"]
    assert re.search(r"^# .+\n+> .+", md[0], re.M), f"{nb.name}: first markdown cell must be '# Title' and '> summary'"
    assert any(f"colab.research.google.com/github/symmetries/symmetries/blob/main/nbs/{nb.name}" in s for s in md[:3]), \
        f"{nb.name}: no Colab badge linking to this notebook near the top"
    colab = [s for t, s in cs[:6] if t == "code" and "google.colab" in s]
    assert colab and "#| hide" in colab[0] and "#| eval: false" in colab[0] and "setup.sh --system" in colab[0], \
        f"{nb.name}: needs the hidden, never-tested Colab install cell that runs scripts/setup.sh --system"
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
