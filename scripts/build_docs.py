"""Build the doc site into docs/ from the notebooks, offline.

    python scripts/build_docs.py            # docs/ (what `make docs` runs)
    python scripts/build_docs.py --serve    # serve docs/ at http://127.0.0.1:8000/ (`make serve` runs it after a build)
    python scripts/build_docs.py --readme   # only regenerate README.md from nbs/index.ipynb

The pages open from file:// too, but there the browser refuses the search index (search.json) to a script, so search
finds nothing: serve the folder (`--serve`, `--port N`) to search it.

nbdev's own processing (`proc_nbs`: frontmatter, `show_doc` tables for every exported name, hidden cells dropped)
writes `_proc/`; the pure-Python renderer `smalldocs` turns that Quarto project into HTML. Where Quarto is
installed, `nbdev_docs` is the equivalent. Pages keep their notebook's name (`05_layers.html`); links that nbdev
points at the published site are rewritten to the local pages so the built site is self-contained.
"""
import argparse, functools, http.server, json, re, shutil, subprocess, sys
from pathlib import Path

import nbdev.doclinks
from nbdev.config import get_config
from nbdev.doclinks import _nbpath2html
from nbdev.quarto import proc_nbs, refresh_quarto_yml

ROOT = Path(__file__).resolve().parent.parent
# nbdev_docs and smalldocs by their entry point: where pip put their scripts depends on the install
CONSOLE = str(Path(__file__).with_name("console.py"))


def notebooks(nbs_path):
    "The site's pages in sidebar order: index first, then by number."
    nbs = sorted(p for p in nbs_path.glob("*.ipynb") if p.name != "index.ipynb")
    return [nbs_path / "index.ipynb"] + nbs


def write_sidebar(nbs_path):
    lines = ["website:", "  sidebar:", "    contents:"] + [f"      - {p.name}" for p in notebooks(nbs_path)]
    (nbs_path / "sidebar.yml").write_text("\n".join(lines) + "\n")


def module_pages(nbs_path):
    "Map `module.html` (the page name nbdev links to) to the notebook's page name."
    pages = {}
    for p in notebooks(nbs_path):
        src = "".join(json.loads(p.read_text())["cells"][0]["source"])
        m = re.search(r"#\|\s*default_exp\s+(\S+)", src)
        if m: pages[m.group(1).replace(".", "/") + ".html"] = p.stem + ".html"
    return pages


def nbdev_pages(nbs_path):
    "Map the page name nbdev gives a notebook (`groups.html`, its number dropped) to the site's (`02_groups.html`)."
    return {_nbpath2html(p.relative_to(nbs_path)).as_posix(): p.relative_to(nbs_path).with_suffix(".html").as_posix()
            for p in notebooks(nbs_path)}


def drop_output_file(cache):
    """Remove the `output-file` that nbdev's front matter gives every processed notebook.

    It renames the page for Quarto (`02_groups.ipynb` -> `groups.html`); this site keeps the notebooks' names and
    `relink` points nbdev's links at them, so the key is not wanted (smalldocs, which does not read it, warned on
    every page). A notebook already processed in an earlier build is already without it.
    """
    for nb_path in sorted(cache.rglob("*.ipynb")):
        nb = json.loads(nb_path.read_text())
        cell = nb["cells"][0] if nb["cells"] else None
        if not cell or cell["cell_type"] != "raw": continue
        src = "".join(cell["source"])
        new = re.sub(r"(?m)^output-file:[^\n]*\n", "", src)
        if new != src:
            cell["source"] = new.splitlines(keepends=True)
            nb_path.write_text(json.dumps(nb, indent=1, ensure_ascii=False))


SHOW_DOC = re.compile(r"^(?:#\|[^\n]*\n)*show_doc\((\w+)\)\s*$")


def _defined_at(source, name):
    "Where `name` is defined in a module's source (def, class or assignment at the top level); None if nowhere."
    m = re.search(rf"^(?:async def |def |class )?{re.escape(name)}\b", source, re.M)
    return m.start() if m else None


def _class_line(cls):
    "`class Name(Base, ...):`, the line that stands for a class whose rendered constructor is (*args, **kwargs)."
    bases = getattr(cls, "__orig_bases__", cls.__bases__)            # NamedTuple rather than tuple
    return f"class {cls.__name__}({', '.join(getattr(b, '__name__', str(b)) for b in bases if b is not object)}):"


