"""Sphinx configuration of the course website.

The site is built by ``tools/build_site.py`` (``make site``), which assembles a source tree under
``build/site-src/`` (the README as the home page, the committed notebooks, glossary, conventions,
these docs pages) and then runs ``sphinx-build -c docs``. Everything the pages load, MathJax
included, is copied into the site itself: a course site must work on a hospital network or a
laptop without internet, and the browser test (``tests/test_site.py``) fails on any request that
leaves localhost.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tomllib
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# autodoc imports the package of this checkout, not whatever `fedlearn` the venv points at.
sys.path.insert(0, str(ROOT))

with open(ROOT / "pyproject.toml", "rb") as fh:
    _pyproject = tomllib.load(fh)["project"]

project = "fedlearn: federated learning for medicine"
author = "the fedlearn course authors"
copyright = "the fedlearn course authors; data licences in the README"
release = _pyproject["version"]
# The Colab badges and the "launch" buttons are generated from this one URL (see tools/colab.py).
repository_url = _pyproject["urls"]["Repository"]

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
templates_path = [str(DOCS / "_templates")]

# --- notebooks: render the committed outputs, never execute -------------------------------------
nb_execution_mode = "off"
# The default loads require.js and the widget manager from a CDN on pages with widget state;
# the notebooks draw no widgets the site needs (progress bars are off), so load nothing.
nb_ipywidgets_js: dict[str, dict[str, str]] = {}
# attrs_inline: the glossary's row anchors reach the site as inline targets []{#term}
# (tools/build_site.py rewrites GLOSSARY.md's <a id="term"></a>), so GLOSSARY.md#term resolves.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist", "attrs_inline"]
myst_heading_anchors = 3
# Markdown cells are written for Jupyter/GitHub, where an H1 per notebook is the title and the
# later sections start at H2; do not turn that into warnings.
# "ref.python": a short name in a docstring type (e.g. `dp`) that matches several modules
# (fedlearn.aggregators.dp, fedlearn.survival.dp) links to none; that is not worth failing on.
suppress_warnings = ["myst.header", "ref.python"]

# --- API reference: generated from the package on every build --------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
    # fedlearn/__init__.py re-exports the core API; each object is documented once, in the
    # module that defines it.
    "ignore-module-all": True,
}
autodoc_typehints = "description"
# Type aliases such as StateDict = dict[str, Tensor] would otherwise send viewcode looking for
# the source of `builtins`, a page that cannot exist.
viewcode_follow_imported_members = False
autodoc_member_order = "bysource"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# --- MathJax from the site itself --------------------------------------------------------------
# tools/build_site.py unpacks the npm package `mathjax` into this folder; a relative
# mathjax_path is resolved against the site's _static/ folder.
MATHJAX_STATIC = Path(os.environ.get("FEDLEARN_MATHJAX_STATIC", ROOT / "build" / "cache" /
                                     "mathjax-static"))
if not (MATHJAX_STATIC / "mathjax" / "tex-mml-chtml.js").is_file():
    raise RuntimeError(
        f"MathJax is not vendored in {MATHJAX_STATIC}: build the site with `make site` "
        "(tools/build_site.py fetches the npm package mathjax once into build/cache/)"
    )
mathjax_path = "mathjax/tex-mml-chtml.js"

# --- theme -------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "fedlearn course"
html_static_path = [str(DOCS / "_static"), str(MATHJAX_STATIC)]
html_css_files = ["course.css"]
html_theme_options = {
    "repository_url": repository_url,
    "repository_branch": "main",
    "path_to_docs": "",
    "use_repository_button": True,
    "launch_buttons": {"colab_url": "https://colab.research.google.com"},
    "navigation_with_keys": False,
    # No icon fonts or analytics from elsewhere; the theme's own assets are bundled.
    "show_toc_level": 2,
}
# Without an explicit mode the theme logs "Got invalid theme mode" on a first visit.
html_context = {"default_mode": "light"}
# A favicon of our own: without one the browser asks for /favicon.ico and gets a 404.
html_favicon = str(DOCS / "_static" / "favicon.svg")
html_sidebars = {"**": ["navbar-logo.html", "language-switch.html", "search-field.html",
                        "sbt-sidebar-nav.html"]}
html_last_updated_fmt = None
# The page's download button offers the notebook itself (.ipynb), as committed.
html_copy_source = True
html_sourcelink_suffix = ""

# --- languages ---------------------------------------------------------------------------------
# tools/build_site.py writes which editions exist (English always; Chinese once notebooks/zh/
# has notebooks) and, for every page, its counterpart in the other edition.
_LANG_FILE = Path(os.environ.get("FEDLEARN_SITE_LANGUAGES", ROOT / "build" / "site-src" /
                                 "_languages.json"))
_languages = (json.loads(_LANG_FILE.read_text(encoding="utf-8")) if _LANG_FILE.is_file()
              else {"editions": [], "pages": {}})


def _language_context(app, pagename, templatename, context, doctree) -> None:
    """Give the language-switch template the editions and this page's counterparts."""
    context["course_editions"] = _languages["editions"]
    context["course_counterparts"] = _languages["pages"].get(pagename, {})


# The package's docstrings are plain text read in a terminal as much as on the site, and write
# absolute values as |a - b|; reStructuredText would read that as an (undefined) substitution.
# Escape such bars outside ``literals``; table rows and line blocks (lines starting with | or +)
# are left alone.
_LITERAL = re.compile(r"(``.*?``)")
_BARS = re.compile(r"(?<![\\|])\|(?=[^\s|])([^|\n]*?[^\s|\\])\|(?![_\w|])")


def _escape_bars(line: str) -> str:
    if line.lstrip().startswith(("|", "+")):
        return line
    parts = _LITERAL.split(line)
    return "".join(p if p.startswith("``") else _BARS.sub(r"\\|\1\\|", p) for p in parts)


def _plain_text_docstring(app, what, name, obj, options, lines: list[str]) -> None:
    lines[:] = [_escape_bars(line) for line in lines]


def setup(app) -> None:
    app.connect("html-page-context", _language_context)
    app.connect("autodoc-process-docstring", _plain_text_docstring)
