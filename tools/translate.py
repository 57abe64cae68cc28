"""The Chinese edition of the course, generated from the English notebooks and a catalog.

The catalogs are ``tools/zh_catalog.py``, the rules a translation must pass
``tools/zh_check.py``; this file builds the edition, checks it as a whole and is the command
line.

``build`` writes ``notebooks/zh/<name>.ipynb``: the English notebook's cells, ids, order and
metadata (plus ``fedlearn_edition``, which says it is the zh-CN edition and what it is built
from), each Markdown source replaced by its translation, code cells and outputs copied as they
are except one line, ``fl.exercises.set_language("zh")``, added where the imports of the first
code cell that imports fedlearn end. Relative links are rewritten for the zh folder
(``GLOSSARY.md#x`` -> ``../GLOSSARY.md#x``; a course notebook links to its Chinese edition when
that is built, else to ``../NN_x.ipynb``) and the Colab badge points at the Chinese notebook.
The same inputs give the same bytes. The Chinese notebooks are never executed.

Run without notebooks, ``check`` checks the whole edition, as ``make test`` does (``make
zh-check``): every English notebook is either listed in ``notebooks/zh/PENDING`` (one line per
notebook: ``<file name> <reason>``; ``#`` starts a comment line), or its catalog passes the
checks above and the committed ``notebooks/zh/<name>.ipynb`` is exactly what ``build`` writes
now (else it names the cell whose code, outputs or text differ). A PENDING line whose
notebook's catalog is complete fails too, so the list cannot go stale.

Usage::

    python tools/translate.py update notebooks/01_*.ipynb   # add catalog entries for new cells
    python tools/translate.py check notebooks/01_*.ipynb    # the checks of those catalogs
    python tools/translate.py build                         # make zh: the whole edition
    python tools/translate.py check                         # make zh-check: the whole edition
"""

from __future__ import annotations

import argparse
import copy
import posixpath
import re
import sys
from pathlib import Path
from typing import Any

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import colab  # noqa: E402  (tools/ is a folder of scripts, not a package)
from zh_catalog import (  # noqa: E402, F401  (re-exported: translate is the tools' one entry)
    CATALOG_DIR,
    EN_DIR,
    LANGUAGE,
    ROOT,
    ZH_DIR,
    _shown,
    catalog_path,
    load_catalog,
    markdown_cells,
    read_notebook,
    save_catalog,
    source_hash,
    update,
)
from zh_check import (  # noqa: E402, F401
    _CODE,
    _DISPLAY,
    _FENCE,
    _INLINE,
    GLOSSARY,
    Term,
    _coverage,
    check_notebook,
    is_complete,
    load_glossary,
    prose,
    protected_spans,
)

# ---------------------------------------------------------------------------------------------
# Building the edition: notebooks/zh/<name>.ipynb from the English notebook and its catalog
# ---------------------------------------------------------------------------------------------

#: The one line the Chinese edition adds, in the first code cell that imports fedlearn.
SET_LANGUAGE = '{alias}.exercises.set_language("zh")'
#: Notebook-level metadata key saying which edition a notebook is and what it was built from.
EDITION_KEY = "fedlearn_edition"
_IMPORT_FEDLEARN = re.compile(r"^import fedlearn as (\w+)\s*$")
_IMPORT_LINE = re.compile(r"^(?:import|from)\s")
_SCHEME = re.compile(r"^[A-Za-z][\w+.-]*:")
_REF_DEF = re.compile(r"^( {0,3}\[[^\]\n]+\]:[ \t]*)(\S+)", re.M)
_HTML_LINK = re.compile(r"""(\b(?:href|src)=["'])([^"'\s]+)""")
_LINK = re.compile(r"(\]\()([^)\s]+)")


class TranslationError(ValueError):
    """A notebook cannot be built or checked; the message names the file and the fix."""


def zh_path(notebook: Path) -> Path:
    """Where the Chinese edition of an English notebook lives: ``<folder>/zh/<same name>``."""
    return notebook.parent / "zh" / notebook.name


def read_pending(en_dir: Path = EN_DIR) -> tuple[dict[str, str], list[str]]:
    """``zh/PENDING``: notebooks not translated yet, ``<notebook file> <reason>`` per line
    (``#`` starts a comment). Returns the reasons by notebook name and the file's problems."""
    path = en_dir / "zh" / "PENDING"
    pending: dict[str, str] = {}
    problems = []
    if not path.exists():
        return pending, problems
    for number, raw in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        line = "" if raw.lstrip().startswith("#") else raw.strip()
        if not line:
            continue
        name, reason = (line.split(None, 1) + [""])[:2]
        where = f"{_shown(path)} line {number}"
        if not (en_dir / name).is_file():
            problems.append(f"{where}: {name!r} is not a notebook in {_shown(en_dir)}/ "
                            "(write: <notebook file name> <reason>)")
        elif not reason.strip():
            problems.append(f"{where}: {name} has no reason (write: {name} <why it is not "
                            "translated yet>)")
        elif name in pending:
            problems.append(f"{where}: {name} is listed twice")
        else:
            pending[name] = reason.strip()
    return pending, problems


