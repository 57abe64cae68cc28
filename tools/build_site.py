"""Build the course website into ``build/site/`` (``make site``), offline and self-contained.

Steps:

1. **Vendor MathJax.** The npm package ``mathjax`` (pinned version, checked against its SHA-256)
   is fetched once with ``npm pack`` into ``build/cache/`` and unpacked into the site's
   ``_static/mathjax/``. After that first fetch the build needs no network; the pages never load
   anything from a CDN.
2. **Assemble the sources** in ``build/site-src/``: the README becomes the home page (with the
   site's table of contents appended), then the committed, executed notebooks, the glossary,
   the conventions, ``data/README.md`` and the pages in ``docs/`` (API reference, instructor
   guide). Files are rewritten only when their content changed, so rebuilds are incremental.
   The Colab badge's image is pointed at a copy served by the site. A Chinese edition in
   ``notebooks/zh/`` (home page ``README.zh-CN.md``) gets its own section and the language
   switch, which joins each page to its counterpart (index to README.zh-CN, a notebook to the
   notebook of the same name).
3. **Run Sphinx** with ``docs/conf.py``, warnings as errors (``-W --keep-going``), notebooks
   rendered from their stored outputs (``nb_execution_mode = "off"``).

Usage::

    python tools/build_site.py                  # build/site/index.html
    python tools/build_site.py --build other/   # another build folder
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import colab  # noqa: E402  (tools/ is a folder of scripts, not a package)

MATHJAX_VERSION = "3.2.2"
# sha256 of the npm tarball mathjax-3.2.2.tgz, so a changed or damaged download is refused.
MATHJAX_SHA256 = "1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09"
BADGE_FILE = "_static_src/colab-badge.svg"

EDITIONS = {"en": ("English", "notebooks"), "zh": ("中文", "notebooks/zh")}
#: Each edition's home page: the README (index.md on the site) and its Chinese translation.
HOMES = {"en": "README.md", "zh": "README.zh-CN.md"}


class SiteBuildError(RuntimeError):
    """A step of the site build failed; the message says which and how to fix it."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def vendor_mathjax(cache: Path) -> Path:
    """Unpack MathJax's browser build into ``cache/mathjax-static/mathjax``; returns the parent.

    ``conf.py`` adds the returned folder to ``html_static_path``, so the site serves
    ``_static/mathjax/tex-mml-chtml.js`` and the fonts and extensions it loads.
    """
    static = cache / "mathjax-static"
    marker = static / "mathjax" / f".version-{MATHJAX_VERSION}"
    if marker.is_file():
        return static
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"mathjax-{MATHJAX_VERSION}.tgz"
    if not tarball.is_file():
        npm = shutil.which("npm")
        if npm is None:
            raise SiteBuildError(
                "npm is not installed, and MathJax is not cached in "
                f"{tarball}: install Node.js/npm (Debian: apt-get install -y npm) or copy "
                f"mathjax-{MATHJAX_VERSION}.tgz (from `npm pack mathjax@{MATHJAX_VERSION}`) there"
            )
        print(f"site: fetching the npm package mathjax@{MATHJAX_VERSION} into {cache}")
        subprocess.run([npm, "pack", f"mathjax@{MATHJAX_VERSION}", "--silent",
                        "--pack-destination", str(cache)], check=True, stdout=subprocess.DEVNULL)
    digest = _sha256(tarball)
    if digest != MATHJAX_SHA256:
        raise SiteBuildError(
            f"{tarball} has sha256 {digest}, expected {MATHJAX_SHA256} for mathjax "
            f"{MATHJAX_VERSION}: delete the file and build again to fetch it afresh"
        )
    target = static / "mathjax"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    prefix = "package/es5/"
    with tarfile.open(tarball) as tar:
        members = []
        for member in tar.getmembers():
            if member.name.startswith(prefix) and member.name != prefix:
                member.name = member.name[len(prefix):]
                members.append(member)
        tar.extractall(target, members=members, filter="data")
    marker.write_text(MATHJAX_VERSION + "\n", encoding="utf-8")
    return static


def _write_if_changed(path: Path, data: bytes) -> None:
    # Sphinx rebuilds a page when its source's mtime changes: leave unchanged files alone.
    if path.is_file() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


HTML_ANCHOR = re.compile(r'<a id="([A-Za-z0-9_-]+)"></a>')


def _site_markdown(data: bytes) -> bytes:
    """A Markdown page as the site shows it: ``<a id="x"></a>`` anchors (the glossary's rows,
    which GitHub and Jupyter honour) become MyST inline targets ``[]{#x}``, so that the
    notebooks' links ``GLOSSARY.md#x`` resolve under Sphinx's warnings-as-errors."""
    return HTML_ANCHOR.sub(r"[]{#\1}", data.decode("utf-8")).encode("utf-8")


def _site_notebook(path: Path, src: Path, depth: int) -> bytes:
    """The notebook as the site shows it: the Colab badge image comes from the site itself, and
    the Colab-only install cell, which does nothing off Colab, is not shown."""
    nb = nbformat.read(path, as_version=4)
    local_badge = "../" * depth + BADGE_FILE
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if colab.INSTALL_TAG in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
        if cell.cell_type == "markdown" and colab.BADGE_IMAGE in cell.source:
            cell.source = cell.source.replace(colab.BADGE_IMAGE, local_badge)
    return (nbformat.writes(nb) + "\n").encode("utf-8")


def _editions(root: Path) -> dict[str, list[Path]]:
    found = {}
    for code, (_, folder) in EDITIONS.items():
        notebooks = sorted((root / folder).glob("*.ipynb"))
        if notebooks or code == "en" or (root / HOMES[code]).is_file():
            found[code] = notebooks
    return found


