"""The doc site builds offline and renders in a real headless browser (Debian's chromium + chromedriver)."""
import functools, http.server, json, os, re, shutil, sys, tempfile, threading, urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, run

pytestmark = pytest.mark.xdist_group("docs")
NBS = ROOT / "nbs"
SHOTS = Path(tempfile.gettempdir()) / "symmetries-docs"


def notebook_facts(nb_path):
    "Title, module and number of saved figures of a notebook, read from its JSON."
    nb = json.loads(nb_path.read_text())
    title = module = None
    figures = 0
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        if module is None and cell["cell_type"] == "code":
            m = re.search(r"#\|\s*default_exp\s+(\S+)", src)
            if m: module = m.group(1)
        if title is None and cell["cell_type"] == "markdown":
            m = re.search(r"^# (.+)$", src, re.M)
            if m: title = re.sub(r"[`*]", "", m.group(1)).strip()     # as rendered: no markdown marks
        if cell["cell_type"] == "code" and not re.search(r"#\|\s*hide", src):
            figures += sum("image/png" in o.get("data", {}) for o in cell.get("outputs", []))
    return title, module, figures


def has_math(nb_path):
    nb = json.loads(nb_path.read_text())
    return any(re.search(r"\$[^$\n]+\$", "".join(c["source"])) for c in nb["cells"] if c["cell_type"] == "markdown")


def exported_names(module):
    "Functions and classes a module defines and exports: each must have its show_doc section."
    import importlib, inspect
    mod = importlib.import_module(f"symmetries.{module}")
    return [n for n in getattr(mod, "__all__", [])
            if (inspect.isfunction(getattr(mod, n)) or inspect.isclass(getattr(mod, n)))
            and getattr(getattr(mod, n), "__module__", "") == mod.__name__]


def build_site_once(tmp_path_factory):
    """Build docs/ once per test session, whichever workers ask for it.

    pytest-xdist's `loadgroup` no longer keeps a group on one worker under pytest 9.2 (pytest-xdist issue #1386), and
    two builds at once delete each other's `_proc/docs`: the first worker to take the lock builds, the others reuse.
    """
    from filelock import FileLock
    shared = tmp_path_factory.getbasetemp().parent if os.environ.get("PYTEST_XDIST_WORKER") else tmp_path_factory.getbasetemp()
    done = shared / "docs-build.json"
    with FileLock(str(shared / "docs-build.lock")):
        if not done.exists():
            res = run([sys.executable, "scripts/build_docs.py"], timeout=900)
            done.write_text(json.dumps({"returncode": res.returncode, "log": res.stdout[-3000:] + res.stderr[-3000:]}))
    return json.loads(done.read_text())


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    build = build_site_once(tmp_path_factory)
    assert build["returncode"] == 0, build["log"]
    docs = ROOT / "docs"
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args): pass
    handler = functools.partial(Quiet, directory=str(docs))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("the doc-site test needs Debian's chromium and chromium-driver: run `make setup` as root, "
                    "or apt-get install chromium chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,1600",
                 f"--user-data-dir={tempfile.mkdtemp()}"):
        opts.add_argument(flag)
    b = webdriver.Chrome(service=Service(driver), options=opts)
    b.set_page_load_timeout(60)
    yield b
    b.quit()


PAGES = sorted(p for p in NBS.glob("*.ipynb"))


@pytest.mark.parametrize("nb", PAGES, ids=[p.stem for p in PAGES])
def test_page_renders(site, browser, nb):
    title, module, figures = notebook_facts(nb)
    assert title, f"{nb.name} has no '# Title' markdown cell"
    browser.get(f"{site}/{nb.stem}.html")
    h1 = browser.find_element("css selector", "h1").text.strip()
    assert h1 == title, f"{nb.stem}.html: h1 {h1!r}, notebook title {title!r}"
    assert title in browser.title
    if module:
        missing = [n for n in exported_names(module)
                   if not browser.execute_script("return !!document.getElementById(arguments[0]) || "
                                                 "!!document.getElementById(arguments[0].toLowerCase())", n)]
        assert not missing, f"{nb.stem}.html lacks the API docs (show_doc) of {missing}"
    # formulas are typeset by KaTeX (served from the site itself when the set-up could fetch it)
    if has_math(nb) and (ROOT / "docs" / "site_libs" / "katex" / "katex.min.js").exists():
        n_math = browser.execute_script("return document.querySelectorAll('main .katex').length")
        assert n_math > 0, f"{nb.stem}.html has maths that KaTeX did not typeset"
    # every figure saved in the notebook is on the page and decoded by the browser
    shown = browser.execute_script(
        "return Array.from(document.querySelectorAll('main img')).filter(i => "
        "(i.src.startsWith('data:image') || i.src.startsWith(location.origin)) && i.complete && i.naturalWidth > 0).length")
    assert shown >= figures, f"{nb.stem}.html shows {shown} figures, the notebook has {figures}"


def test_index_sidebar_links_resolve(site, browser):
    browser.get(f"{site}/index.html")
    SHOTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(SHOTS / "index.png"))
    print(f"screenshot of the index page: {SHOTS / 'index.png'}")
    hrefs = browser.execute_script(
        "return Array.from(document.querySelectorAll('#quarto-sidebar a[href]')).map(a => a.href)")
    assert len(hrefs) >= len(PAGES), f"sidebar has {len(hrefs)} links for {len(PAGES)} notebooks"
    for href in hrefs:
        with urllib.request.urlopen(href) as r: assert r.status == 200, href
        browser.get(href)
        assert browser.find_element("css selector", "h1").text.strip(), f"{href} has no title"
    linked = {Path(h.split("#")[0]).name for h in hrefs}
    assert {f"{p.stem}.html" for p in PAGES} <= linked, "a notebook's page is missing from the sidebar"
