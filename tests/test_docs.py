"""The doc site builds offline and renders in a real headless browser (Debian's chromium + chromedriver).

Besides "every page renders", each page is read the way a reader sees it: no raw TeX outside the formulas KaTeX
typeset, no Python warnings or tracebacks in the cell outputs, no markdown pipe table printed as text, no show_doc
docstring whose italics a `*` cut short, one H1 (the page's title), no code, output or table wider than the page, the
API sections in the module's order with classes shown as classes, and a content column wide enough for code and
display maths.
"""
import functools, http.server, json, os, re, shutil, subprocess, sys, tempfile, threading, urllib.request
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
            warnings = [l for l in (res.stdout + res.stderr).splitlines() if re.match(r"\s*warning:", l, re.I)]
            done.write_text(json.dumps({"returncode": res.returncode, "log": res.stdout[-3000:] + res.stderr[-3000:],
                                        "warnings": warnings, "stdout": res.stdout[-2000:]}))
    return json.loads(done.read_text())


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return build_site_once(tmp_path_factory)


@pytest.fixture(scope="module")
def site(build):
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
        pytest.fail("the doc-site test needs Debian's chromium and chromium-driver: `make test` installs them when it "
                    "runs as root (`bash scripts/setup.sh --browser` on its own), or apt-get install chromium chromium-driver")
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
MIN_CONTENT_WIDTH = 850   # px, in a 1280 px window: code and display maths fit without a scroll bar


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
    # the text column is wide (the table of contents shares the left column with the chapter list)
    width, main = browser.execute_script(
        "return [window.innerWidth, document.querySelector('main.content').getBoundingClientRect().width]")
    assert width == 1280, f"the browser window is {width} px wide, the test expects 1280"
    assert main >= MIN_CONTENT_WIDTH, f"{nb.stem}.html: the content column is {main:.0f} px wide at 1280 px (< {MIN_CONTENT_WIDTH})"


# ---------------------------------------------------------------------------------------------------------------------
# What a reader sees, page by page. One script collects every fault of a page (cached: each page loads once).

FAULTS_JS = r"""
const main = document.querySelector('main.content'), typeset = arguments[0];
const BLOCK = 'p, li, td, th, h1, h2, h3, h4, h5, h6, dt, dd, figcaption, blockquote, div';
// the text of `main` outside elements matching `skip`, gathered per block element (a paragraph, a list item, ...)
function texts(skip, block) {
  const out = new Map(), w = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
  for (let n = w.nextNode(); n; n = w.nextNode()) {
    const el = n.parentElement;
    if (!el || el.closest(skip)) continue;
    const b = el.closest(block) || main;
    out.set(b, (out.get(b) || '') + n.textContent);
  }
  return [...out.values()];
}
const clip = (s, n = 140) => s.replace(/\s+/g, ' ').trim().slice(0, n);
// 1. raw TeX: a `$` or a \command in the prose, outside code, outside what KaTeX typeset (and outside the formulas
//    themselves where KaTeX is not served: then they are TeX by design); KaTeX's own parse errors
const skip = 'pre, code, script, style, textarea, .katex, .katex-display, .katex-error' + (typeset ? '' : ', .math');
const TEX = /\$|\\[A-Za-z]+/;
const tex = texts(skip, BLOCK).filter(t => TEX.test(t)).map(t => {     // the text around the first raw TeX
  const s = t.replace(/\s+/g, ' ').trim(), i = s.search(TEX);
  return (i > 60 ? '…' : '') + s.slice(Math.max(0, i - 60), i + 80);
});
for (const e of main.querySelectorAll('.katex-error')) tex.push('KaTeX could not typeset: ' + clip(e.textContent));
// 2. Python warnings and tracebacks in the cell outputs
const warnings = [];
for (const o of main.querySelectorAll('.cell-output'))
  for (const line of o.innerText.split('\n'))
    if (/\b\w*Warning: |Traceback \(most recent call last\)/.test(line)) warnings.push(clip(line));
// 3. a markdown pipe table shown as text (its |---|---| line), anywhere but the input code
const pipes = [], SEP = /^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)+\|?\s*$/;
for (const t of texts('.cell-code, script, style, table', 'pre, ' + BLOCK))
  if (t.split('\n').some(l => SEP.test(l))) pipes.push(clip(t.trim().split('\n')[0]));
// 4. show_doc: heading, signature, then the docstring as one italic paragraph; a `*` in the docstring ends the
//    italics early (`k*k` -> k<em>k ...) or leaves a stray `*`
const docstrings = [];
for (const h of main.querySelectorAll('.cell-output-markdown :is(h2, h3, h4)[id]')) {
  const sig = h.nextElementSibling, p = sig && sig.nextElementSibling;
  if (!sig || !sig.querySelector('pre') || !p || p.tagName !== 'P') continue;
  const em = p.firstElementChild;
  const whole = em && em.tagName === 'EM' && p.firstChild === em && em.textContent.trim() === p.textContent.trim();
  if (!whole && (p.querySelector('em') || p.textContent.includes('*'))) docstrings.push(h.textContent.trim() + ': ' + clip(p.textContent, 100));
}
// 5. one H1, the page's title: a document shown on the page (a report) keeps its own headings below it
const h1s = [...document.querySelectorAll('h1')].map(h => clip(h.textContent, 80));
const headings = h1s.length > 1 ? h1s.slice(1) : [];
// 6. text wider than the page: a code block, an output or a table that scrolls sideways or runs past the column
const wide = [], right = main.getBoundingClientRect().right;
for (const el of main.querySelectorAll('pre, table, .cell-output > *'))
  if (el.scrollWidth > el.clientWidth + 2 || el.getBoundingClientRect().right > right + 2)
    wide.push(clip(el.innerText.split('\n').sort((a, b) => b.length - a.length)[0] || '', 100));
// 7. show_doc sections: classes written as functions (`def Error(*args, **kwargs)`)
const classes = [];
for (const code of main.querySelectorAll('.cell-output-markdown pre code'))
  if (/^def [A-Z]\w*\(\s*\*args, \*\*kwargs\s*\):/.test(code.textContent.trim())) classes.push(clip(code.textContent, 60));
return {tex, warnings, pipes, docstrings, headings, wide: [...new Set(wide)], classes};
"""
_faults = {}