def english_notebooks(en_dir: Path = EN_DIR) -> list[Path]:
    return sorted(en_dir.glob("*.ipynb"))


def relocate(target: str, built: set[str]) -> str:
    """A link target written for ``notebooks/`` as seen from ``notebooks/zh/``.

    Absolute URLs and in-page anchors stay; ``GLOSSARY.md#x`` becomes ``../GLOSSARY.md#x``,
    ``../benchmarks/b.py`` ``../../benchmarks/b.py``; a course notebook ``NN_x.ipynb`` links to
    its Chinese edition when that is built (``built``), else to ``../NN_x.ipynb``.
    """
    if _SCHEME.match(target) or target.startswith(("#", "/")):
        return target
    cut = min([i for i in (target.find("#"), target.find("?")) if i >= 0], default=len(target))
    path, rest = target[:cut], target[cut:]
    if not path:
        return target
    resolved = posixpath.normpath(posixpath.join("notebooks", path))
    folder, name = posixpath.split(resolved)
    if folder == "notebooks" and name in built:
        return name + rest
    return posixpath.relpath(resolved, "notebooks/zh") + rest


def localise_links(text: str, built: set[str]) -> str:
    """``text`` with every relative link (Markdown inline, reference definition, HTML href/src)
    rewritten by :func:`relocate`; maths and code are left exactly as they are."""
    kept: list[str] = []

    def hide(match: re.Match) -> str:
        kept.append(match.group(0))
        return f"\x00{len(kept) - 1}\x00"

    for pattern in (_FENCE, _DISPLAY, _INLINE, _CODE):
        text = pattern.sub(hide, text)
    for pattern in (_LINK, _REF_DEF, _HTML_LINK):
        text = pattern.sub(lambda m: m.group(1) + relocate(m.group(2), built), text)
    return re.sub("\x00(\\d+)\x00", lambda m: kept[int(m.group(1))], text)


def with_language_line(source: str) -> str | None:
    """The first code cell importing fedlearn with the line that selects Chinese exercise
    messages, placed where the imports end (so the import block stays as isort wants it);
    ``None`` when the cell does not ``import fedlearn as <alias>``."""
    lines = source.split("\n")
    start = next((i for i, ln in enumerate(lines) if _IMPORT_FEDLEARN.match(ln)), None)
    if start is None:
        return None
    alias = _IMPORT_FEDLEARN.match(lines[start]).group(1)
    end, depth = start, 0
    while end < len(lines):
        line = lines[end]
        if depth == 0 and not (_IMPORT_LINE.match(line) or end == start):
            break
        depth += line.count("(") - line.count(")")
        end += 1
    while end < len(lines) and not lines[end].strip():
        end += 1
    lines.insert(end, SET_LANGUAGE.format(alias=alias))
    return "\n".join(lines)


def build_notebook(notebook: Path, built: set[str] | None = None,
                   repo_url: str | None = None) -> nbformat.NotebookNode:
    """The Chinese edition of ``notebook``: the same cells, ids, order and metadata, Markdown from
    the catalog (links relocated), code and outputs copied, plus the one language line.

    Raises :class:`TranslationError` when a Markdown cell has no current translation.
    """
    path = catalog_path(notebook)
    if not path.exists():
        raise TranslationError(f"{notebook.name}: no catalog {_shown(path)} (run: python "
                               f"tools/translate.py update notebooks/{notebook.name})")
    nb = read_notebook(notebook)
    entries = load_catalog(path)["cells"]
    missing, _ = _coverage(notebook, nb, entries)
    if missing:
        raise TranslationError(f"{notebook.name} cannot be built:\n  " + "\n  ".join(missing))
    built = _built_names(notebook.parent) if built is None else built
    repo_url = colab.repository_url(notebook.parent.parent / "pyproject.toml") \
        if repo_url is None else repo_url
    out = copy.deepcopy(nb)
    rel = f"{notebook.parent.name}/zh/{notebook.name}"
    language_set = False
    for cell in out.cells:
        if cell.cell_type == "markdown":
            if colab.BADGE_TAG in cell.get("metadata", {}).get("tags", []):
                cell.source = colab.badge_source(repo_url, rel)
            else:
                cell.source = localise_links(entries[cell.id]["zh"], built)
        elif cell.cell_type == "code" and not language_set:
            changed = with_language_line(cell.source)
            if changed is not None:
                cell.source, language_set = changed, True
    if not language_set:
        raise TranslationError(f"{notebook.name}: no code cell has the line 'import fedlearn as "
                               "fl', after which the edition selects Chinese exercise messages")
    out.metadata[EDITION_KEY] = {"language": LANGUAGE, "english": f"../{notebook.name}",
                                 "catalog": f"catalog/{path.name}",
                                 "generated_by": "tools/translate.py build: edit the catalog"}
    nbformat.validate(out)
    return out