def fix_show_docs(cache, nbs_path):
    """Two fixes to the `show_doc` sections nbdev 2.4 writes into the processed notebooks.

    - nbdev inserts the sections of one exported cell at the same place one after the other, so they come out in the
      reverse of the cell's order: each run of consecutive sections is put back in the order of the module's source.
    - fastcore writes every signature with `def`: a class gets `class Name(...)`, and a class whose constructor is
      inherited (an exception, a list) is shown with its bases, `class Name(Base):`, rather than `(*args, **kwargs)`.
    """
    import importlib
    modules = {page[:-len(".html")]: mod for mod, page in
               ((m[:-len(".html")].replace("/", "."), p) for m, p in module_pages(nbs_path).items())}
    for nb_path in sorted(cache.glob("*.ipynb")):
        if nb_path.stem not in modules: continue
        module = importlib.import_module(f"{get_config().lib_name}.{modules[nb_path.stem]}")
        source = Path(module.__file__).read_text()
        nb = json.loads(nb_path.read_text())
        cells, changed = nb["cells"], False
        name_of = lambda c: (m.group(1) if c["cell_type"] == "code" and (m := SHOW_DOC.match("".join(c["source"])))
                             else None)
        i = 0
        while i < len(cells):
            j = i
            while j < len(cells) and name_of(cells[j]): j += 1
            run = cells[i:j]
            if len(run) > 1:
                order = sorted(run, key=lambda c: (_defined_at(source, name_of(c)) is None,
                                                   _defined_at(source, name_of(c)) or 0))
                if order != run: cells[i:j] = order; changed = True
            i = max(j, i + 1)
        for c in cells:
            name = name_of(c)
            obj = getattr(module, name, None) if name else None
            if not isinstance(obj, type): continue
            for out in c.get("outputs", []):
                for key in ("text/markdown", "text/plain"):
                    if key not in out.get("data", {}): continue
                    text = "".join(out["data"][key])
                    new = text.replace(f"def {name}(", f"class {name}(")     # (a notebook processed before: no-op)
                    new = new.replace(f"class {name}(\n    *args, **kwargs\n):", _class_line(obj))
                    if new != text: out["data"][key] = new.splitlines(keepends=True); changed = True
        if changed: nb_path.write_text(json.dumps(nb, indent=1, ensure_ascii=False))


def relink(site, cfg, pages):
    "Point nbdev's links to the published site at the local pages."
    host = (cfg.doc_host + cfg.doc_baseurl).rstrip("/") + "/"
    pat = re.compile(re.escape(host) + r"([\w/.-]+\.html)")
    for html in site.glob("*.html"):
        text = html.read_text()
        new = pat.sub(lambda m: pages.get(m.group(1), m.group(1)), text)
        if new != text: html.write_text(new)


KATEX_CDN = "https://cdn.jsdelivr.net/npm/katex@0.16.11/dist"


def vendor_katex(site):
    "Serve KaTeX from the site itself (fetched by the set-up) so formulas render offline; else keep the CDN."
    local = Path(sys.prefix) / "share" / "katex" / "dist"
    if not (local / "katex.min.js").exists():
        print("note: KaTeX not found locally (run `make setup`); the site loads it from its CDN")
        return False
    shutil.copytree(local, site / "site_libs" / "katex", dirs_exist_ok=True)
    for html in site.glob("*.html"):
        text = html.read_text()
        if KATEX_CDN in text: html.write_text(text.replace(KATEX_CDN, "site_libs/katex"))
    return True


