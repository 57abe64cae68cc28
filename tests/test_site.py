"""Browser test of the course website: every page opened in headless Chromium over local HTTP.

The site (``make site``, ``tools/build_site.py``) is served from ``build/site/`` on 127.0.0.1 and
every HTML page is opened in the system (Debian) Chromium through Playwright. A page fails on

* a request to any host other than localhost (an asset that would break offline), or a local
  request that fails (404: a missing script, stylesheet or font);
* a JavaScript error or console error;
* an image that does not load;
* maths left as TeX source in the visible text (``$...$``, ``\\frac``), or a maths element that
  MathJax did not typeset;
* an empty page;
* a link to a page or an anchor that does not exist.

It also checks that search finds the course's pages and saves screenshots of the home page, a
notebook page and the API reference in ``build/site-screenshots/``.

Without Chromium the test is skipped with the command that enables it; with ``CI=true`` a missing
browser is a failure. Playwright only drives the system browser here: it never downloads its own.
"""

from __future__ import annotations

import http.server
import os
import re
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "build" / "site-screenshots"
CHROMIUM = os.environ.get("FEDLEARN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 # Belt and braces: a request to another host is recorded by the test, and the
                 # browser cannot resolve it anyway, so nothing ever leaves the machine.
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
# Raw TeX that MathJax should have turned into maths.
RAW_TEX = re.compile(r"(?<![\w$])\$[^\s$][^$\n]{0,200}?\$(?![\w$])|\\(?:frac|sum|mathbb|mathrm|"
                     r"left|right|begin\{|sqrt|lambda|theta|alpha|epsilon|varepsilon)\b")
# Text that is code or already-typeset maths, where dollars and backslashes are legitimate.
NOT_PROSE = "pre, code, script, style, mjx-container, .highlight, .MathJax, textarea, kbd"


def _browser_or_skip() -> str:
    """Path of the Chromium binary, or skip (fail under CI) with how to install it."""
    how = ("install the system browser with `apt-get update && apt-get install -y chromium` "
           "(Debian/Ubuntu; FEDLEARN_CHROMIUM=/path/to/chromium for another location) and "
           "`pip install -e .[dev]` for Playwright")
    problem = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "Playwright is not installed"
    if problem is None and not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        problem = f"Chromium not found at {CHROMIUM}"
    if problem is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{problem}; CI must run the site's browser test: {how}")
        pytest.skip(f"{problem}: the site's browser test is skipped; to run it, {how}")
    return CHROMIUM


@pytest.fixture(scope="module")
def site_dir() -> Path:
    """The built site: ``FEDLEARN_SITE_DIR`` when ``make`` has just built it, else build now."""
    given = os.environ.get("FEDLEARN_SITE_DIR")
    if given and (Path(given) / "index.html").is_file():
        return Path(given)
    sys.path.insert(0, str(ROOT / "tools"))
    import build_site

    return build_site.build(ROOT, ROOT / "build", quiet=True)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the stdlib's name)
        pass


@pytest.fixture(scope="module")
def server(site_dir: Path) -> Iterator[str]:
    handler = lambda *a, **kw: _QuietHandler(*a, directory=str(site_dir), **kw)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser(site_dir: Path):
    executable = _browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS,
                                      headless=True)
        yield chromium
        chromium.close()


def _pages(site_dir: Path) -> list[str]:
    """Every HTML page of the site, relative to its root (theme internals excluded)."""
    return sorted(p.relative_to(site_dir).as_posix() for p in site_dir.rglob("*.html")
                  if p.relative_to(site_dir).parts[0] != "_static")


class PageVisit:
    """What one page did in the browser: outside requests, failures, errors, links, anchors."""

    def __init__(self) -> None:
        self.outside: list[str] = []
        self.failed: list[str] = []
        self.errors: list[str] = []