def notebook_bytes(nb: nbformat.NotebookNode) -> bytes:
    """The file as written (as nbformat.write does it): the same input gives the same bytes."""
    text = nbformat.writes(nb)
    return (text if text.endswith("\n") else text + "\n").encode("utf-8")


def _built_names(en_dir: Path) -> set[str]:
    pending, _ = read_pending(en_dir)
    return {p.name for p in english_notebooks(en_dir) if p.name not in pending}


def build(notebooks: list[Path] | None = None, en_dir: Path = EN_DIR,
          repo_url: str | None = None) -> list[Path]:
    """Write the Chinese edition of ``notebooks`` (default: every English notebook not listed in
    ``zh/PENDING``, and then remove generated notebooks whose English is gone or pending).
    Files whose bytes would not change are left alone. Returns the files written or removed."""
    everything = notebooks is None
    pending, problems = read_pending(en_dir)
    if problems:
        raise TranslationError("\n".join(problems))
    built = _built_names(en_dir)
    targets = [p for p in english_notebooks(en_dir) if p.name in built] if everything \
        else list(notebooks)
    for nb in targets:
        if nb.name in pending:
            raise TranslationError(f"{nb.name} is listed in {_shown(en_dir / 'zh' / 'PENDING')}"
                                   f" ({pending[nb.name]}): remove its line to build it")
    errors, changed = [], []
    for nb in targets:
        try:
            data = notebook_bytes(build_notebook(nb, built, repo_url))
        except TranslationError as err:
            errors.append(str(err))
            continue
        out = zh_path(nb)
        if not (out.is_file() and out.read_bytes() == data):
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
            changed.append(out)
    if everything:
        for old in sorted((en_dir / "zh").glob("*.ipynb")):
            if old.name not in built:
                old.unlink()
                changed.append(old)
    if errors:
        raise TranslationError("\n".join(errors))
    return changed


def _cell_difference(name: str, index: int, want: Any, have: Any) -> str | None:
    where = f"zh/{name} cell {index} (id {want.get('id')})"
    if want == have:
        return None
    if want.cell_type != have.cell_type:
        return f"{where}: is a {have.cell_type} cell, the English one is {want.cell_type}"
    if want.cell_type == "code":
        if want.source != have.source:
            return (f"{where}: its code differs from the English notebook's (the one allowed "
                    "difference is the set_language line, which build adds)")
        if want.get("outputs") != have.get("outputs") or \
                want.get("execution_count") != have.get("execution_count"):
            return f"{where}: its outputs differ from the English notebook's"
        return f"{where}: its metadata differs from the English notebook's"
    if want.source != have.source:
        return (f"{where}: its text is not the catalog's (stale, or edited by hand: edit "
                f"zh/catalog/{Path(name).stem}.yaml, then make zh)")
    return f"{where}: its metadata or attachments differ from the English notebook's"


def edition_problems(notebook: Path, built: set[str], repo_url: str | None = None) -> list[str]:
    """How the committed ``zh/<name>`` differs from what :func:`build_notebook` makes now."""
    name = notebook.name
    target = zh_path(notebook)
    try:
        want = build_notebook(notebook, built, repo_url)
    except TranslationError as err:
        return [str(err)]
    if not target.is_file():
        return [f"zh/{name}: not built (run: make zh)"]
    data = target.read_bytes()
    if data == notebook_bytes(want):
        return []
    fix = " (run: make zh)"
    have = nbformat.reads(data.decode("utf-8"), as_version=4)
    want_ids = [c.get("id") for c in want.cells]
    have_ids = [c.get("id") for c in have.cells]
    if want_ids != have_ids:
        at = next((i for i, (a, b) in enumerate(zip(want_ids, have_ids, strict=False)) if a != b),
                  min(len(want_ids), len(have_ids)))
        return [f"zh/{name}: its cells are not the English notebook's (first difference at cell "
                f"{at}: {have_ids[at] if at < len(have_ids) else 'end'} instead of "
                f"{want_ids[at] if at < len(want_ids) else 'end'}){fix}"]
    problems = [d + fix for i, (w, h) in enumerate(zip(want.cells, have.cells, strict=True))
                if (d := _cell_difference(name, i, w, h))]
    if want.metadata != have.metadata:
        problems.append(f"zh/{name}: its notebook metadata differs from the English notebook's "
                        f"plus {EDITION_KEY}{fix}")
    return problems or [f"zh/{name}: not written as build writes it{fix}"]