def _home(code: str, root: Path) -> str | None:
    """The page name of an edition's home page on the site, if the edition has one."""
    if code == "en":
        return "index"
    return Path(HOMES[code]).stem if (root / HOMES[code]).is_file() else None


def _site_home(text: str) -> bytes:
    """A README as the site shows it: the Colab badge image served by the site, and links to
    README.md pointed at the home page (the README is index.md there)."""
    text = text.replace(colab.BADGE_IMAGE, BADGE_FILE)
    return re.sub(r"\]\(README\.md(?=[#)])", "](index.md", text).encode("utf-8")


def _page(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def _index_source(readme: str, editions: dict[str, list[Path]], root: Path) -> str:
    """The README plus the site's (hidden) tables of contents: the sidebar is built from them."""
    # The README's Colab badge image, like the notebooks', is served by the site itself.
    parts = [readme.replace(colab.BADGE_IMAGE, BADGE_FILE).rstrip(), ""]

    def toctree(caption: str, pages: list[str]) -> None:
        parts.extend(["", "```{toctree}", ":hidden:", f":caption: {caption}", "", *pages, "```"])

    toctree("Notebooks", [_page(p, root) for p in editions["en"]])
    reference = [p for p in ("notebooks/GLOSSARY", "notebooks/CONVENTIONS")
                 if (root / f"{p}.md").is_file()]
    toctree("Reference", [*reference, "docs/api", "docs/instructor", "data/README"])
    if "zh" in editions:
        home = _home("zh", root)
        toctree("中文版 (Chinese edition)",
                [*([home] if home else []), *(_page(p, root) for p in editions["zh"])])
    return "\n".join(parts) + "\n"


def _languages(editions: dict[str, list[Path]], root: Path) -> dict:
    """Which editions exist and, per page, its counterpart in the other edition (by file name)."""
    info: dict = {"editions": [], "pages": {}}
    for code, notebooks in editions.items():
        start = _home(code, root) or _page(notebooks[0], root)
        info["editions"].append({"code": code, "label": EDITIONS[code][0], "start": start})
    homes = {code: _home(code, root) for code in editions}
    for code, home in homes.items():
        if home:
            info["pages"][home] = {"_self": code} | {
                other: page for other, page in homes.items() if other != code and page}
    by_name = {code: {p.name: _page(p, root) for p in nbs} for code, nbs in editions.items()}
    for code, names in by_name.items():
        for name, page in names.items():
            counterparts = {"_self": code}
            for other, other_names in by_name.items():
                if other != code and name in other_names:
                    counterparts[other] = other_names[name]
            info["pages"][page] = counterparts
    return info


def assemble(root: Path, src: Path) -> dict:
    """Write the site's source tree into ``src``; returns the language table (also written)."""
    editions = _editions(root)
    wanted: dict[Path, bytes] = {}
    readme = (root / "README.md").read_text(encoding="utf-8")
    wanted[src / "index.md"] = _index_source(readme, editions, root).encode("utf-8")
    for notebooks in editions.values():
        for path in notebooks:
            rel = path.relative_to(root)
            wanted[src / rel] = _site_notebook(path, src, depth=len(rel.parts) - 1)
    for folder in ("notebooks", "notebooks/zh"):
        for md in sorted((root / folder).glob("*.md")):
            wanted[src / md.relative_to(root)] = _site_markdown(md.read_bytes())
    wanted[src / "data/README.md"] = (root / "data/README.md").read_bytes()
    if "zh" in editions and (root / HOMES["zh"]).is_file():
        wanted[src / HOMES["zh"]] = _site_home((root / HOMES["zh"]).read_text(encoding="utf-8"))
    docs = root / "docs"
    for md in sorted(docs.glob("*.md")):
        wanted[src / "docs" / md.name] = md.read_bytes()
    wanted[src / BADGE_FILE] = (docs / "_static/colab-badge.svg").read_bytes()
    languages = _languages(editions, root)
    wanted[src / "_languages.json"] = json.dumps(languages, ensure_ascii=False,
                                                 indent=1).encode("utf-8")

    # Remove what is no longer wanted (a deleted notebook must not linger on the site), except
    # the API pages autosummary generates into src/docs/api/ on every build.
    generated = src / "docs" / "api"
    for old in sorted(src.rglob("*"), reverse=True) if src.is_dir() else []:
        if old.is_file() and old not in wanted and not old.is_relative_to(generated):
            old.unlink()
    for path, data in wanted.items():
        _write_if_changed(path, data)
    return languages


def build(root: Path, build_dir: Path, quiet: bool = False) -> Path:
    """Build the site; returns the folder holding ``index.html``. Raises on any Sphinx warning."""
    cache = build_dir / "cache"
    src = build_dir / "site-src"
    out = build_dir / "site"
    static = vendor_mathjax(cache)
    assemble(root, src)
    env = dict(os.environ, FEDLEARN_MATHJAX_STATIC=str(static.resolve()),
               FEDLEARN_SITE_LANGUAGES=str((src / "_languages.json").resolve()),
               PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going",
           "-c", str(root / "docs"), "-d", str(build_dir / "site-doctrees"), str(src), str(out)]
    if quiet:
        cmd.insert(3, "-q")
    result = subprocess.run(cmd, env=env, cwd=root)
    if result.returncode != 0:
        raise SiteBuildError(f"sphinx-build failed (exit {result.returncode}); every warning is "
                             "an error: fix the ones printed above")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, default=ROOT / "build",
                        help="build folder (default: build/); the site goes into BUILD/site")
    parser.add_argument("-q", "--quiet", action="store_true", help="only print warnings")
    args = parser.parse_args(argv)
    try:
        out = build(ROOT, args.build, quiet=args.quiet)
    except SiteBuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"site: {out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