_PAGE_REPORT_JS = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const broken = [];
  for (const img of Array.from(document.images)) {
    img.loading = "eager";
    try { await img.decode(); } catch (e) { broken.push(img.getAttribute("src")); }
    if (img.naturalWidth === 0 && !broken.includes(img.getAttribute("src"))) {
      broken.push(img.getAttribute("src"));
    }
  }
  const main = document.querySelector("main, article, [role=main]") || document.body;
  const prose = main.cloneNode(true);
  prose.querySelectorAll(arguments_not_prose).forEach((e) => e.remove());
  const untypeset = Array.from(document.querySelectorAll(".math"))
    .filter((e) => !e.querySelector("mjx-container") && e.tagName !== "MJX-CONTAINER")
    .map((e) => e.textContent.slice(0, 80));
  return {
    text: main.innerText.trim(),
    prose: prose.textContent,
    ids: Array.from(document.querySelectorAll("[id]")).map((e) => e.id)
      .concat(Array.from(document.querySelectorAll("a[name]")).map((e) => e.name)),
    links: Array.from(document.querySelectorAll("a[href]")).map((a) => a.href),
    broken: broken,
    untypeset: untypeset,
    mathjax: !!(window.MathJax && MathJax.version),
  };
}"""


class Visitor:
    """One browser tab that opens pages one after another and records what each one did."""

    def __init__(self, context) -> None:
        self.page = context.new_page()
        self.visit = PageVisit()
        self.page.on("request", self._on_request)
        self.page.on("console", lambda m: self.visit.errors.append(f"console {m.type}: {m.text}")
                     if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.visit.errors.append(f"uncaught: {e}"))
        self.page.on("response", lambda r: self.visit.failed.append(f"{r.status} {r.url}")
                     if r.status >= 400 else None)
        self.page.on("requestfailed", self._on_failed)

    def _on_request(self, request) -> None:
        url = request.url
        if url.startswith(("http:", "https:", "ws:", "wss:")) and (
                urlparse(url).hostname not in LOCAL_HOSTS):
            self.visit.outside.append(url)

    def _on_failed(self, request) -> None:
        # Outside requests fail by design (the host resolver maps them nowhere) and are
        # reported as outside requests; a failed local request is a missing asset. ERR_ABORTED
        # is a request the browser itself cancelled when the test moved on to the next page
        # (a late favicon); a missing file shows up as its 404 response instead.
        if (urlparse(request.url).hostname in LOCAL_HOSTS
                and "ERR_ABORTED" not in (request.failure or "")):
            self.visit.failed.append(f"failed {request.url} ({request.failure})")

    def open(self, url: str) -> tuple[PageVisit, dict]:
        self.visit = PageVisit()
        self.page.goto(url, wait_until="load")
        report = self.page.evaluate(_PAGE_REPORT_JS.replace("arguments_not_prose",
                                                            repr(NOT_PROSE)))
        return self.visit, report


@pytest.fixture(scope="module")
def crawl(browser, server: str, site_dir: Path) -> dict[str, tuple[PageVisit, dict]]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    visitor = Visitor(context)
    results = {rel: visitor.open(urljoin(server, rel)) for rel in _pages(site_dir)}
    context.close()
    return results


def test_site_has_the_course_pages(site_dir: Path) -> None:
    pages = set(_pages(site_dir))
    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks, "no notebooks in notebooks/"
    for stem in notebooks:
        assert f"notebooks/{stem}.html" in pages, f"notebook {stem} is not on the site"
    for path in sorted((ROOT / "notebooks" / "zh").glob("*.ipynb")):
        page = f"notebooks/zh/{path.stem}.html"
        assert page in pages, f"the Chinese edition of {path.stem} is not on the site"
    for page in ("index.html", "notebooks/GLOSSARY.html", "notebooks/CONVENTIONS.html",
                 "docs/api.html", "docs/api/fedlearn.html", "docs/instructor.html",
                 "search.html"):
        assert page in pages, f"{page} missing from the site"
    # The API reference is generated from the package: every module has a page.
    import pkgutil

    import fedlearn
    # Public modules only: autosummary leaves out private ones (_files, __main__) on purpose.
    modules = {m.name for m in pkgutil.walk_packages(fedlearn.__path__, "fedlearn.")
               if not any(part.startswith("_") for part in m.name.split("."))}
    missing = sorted(m for m in modules if f"docs/api/{m}.html" not in pages)
    assert not missing, f"modules without an API page: {missing}"


def test_no_page_leaves_localhost_or_fails_to_load(crawl) -> None:
    outside = {p: v.outside for p, (v, _) in crawl.items() if v.outside}
    failed = {p: v.failed for p, (v, _) in crawl.items() if v.failed}
    assert not outside, f"pages that request other hosts (would break offline): {outside}"
    assert not failed, f"local requests that failed: {failed}"


def test_no_javascript_errors(crawl) -> None:
    errors = {p: v.errors for p, (v, _) in crawl.items() if v.errors}
    assert not errors, f"JavaScript errors: {errors}"


def test_every_image_loads(crawl) -> None:
    broken = {p: r["broken"] for p, (_, r) in crawl.items() if r["broken"]}
    assert not broken, f"images that did not load: {broken}"
    home = crawl["notebooks/01_what_is_federated_learning.html"][1]
    assert home["text"], "notebook 01 rendered no text"


def test_maths_is_typeset(crawl) -> None:
    raw = {p: RAW_TEX.findall(r["prose"])[:5] for p, (_, r) in crawl.items()
           if RAW_TEX.search(r["prose"])}
    untypeset = {p: r["untypeset"][:5] for p, (_, r) in crawl.items() if r["untypeset"]}
    assert not raw, f"TeX left as text: {raw}"
    assert not untypeset, f"maths elements MathJax did not typeset: {untypeset}"
    # MathJax is really there (served by the site) on the notebook pages with maths.
    assert crawl["notebooks/01_what_is_federated_learning.html"][1]["mathjax"]


def test_no_empty_page(crawl) -> None:
    empty = [p for p, (_, r) in crawl.items() if len(r["text"]) < 40]
    assert not empty, f"pages with (almost) no text: {empty}"


def test_internal_links_and_anchors_resolve(crawl, server: str, site_dir: Path) -> None:
    ids = {page: set(r["ids"]) for page, (_, r) in crawl.items()}
    broken: list[str] = []
    for page, (_, report) in crawl.items():
        for href in report["links"]:
            target, fragment = urldefrag(href)
            if not target.startswith(server):
                continue  # an outside link: a link, not a request; fine offline
            rel = unquote(urlparse(target).path.lstrip("/")) or "index.html"
            if rel.endswith("/"):
                rel += "index.html"
            if not (site_dir / rel).is_file():
                broken.append(f"{page} -> {rel} (no such file)")
            elif fragment and rel.endswith(".html") and unquote(fragment) not in ids.get(rel, ()):
                broken.append(f"{page} -> {rel}#{fragment} (no such anchor)")
    assert not broken, "broken internal links:\n" + "\n".join(sorted(set(broken)))


def test_language_switch_joins_each_notebook_to_its_other_edition(crawl, server: str) -> None:
    """Every Chinese page (notebooks/zh/) links to its English page and back; without a Chinese
    edition no page offers one. Its glossary links and anchors are checked with every other
    link above (they point at the shared ../GLOSSARY.html#term)."""
    zh_pages = sorted(p for p in crawl if p.startswith("notebooks/zh/"))
    expected = sorted(f"notebooks/zh/{p.stem}.html"
                      for p in (ROOT / "notebooks" / "zh").glob("*.ipynb"))
    assert zh_pages == expected
    missing = []
    for page in zh_pages:
        english = page.replace("notebooks/zh/", "notebooks/")
        if urljoin(server, english) not in crawl[page][1]["links"]:
            missing.append(f"{page} -> {english}")
        if urljoin(server, page) not in crawl[english][1]["links"]:
            missing.append(f"{english} -> {page}")
    assert not missing, f"language switch links missing: {missing}"
    if not zh_pages:
        offering = [p for p, (_, r) in crawl.items()
                    if any("/notebooks/zh/" in href for href in r["links"])]
        assert not offering, f"pages linking to a Chinese edition that does not exist: {offering}"


def test_search_finds_course_pages(browser, server: str) -> None:
    page = browser.new_page()
    page.goto(urljoin(server, "search.html?q=FedAvg"), wait_until="load")
    page.wait_for_selector("#search-results ul.search li", timeout=20_000)
    hits = page.eval_on_selector_all("#search-results ul.search li a",
                                     "els => els.map(e => e.getAttribute('href'))")
    page.close()
    assert any("notebooks/03_fedavg_derived" in h for h in hits), hits


def test_screenshots_of_home_notebook_and_api(browser, server: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shots = {
        "home.png": "index.html",
        "notebook.png": "notebooks/01_what_is_federated_learning.html#exercises",
        "api.png": "docs/api/fedlearn.client.html",
        "api-index.png": "docs/api.html",
    }
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    for name, rel in shots.items():
        page.goto(urljoin(server, rel), wait_until="load")
        page.evaluate("async () => { if (window.MathJax) await MathJax.startup.promise; }")
        page.screenshot(path=str(SCREENSHOTS / name))
        assert (SCREENSHOTS / name).stat().st_size > 10_000, f"{name} looks blank"
    page.close()
