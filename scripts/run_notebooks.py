"""Execute notebooks in place and save their outputs (what the doc site shows), skipping the cells the tests skip.

    python scripts/run_notebooks.py                 # every notebook under nbs/
    python scripts/run_notebooks.py nbs/02_groups.ipynb nbs/04_sinkhorn.ipynb
    python scripts/run_notebooks.py --flags slow    # also run the cells flagged `#| slow` (full configuration)

Cells with `#| eval: false` and cells flagged with one of settings.ini's `tst_flags` (not asked for by --flags)
are left unexecuted, exactly as `nbdev_test` leaves them; the notebook is then cleaned with `nbdev_clean`.
"""
import argparse, os, re, subprocess, sys, time
from pathlib import Path

from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell
from nbdev.config import get_config
from nbdev.process import extract_directives


def skipped(cell, flags):
    "True for cells `nbdev_test` would not run."
    if cell.cell_type != "code": return True
    if "nbdev_export" + "(" in cell.source: return True
    direc = extract_directives(cell, remove=False)
    if direc.get("eval:", [""])[0].lower() == "false": return True
    return bool(flags & direc.keys())


def run_notebook(path, flags):
    nb = read_nb(path)
    shell = CaptureShell(path)
    shell.set_path(Path(path).parent.resolve())
    for cell in nb.cells:
        # every output is cleared first: execnb only replaces the outputs of cells that print something, so a cell
        # that stopped printing (a fixed warning) would otherwise keep its stale output
        if cell.cell_type == "code": cell.outputs, cell.execution_count = [], None
    start = time.time()
    cwd = os.getcwd()
    os.chdir(Path(path).parent)
    try: shell.run_all(nb, exc_stop=True, preproc=lambda c: skipped(c, flags))
    except Exception:
        sys.stderr.write(shell.prettytb(fname=path) + "\n")
        return False
    finally: os.chdir(cwd)
    write_nb(nb, path)
    print(f"{path}: {time.time() - start:.1f}s")
    return True


def main():
    cfg = get_config()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="*", help="notebooks to run (default: all under nbs/)")
    p.add_argument("--flags", default="", help="space separated tst_flags whose cells should run too")
    a = p.parse_args()
    tst_flags = set(re.split(r"[|\s]+", cfg.get("tst_flags", ""))) - {""}
    flags = tst_flags - set(a.flags.split())
    nbs = [Path(n) for n in a.notebooks] or sorted(Path(cfg.nbs_path).glob("*.ipynb"))
    ok = True
    console = Path(__file__).with_name("console.py")   # nbdev_clean by its entry point, wherever its script lies
    for n in nbs:
        # a fresh interpreter per notebook, as nbdev_test gives, so one notebook's state cannot leak into the next
        if len(nbs) > 1: ok &= subprocess.run([sys.executable, __file__, str(n), "--flags", a.flags]).returncode == 0
        else:
            ok &= run_notebook(n, flags)
            subprocess.run([sys.executable, str(console), "nbdev_clean", "--fname", str(n)], check=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
