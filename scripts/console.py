"""Run an installed console script (nbdev_test, nbdev_clean, ...) by its entry point, with this interpreter.

    python scripts/console.py nbdev_test --path nbs/26_ws_mnist.ipynb

Where pip puts a console script's file depends on the install: next to the interpreter in a venv, in DIR/bin for
`pip install --target DIR` (the offline GPU machine's bundle), in ~/.local/bin for a user install. The package's
metadata says which function the name runs, whatever the install.
"""
import sys
from importlib.metadata import entry_points

if __name__ == "__main__":
    if len(sys.argv) < 2: sys.exit("usage: python scripts/console.py NAME [ARGS...]")
    name = sys.argv.pop(1)
    found = entry_points(group="console_scripts", name=name)
    if not found: sys.exit(f"console.py: no console script {name!r} is installed for {sys.executable}")
    sys.argv[0] = name
    # called at the top level of a file run directly, as pip's own script does: fastcore's call_parse reads sys.argv
    # only then (from `python -c` it would parse no arguments at all)
    sys.exit(next(iter(found)).load()())