@pytest.fixture(scope="module")
def faults(site, browser):
    "faults(page) -> what FAULTS_JS finds on docs/page.html."
    typeset = (ROOT / "docs" / "site_libs" / "katex" / "katex.min.js").exists()
    def get(stem):
        if stem not in _faults:
            browser.get(f"{site}/{stem}.html")
            _faults[stem] = browser.execute_script(FAULTS_JS, typeset)
        return _faults[stem]
    return get


def report(stem, what, found):
    return f"{stem}.html: {what}:\n  " + "\n  ".join(found)


FAULTS = {
    "tex": "raw TeX in the text (a $...$ that did not become a formula, or a \\command)",
    "warnings": "Python warnings or tracebacks in the saved outputs",
    "pipes": "markdown tables printed as text (display(Markdown(...)) shows them as tables)",
    "docstrings": "show_doc docstrings whose italics a `*` broke (write k*k as `k*k` or k·k)",
    "headings": "H1 headings besides the page's title (a shown document's own title: move its headings down)",
    "wide": "code, outputs or tables wider than the page (print a table or a figure, or wrap the lines)",
    "classes": "classes shown as functions `def X(*args, **kwargs)` (scripts/build_docs.py fix_show_docs)",
}


@pytest.mark.parametrize("kind", FAULTS)
@pytest.mark.parametrize("nb", PAGES, ids=[p.stem for p in PAGES])
def test_page_has_no_rendering_faults(faults, nb, kind):
    found = faults(nb.stem)[kind]
    assert not found, report(nb.stem, FAULTS[kind], found)