def check_edition(en_dir: Path = EN_DIR, terms: dict[str, Term] | None = None,
                  repo_url: str | None = None) -> dict[str, list[str]]:
    """The whole edition's sync check, by notebook (an empty dict: in sync).

    Every English notebook is either listed in ``zh/PENDING`` (then its catalog must not be
    complete yet, so the list cannot go stale) or has a catalog that passes
    :func:`check_notebook` and a committed ``zh/<name>`` equal to what ``build`` makes now.
    """
    terms = load_glossary(en_dir / "GLOSSARY.md") if terms is None else terms
    pending, pending_problems = read_pending(en_dir)
    report: dict[str, list[str]] = {}
    if pending_problems:
        report["PENDING"] = pending_problems
    built = _built_names(en_dir)
    english = english_notebooks(en_dir)
    for notebook in english:
        name = notebook.name
        if name in pending:
            if is_complete(notebook):
                problems = [f"{name}: zh/PENDING lists it ({pending[name]}), but its catalog is "
                            "complete: remove the line, then make zh"]
            else:
                problems = []
        else:
            problems = check_notebook(notebook, terms)
            if not problems:
                problems = edition_problems(notebook, built, repo_url)
            elif not catalog_path(notebook).exists():
                problems[0] += (" or, if it is not translated yet, add a line "
                                f"'{name} <reason>' to zh/PENDING")
        if problems:
            report[name] = problems
    names = {p.name for p in english}
    for zh in sorted((en_dir / "zh").glob("*.ipynb")):
        if zh.name not in names or zh.name in pending:
            why = "is listed in zh/PENDING" if zh.name in pending else "is gone"
            report.setdefault(zh.name, []).append(
                f"zh/{zh.name}: its English notebook {why}: delete it (make zh does)")
    for cat in sorted((en_dir / "zh" / "catalog").glob("*.yaml")):
        if f"{cat.stem}.ipynb" not in names:
            report.setdefault(cat.name, []).append(
                f"zh/catalog/{cat.name}: no English notebook {cat.stem}.ipynb: delete the catalog")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("update", help="add catalog entries for new Markdown cells")
    up.add_argument("notebooks", nargs="+", type=Path)
    ck = sub.add_parser("check", help="the sync check: of these notebooks' catalogs, or (no "
                        "notebooks given) of the whole edition, zh/PENDING and notebooks/zh/")
    ck.add_argument("notebooks", nargs="*", type=Path)
    bd = sub.add_parser("build", help="write notebooks/zh/<name>.ipynb from the English "
                        "notebook and its catalog (default: every notebook not pending)")
    bd.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args(argv)
    for nb in getattr(args, "notebooks", []):
        if not nb.is_file():
            parser.error(f"notebook {nb} does not exist")
    if args.command == "update":
        for nb in args.notebooks:
            print(f"{nb.name}: {update(nb)}")
        return 0
    if args.command == "build":
        try:
            changed = build(args.notebooks or None)
        except TranslationError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        for path in changed:
            print(f"{'wrote' if path.exists() else 'removed'} {_shown(path)}")
        print(f"zh edition: {len(changed)} notebooks written or removed")
        return 0
    terms = load_glossary()
    if args.notebooks:
        report = {nb.name: check_notebook(nb, terms) for nb in args.notebooks}
    else:
        report = check_edition(EN_DIR, terms)
        report = {nb.name: report.get(nb.name, []) for nb in english_notebooks()} | report
    pending, _ = read_pending()
    for name, problems in report.items():
        count = sum(not p.startswith(" ") for p in problems)  # not the lines of a stale diff
        state = "in sync" if not problems else f"{count} problem{'s' * (count > 1)}"
        if not args.notebooks and name in pending and not problems:
            state = f"pending ({pending[name]})"
        print(f"{name}: {state}")
        for p in problems:
            print(f"  {p}")
    failed = sum(bool(p) for p in report.values())
    if failed:
        print(f"zh sync check: {failed} failed (see above)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