def build_readme(nbs_path):
    """README.md from index.ipynb: markdown cells as they are, code cells fenced, their text outputs below.

    A cell marked `#| echo: false` shows only its output, as on the site: its markdown output goes in as markdown (the
    README's numbers that are read from recorded files come in this way).
    """
    nb = json.loads((nbs_path / "index.ipynb").read_text())
    out = ["<!-- WARNING: generated from nbs/index.ipynb by scripts/build_docs.py --readme; edit the notebook -->", ""]
    for cell in nb["cells"]:
        src = "".join(cell["source"]).strip()
        # chapter links are relative to nbs/ in the notebook (and the site), to the repo root in the README
        if cell["cell_type"] == "markdown": out += [re.sub(r"\]\((\d\d_\w+\.ipynb)\)", r"](nbs/\1)", src), ""]
        elif cell["cell_type"] == "code" and re.match(r"#\|\s*echo:\s*false", src):
            shown = ["".join(o.get("data", {}).get("text/markdown", "")) for o in cell.get("outputs", [])]
            out += [m.strip() + "\n" for m in shown if m.strip()]
        elif cell["cell_type"] == "code" and not src.startswith("#| hide"):
            out += ["```python", src, "```", ""]
            text = "".join("".join(o.get("text", "")) if o.get("output_type") == "stream" else
                           "".join(o.get("data", {}).get("text/plain", "")) for o in cell.get("outputs", []))
            if text.strip(): out += ["```", text.rstrip(), "```", ""]
    return "\n".join(out).rstrip() + "\n"


def serve(doc_path, port, host="127.0.0.1"):
    "Serve the built site over HTTP until Ctrl-C: search works there, not from file://."
    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args): pass
    try:
        server = http.server.ThreadingHTTPServer((host, port), functools.partial(Handler, directory=str(doc_path)))
    except OSError as e:
        sys.exit(f"cannot serve on {host}:{port} ({e.strerror}): choose another port with --port N (make serve PORT=N)")
    with server:
        print(f"serving {doc_path} at http://{host}:{server.server_address[1]}/  (Ctrl-C stops)", flush=True)
        try: server.serve_forever()
        except KeyboardInterrupt: print()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readme", action="store_true", help="only write README.md from nbs/index.ipynb")
    ap.add_argument("--check-readme", action="store_true",
                    help="only check that README.md is up to date (exit 1 if not)")
    ap.add_argument("--serve", action="store_true",
                    help="serve docs/ over HTTP (search needs it); builds it first if it is missing")
    ap.add_argument("--port", type=int, default=8000, help="port for --serve (default 8000; 0 picks a free one)")
    a = ap.parse_args()
    cfg = get_config(path=ROOT)
    nbs_path, doc_path = cfg.nbs_path, cfg.doc_path
    if a.serve:
        if not (doc_path / "index.html").exists(): build(cfg)
        serve(doc_path, a.port)
        return
    if a.check_readme:
        ok = (cfg.config_path / "README.md").read_text() == build_readme(nbs_path)
        print("README.md is up to date" if ok else "README.md differs from nbs/index.ipynb: run `python "
                                                   "scripts/build_docs.py --readme`")
        sys.exit(0 if ok else 1)
    if a.readme:
        (cfg.config_path / "README.md").write_text(build_readme(nbs_path))
        return
    build(cfg)
    print(f"view it: open {doc_path / 'index.html'} (search needs a server: `make serve`, or "
          f"`python scripts/build_docs.py --serve`, then http://127.0.0.1:8000/)")


def build(cfg):
    "Build the site into docs/."
    nbs_path, doc_path = cfg.nbs_path, cfg.doc_path
    if shutil.which("quarto"):
        subprocess.run([sys.executable, CONSOLE, "nbdev_docs"], check=True, cwd=cfg.config_path)
        return
    refresh_quarto_yml()
    nbdev.doclinks._build_modidx()
    write_sidebar(nbs_path)
    cache = proc_nbs(nbs_path, n_workers=1)
    drop_output_file(cache)
    fix_show_docs(cache, nbs_path)
    site = cache / doc_path.name
    shutil.rmtree(site, ignore_errors=True)
    subprocess.run([sys.executable, CONSOLE, "smalldocs", "render", "--quiet", str(cache)], check=True)
    relink(site, cfg, {**module_pages(nbs_path), **nbdev_pages(nbs_path)})
    vendor_katex(site)
    # docs/README.md (committed) says what the folder is; everything else in docs/ is rebuilt
    for p in doc_path.glob("*"):
        if p.name != "README.md": shutil.rmtree(p) if p.is_dir() else p.unlink()
    doc_path.mkdir(exist_ok=True)
    shutil.copytree(site, doc_path, dirs_exist_ok=True)
    print(f"doc site: {len(list(doc_path.glob('*.html')))} pages in {doc_path}")


if __name__ == "__main__":
    main()