SAMPLE = r"""<!doctype html><html><body><main class="content">
<p>Good: <span class="math inline"><span class="katex"><span class="katex-mathml"><math><annotation>\tau + \frac{1}{2}</annotation></math></span>τ</span></span>,
 code <code>$HOME</code> and <code>\mathrm</code>, a price-free sentence.</p>
<div class="cell"><div class="sourceCode"><pre class="sourceCode python cell-code"><code>s = r"$\tau$"; print("| a |\n|---|---|")</code></pre></div>
<div class="cell-output cell-output-stderr"><pre><code>100%|██████████| 10/10 [00:01&lt;00:00]</code></pre></div>
<div class="cell-output cell-output-display cell-output-markdown"><table><tr><th>a</th></tr><tr><td>1</td></tr></table></div></div>
<div class="cell-output cell-output-display cell-output-markdown"><hr><h3 id="good_fn">good_fn</h3>
<div class="sourceCode"><pre><code>def good_fn(k)</code></pre></div><p><em>A k×k grid, <code>k*k</code> pixels.</em></p></div>
<ul><li>+ \tau H(R)$ with a temperature</li></ul>
<p>the Cayley table $T[i, j] = $ index of</p>
<span class="katex-error">\frac{</span>
<div class="cell-output cell-output-stderr"><pre><code>/tmp/x.py:40: UserWarning: Sparse invariant checks are implicitly disabled</code></pre></div>
<div class="cell-output cell-output-stdout"><pre><code>Traceback (most recent call last):
  File "x.py", line 1</code></pre></div>
<div class="cell-output cell-output-stdout"><pre><code>| toy | seconds |
|---|---|
| shifts | 3 |</code></pre></div>
<h1>symmetries_reproduce: results (budget `tiny`)</h1>
<div class="cell-output cell-output-stdout"><pre><code>seed 0: LONG_LINE</code></pre></div>
<div class="cell-output cell-output-display cell-output-markdown"><hr><h3 id="Oops">Oops</h3>
<div class="sourceCode"><pre><code>def Oops(
    *args, **kwargs
):</code></pre></div><p><em>An exception.</em></p></div>
<div class="cell-output cell-output-display cell-output-markdown"><hr><h3 id="rotation_group">rotation_group</h3>
<div class="sourceCode"><pre><code>def rotation_group(k)</code></pre></div><p><em>C4 on the k</em>k pixels of a grid.*</p></div>
</main></body></html>"""


def test_fault_checks_on_a_sample_page(browser, tmp_path):
    # the checks flag each planted fault once, and nothing of the legitimate content around them
    (tmp_path / "sample.html").write_text(SAMPLE.replace("LONG_LINE", "x" * 400))   # an output line wider than the page
    browser.get((tmp_path / "sample.html").as_uri())
    f = browser.execute_script(FAULTS_JS, True)
    assert len(f["tex"]) == 3, f["tex"]
    assert f["tex"][0].startswith("+ \\tau H(R)$") and "$T[i, j] = $" in f["tex"][1] and "\\frac{" in f["tex"][2], f["tex"]
    assert len(f["warnings"]) == 2 and "UserWarning" in f["warnings"][0] and "Traceback" in f["warnings"][1], f["warnings"]
    assert f["pipes"] == ["| toy | seconds |"], f["pipes"]
    assert len(f["docstrings"]) == 1 and f["docstrings"][0].startswith("rotation_group: C4 on the kk pixels"), f["docstrings"]
    assert f["headings"] == [], f["headings"]       # the sample's one H1 is its title...
    browser.execute_script("document.body.insertAdjacentHTML('afterbegin', '<h1>Title</h1>')")
    f = browser.execute_script(FAULTS_JS, True)       # ...and with a title above it, the report's H1 is a stray one
    assert f["headings"] == ["symmetries_reproduce: results (budget `tiny`)"], f["headings"]
    assert len(f["wide"]) == 1 and f["wide"][0].startswith("seed 0: xxx"), f["wide"]
    assert len(f["classes"]) == 1 and f["classes"][0].startswith("def Oops("), f["classes"]


def test_build_has_no_warnings(build):
    assert build["returncode"] == 0, build["log"]
    assert not build["warnings"], "the doc build warns:\n" + "\n".join(build["warnings"])
    assert "--serve" in build["stdout"], "the build should say how to serve the site (search needs a server)"


def test_search_finds_pages(site, browser):
    from selenium.webdriver.support.ui import WebDriverWait
    browser.get(f"{site}/index.html")
    box = browser.find_element("css selector", "#quarto-search input")
    box.send_keys("sinkhorn")
    hits = WebDriverWait(browser, 10).until(lambda b: b.find_elements("css selector", ".search-result"))
    assert any("04_sinkhorn.html" in h.get_attribute("href") for h in hits), [h.get_attribute("href") for h in hits]


def test_serve_command(site):
    # `python scripts/build_docs.py --serve` (make serve) serves docs/, search index included
    proc = subprocess.Popen([sys.executable, "scripts/build_docs.py", "--serve", "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        m = re.search(r"http://[\w.]+:\d+/", line)
        assert m, f"--serve printed {line!r}, no URL"
        for path in ("index.html", "search.json", "04_sinkhorn.html"):
            with urllib.request.urlopen(m.group(0) + path, timeout=10) as r: assert r.status == 200, path
        with urllib.request.urlopen(m.group(0) + "search.json", timeout=10) as r: assert json.loads(r.read())
    finally:
        proc.terminate(); proc.wait(timeout=10)


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
