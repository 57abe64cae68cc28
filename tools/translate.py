"""The Chinese edition of the course, generated from the English notebooks and a catalog.

Why generated: a hand-kept translation drifts (d2l-zh lives in another repository and lags the
English book). Here the English notebook stays the only source of code and outputs, and each
notebook's translations live in one human-edited catalog, ``notebooks/zh/catalog/<stem>.yaml``:

.. code-block:: yaml

    notebook: 01_what_is_federated_learning.ipynb
    language: zh-CN
    cells:
      <cell id>:            # the English Markdown cell's nbformat id, in notebook order
        en_sha256: 1f0c...  # first 16 hex digits of sha256(English source, UTF-8)
        en: |-              # the English source this entry translates (to diff when stale)
          ...
        zh: |-              # the translation (empty: not translated yet)
          ...

An entry is *stale* when the English cell's hash differs from ``en_sha256``: the English
changed after it was translated. ``update`` never refreshes a stale entry's hash (that would
hide the staleness); it only adds entries for new cells and drops entries of deleted ones.

The sync check (``check``) fails, naming the notebook and the cell, when

* an English Markdown cell has no entry, an empty translation, or a stale hash (the message
  shows the English lines that changed);
* a maths span (``$...$``, ``$$...$$``), inline code or URL of the English cell is missing
  from the translation or changed (compared as multisets, whitespace runs collapsed, so
  re-wrapping a line is not a change);
* the translation is not really Chinese: among its prose (maths, code, URLs and reference
  lines with a URL removed) fewer than ``MIN_CJK_SHARE`` of the letters are CJK characters,
  or a prose line without a URL has ``MAX_LATIN_RUN`` or more Latin letters and no CJK
  character at all (a reference line, which has its URL, keeps its English title);
* the translation renders to another structure (headings, list items, table cells, bold and
  italic spans, links, code spans, images: CommonMark via markdown-it-py);
* a glossary term is not rendered as GLOSSARY.md renders it: every term the English cell
  links to ``GLOSSARY.md#anchor`` keeps that link, with one of the glossary's Chinese forms in
  its text and the English term somewhere in the cell (first use: ``联邦平均（FedAvg）``); and
  every other English use of an unambiguous glossary term has one of its Chinese forms in the
  translation (an acronym or name such as FedAvg or AUROC may also stay as it is; paper
  titles under a References heading are not searched).

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
import difflib
import hashlib
import posixpath
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import colab  # noqa: E402  (tools/ is a folder of scripts, not a package)

ROOT = Path(__file__).resolve().parents[1]
EN_DIR = ROOT / "notebooks"
ZH_DIR = EN_DIR / "zh"
CATALOG_DIR = ZH_DIR / "catalog"
LANGUAGE = "zh-CN"


def source_hash(text: str) -> str:
    """The key that ties a translation to the exact English text it was made from."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def catalog_path(notebook: Path) -> Path:
    """``<notebook's folder>/zh/catalog/<stem>.yaml`` (``notebooks/zh/catalog/`` in the course)."""
    return notebook.parent / "zh" / "catalog" / f"{notebook.stem}.yaml"


def _shown(path: Path) -> str:
    """A path as messages show it: relative to the repository when it is inside it."""
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings as ``|-`` blocks, so a catalog reads (and diffs) like Markdown."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    if "\n" in text or len(text) > 60:
        # trailing spaces and a final newline cannot be kept in a block scalar: strip them
        # (they do not change how Markdown renders); the hash is of the notebook's source
        text = "\n".join(line.rstrip() for line in text.split("\n")).rstrip("\n")
        return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", text)


_BlockDumper.add_representer(str, _str)


def load_catalog(path: Path) -> dict[str, Any]:
    """A catalog as a dict; ``cells`` maps cell id to ``{en_sha256, en, zh}``."""
    # libyaml's safe loader when PyYAML has it (same documents, ten times faster: the edition
    # check loads every catalog)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader) or {}  # noqa: S506
    data.setdefault("cells", {})
    for cid, entry in data["cells"].items():
        missing = {"en_sha256", "en", "zh"} - set(entry or {})
        if missing:
            raise ValueError(f"{path}: cell {cid} lacks {sorted(missing)}; every entry needs "
                             "en_sha256, en and zh (zh may be empty)")
        entry["zh"] = entry["zh"] or ""
    return data


def save_catalog(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.dump(data, Dumper=_BlockDumper, allow_unicode=True, sort_keys=False,
                     width=10_000)
    path.write_text(text, encoding="utf-8")


_READ: dict[tuple[str, str], nbformat.NotebookNode] = {}


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """``path`` read and validated once per content (the edition check reads each English
    notebook for several checks); callers that change the result must copy it."""
    data = path.read_bytes()
    key = (str(path.resolve()), hashlib.sha256(data).hexdigest())
    if key not in _READ:
        if len(_READ) > 64:
            _READ.clear()
        _READ[key] = nbformat.reads(data.decode("utf-8"), as_version=4)
    return _READ[key]


def markdown_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "markdown"]


def update(notebook: Path) -> dict[str, int]:
    """Add an entry (empty ``zh``) for every Markdown cell without one, in notebook order;
    drop entries whose cell is gone. Existing entries, stale or not, are kept as they are."""
    nb = nbformat.read(notebook, as_version=4)
    path = catalog_path(notebook)
    old = load_catalog(path)["cells"] if path.exists() else {}
    cells: dict[str, Any] = {}
    added = 0
    for cell in markdown_cells(nb):
        if cell.id in old:
            cells[cell.id] = old[cell.id]
        else:
            cells[cell.id] = {"en_sha256": source_hash(cell.source), "en": cell.source, "zh": ""}
            added += 1
    save_catalog(path, {"notebook": notebook.name, "language": LANGUAGE, "cells": cells})
    return {"added": added, "dropped": len(set(old) - set(cells)), "entries": len(cells)}


# ---------------------------------------------------------------------------------------------
# The sync check
# ---------------------------------------------------------------------------------------------

GLOSSARY = EN_DIR / "GLOSSARY.md"
MIN_CJK_SHARE = 0.3
MAX_LATIN_RUN = 60
#: Cells whose English prose has fewer letters than this (a badge, a bare link) need no CJK.
MIN_PROSE_LETTERS = 30
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")
_FENCE = re.compile(r"```.*?```", re.S)
_DISPLAY = re.compile(r"\$\$.+?\$\$", re.S)
_INLINE = re.compile(r"(?<![\\$])\$(?!\$)(?:[^$\\]|\\.)+?\$")
_CODE = re.compile(r"`(?:[^`\n]|\n(?!\s*\n))+`")  # a code span may wrap a line
_LINK_TARGET = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_BARE_URL = re.compile(r"(?<![(\w])https?://[^\s)>\]]+")
_HTML = re.compile(r"<[^>\n]+>")
_URL = re.compile(r"https?://")
_GLOSSARY_LINK = re.compile(r"\[([^\]]+)\]\((?:\.\./)?GLOSSARY\.md#([\w-]+)\)")
_REFERENCES = re.compile(r"^#+\s*(?:References|Further reading)\b.*$", re.M)
_ROW = re.compile(r'^\| <a id="([\w-]+)"></a>([^|]+)\|([^|]+)\|', re.M)
#: English forms too generic to demand a glossary rendering wherever they occur.
#: ("participant" also means a study participant, a patient, not a client.)
SKIP_FORMS = frozenset({"at risk", "delta", "recall", "round", "clipping", "server", "participant",
                        "calibration", "hazard", "deadline", "heartbeat", "prevalence"})


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def protected_spans(text: str) -> Counter:
    """Maths, code and URLs of a Markdown cell: a translation keeps every one unchanged."""
    spans: list[str] = []
    rest = text
    for kind, pattern in (("code", _FENCE), ("math", _DISPLAY), ("math", _INLINE),
                          ("code", _CODE)):
        spans += [f"{kind}:{_squash(m.group(0))}" for m in pattern.finditer(rest)]
        rest = pattern.sub(" ", rest)
    spans += [f"url:{m.group(1)}" for m in _LINK_TARGET.finditer(rest)]
    spans += [f"url:{m.group(0)}" for m in _BARE_URL.finditer(_LINK_TARGET.sub("]", rest))]
    return Counter(spans)


def prose(text: str) -> str:
    """The words of a Markdown cell: maths, code, URLs and HTML tags removed."""
    for pattern in (_FENCE, _DISPLAY, _INLINE, _CODE):
        text = pattern.sub(" ", text)
    text = _LINK_TARGET.sub("]", text)
    return _HTML.sub(" ", _BARE_URL.sub(" ", text))


def cjk_problems(zh: str, en: str) -> list[str]:
    """Why ``zh`` is not really Chinese (empty: it is)."""
    if len(_LATIN.findall(prose(en))) < MIN_PROSE_LETTERS:
        return []
    lines = [ln for ln in zh.split("\n") if not _URL.search(ln)]  # reference lines: a URL
    words = prose("\n".join(lines))
    cjk, latin = len(_CJK.findall(words)), len(_LATIN.findall(words))
    problems = []
    if cjk + latin and cjk / (cjk + latin) < MIN_CJK_SHARE:
        problems.append(f"only {cjk / (cjk + latin):.0%} of its letters are Chinese "
                        f"(at least {MIN_CJK_SHARE:.0%}): translate the prose")
    # maths and code are removed before splitting (a $$ block may span lines); a reference
    # line (it has a URL) was dropped above and keeps its English title
    for line in words.split("\n"):
        if len(_LATIN.findall(line)) >= MAX_LATIN_RUN and not _CJK.search(line):
            problems.append(f"an untranslated line: {line.strip()[:70]!r}")
    return problems


@dataclass(frozen=True)
class Term:
    """One glossary row: its anchor, English forms and accepted Chinese forms."""

    anchor: str
    english: tuple[str, ...]
    chinese: tuple[str, ...]
    #: Chinese forms accepted for each English form: where a row lists as many English as
    #: Chinese alternatives ("ServerApp / ClientApp" | "服务端应用 / 客户端应用") they pair up
    #: in order; otherwise every Chinese form is accepted for every English one.
    pairs: tuple[tuple[str, tuple[str, ...]], ...] = ()


def _alternatives(cell: str) -> list[str]:
    return [p.strip() for p in cell.split(" / ") if p.strip()]


def _english_forms(part: str) -> list[str]:
    """"federated learning (FL)" -> [federated learning, FL]; trailing symbols dropped."""
    inner = re.findall(r"\(([^)]*)\)", part)
    main = _squash(re.sub(r"\([^)]*\)", " ", part))
    main = re.sub(r"(\s+(?:[A-Za-z]|[^\x00-\x7f]+²?|\S*[εδζ]\S*))+$", "", main).strip()
    forms = [main] if main else []
    if part.rstrip().endswith(")"):
        forms += [f.strip() for i in inner for f in i.split(",") if f.strip()
                  and not re.search(r"[εδζ]", f) and not f.strip().startswith("of ")]
    return forms


def _chinese_forms(part: str) -> list[str]:
    """"参与方（客户端）" -> [参与方（客户端）, 参与方, 客户端]."""
    part = re.sub(r"\s+(?:[A-Za-z]|\S*[εδζ]\S*)$", "", part)  # 光滑常数 L -> 光滑常数
    forms = [part]
    inner = [i for i in re.findall(r"（([^）]*)）", part) if not i.endswith("的")]
    outer = re.sub(r"（[^）]*）", "", part).strip()
    forms += [f for f in [outer, *inner] if f and f not in forms]
    return forms


def load_glossary(path: Path = GLOSSARY) -> dict[str, Term]:
    terms = {}
    for anchor, en_cell, zh_cell in _ROW.findall(path.read_text(encoding="utf-8")):
        en_parts, zh_parts = _alternatives(en_cell), _alternatives(zh_cell)
        zh_all = tuple(f for p in zh_parts for f in _chinese_forms(p))
        english = tuple(f for p in en_parts for f in _english_forms(p))
        if len(en_parts) == len(zh_parts) > 1:
            pairs = tuple((f, tuple(_chinese_forms(z)))
                          for e, z in zip(en_parts, zh_parts, strict=True)
                          for f in _english_forms(e))
        else:
            pairs = tuple((f, zh_all) for f in english)
        terms[anchor] = Term(anchor, english, zh_all, pairs)
    return terms


def _occurs(form: str, text: str) -> bool:
    flags = 0 if any(ch.isupper() for ch in form) else re.I
    return re.search(rf"(?<![\w-]){re.escape(form)}(?:e?s)?(?![\w-])", text, flags) is not None


def _is_name(form: str) -> bool:
    """An acronym or a method's name (FedAvg, AUROC, DP-SGD): it may stay as it is in Chinese."""
    return any(ch.isupper() or ch.isdigit() for ch in form)


def glossary_problems(zh: str, en: str, terms: dict[str, Term]) -> list[str]:
    problems = []
    linked = {}
    for text, anchor in _GLOSSARY_LINK.findall(en):
        if anchor in terms:
            linked[anchor] = text
    zh_links: dict[str, list[str]] = {}
    for text, anchor in _GLOSSARY_LINK.findall(zh):
        zh_links.setdefault(anchor, []).append(text)
    for anchor in linked:
        term = terms[anchor]
        if anchor not in zh_links:
            problems.append(f"the glossary link to #{anchor} is missing")
        elif not any(f in t for t in zh_links[anchor] for f in term.chinese):
            problems.append(f"the link to #{anchor} should read {term.chinese[0]} "
                            f"(GLOSSARY.md), not {zh_links[anchor][0]!r}")
        elif not any(_occurs(f, zh) for f in term.english) and term.english:
            problems.append(f"first use of {term.chinese[0]}: give the English in parentheses, "
                            f"e.g. {term.chinese[0]}（{term.english[0]}）")
    owners: Counter = Counter(f.lower() for t in terms.values() for f in set(t.english))
    # paper titles stay English: a References section is not searched for unmarked terms
    words = prose(_GLOSSARY_LINK.sub(" ", _REFERENCES.split(en, maxsplit=1)[0]))
    zh_words = prose(zh)
    for term in terms.values():
        if term.anchor in linked:
            continue
        for form, chinese in term.pairs:
            if form.lower() in SKIP_FORMS or owners[form.lower()] > 1 or not _occurs(form, words):
                continue
            if any(f in zh_words for f in chinese):
                continue
            if _is_name(form) and _occurs(form, zh_words):
                continue
            problems.append(f"{form!r} is a glossary term: render it as "
                            f"{' or '.join(chinese[:3])} (GLOSSARY.md#{term.anchor})")
            break
    return problems


_STRUCTURE = ("heading_open", "bullet_list_open", "ordered_list_open", "list_item_open",
              "blockquote_open", "table_open", "th_open", "td_open", "strong_open", "em_open",
              "link_open", "code_inline", "fence", "image")


def structure(text: str) -> Counter:
    """How many headings, list items, table cells, bold/italic spans, links, code spans and
    images CommonMark renders from ``text``. In Chinese, ``**观察要点：**后`` does not close
    (the closing ``**`` follows punctuation and precedes a letter), so the bold is lost and two
    literal asterisks show; comparing the rendered structure with the English catches it."""
    from markdown_it import MarkdownIt

    counts: Counter = Counter()
    stack = MarkdownIt("commonmark").enable("table").parse(text)
    while stack:
        token = stack.pop()
        if token.type in _STRUCTURE:
            counts[token.type] += 1
        stack.extend(token.children or [])
    return counts


def structure_problems(zh: str, en: str) -> list[str]:
    want, got = structure(en), structure(zh)
    if want == got:
        return []
    diff = ", ".join(f"{k.removesuffix('_open')} {got[k]} (English {want[k]})"
                     for k in sorted(set(want) | set(got)) if want[k] != got[k])
    return [f"renders differently from the English: {diff} (a ** that closes right after "
            "full-width punctuation and before a Chinese character stays literal: move it "
            "before the punctuation)"]


def _stale_diff(old: str, new: str, limit: int = 8) -> list[str]:
    """The changed lines of the English, so the translator sees what to re-translate."""
    lines = [ln for ln in difflib.unified_diff(old.split("\n"), new.split("\n"), lineterm="", n=0)
             if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    shown = [f"    {ln[:100]}" for ln in lines[:limit]]
    return shown + ([f"    ... ({len(lines) - limit} more changed lines)"]
                    if len(lines) > limit else [])


def _coverage(notebook: Path, nb: nbformat.NotebookNode, entries: dict[str, Any]
              ) -> tuple[list[str], list[tuple[str, nbformat.NotebookNode, str]]]:
    """Cells without a current translation (problems), and the translated cells ``(where,
    English cell, zh)``. A stale entry counts as untranslated: its zh is of another text."""
    problems, done = [], []
    name = notebook.name
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        where = f"{name} cell {index} (id {cell.id})"
        entry = entries.get(cell.id)
        if entry is None:
            problems.append(f"{where}: no translation (run: python tools/translate.py update "
                            f"notebooks/{name}, then translate it)")
        elif entry["en_sha256"] != source_hash(cell.source):
            problems.append(f"{where}: the English changed since it was translated (stale "
                            "en_sha256): update zh, then set en and en_sha256 to the new source")
            problems += _stale_diff(entry["en"], cell.source)
        elif not entry["zh"].strip():
            problems.append(f"{where}: empty translation")
        else:
            done.append((where, cell, entry["zh"]))
    return problems, done


def is_complete(notebook: Path) -> bool:
    """Every Markdown cell of ``notebook`` has a current, non-empty translation."""
    path = catalog_path(notebook)
    if not path.exists():
        return False
    nb = read_notebook(notebook)
    return not _coverage(notebook, nb, load_catalog(path)["cells"])[0]


def check_notebook(notebook: Path, terms: dict[str, Term] | None = None) -> list[str]:
    """Every problem of one notebook's catalog against its English source (empty: in sync)."""
    terms = load_glossary() if terms is None else terms
    path = catalog_path(notebook)
    name = notebook.name
    if not path.exists():
        return [f"{name}: no catalog {_shown(path)} "
                f"(run: python tools/translate.py update notebooks/{name})"]
    nb = read_notebook(notebook)
    problems, done = _coverage(notebook, nb, load_catalog(path)["cells"])
    for where, cell, zh in done:
        lost = protected_spans(cell.source) - protected_spans(zh)
        extra = protected_spans(zh) - protected_spans(cell.source)
        for span in lost:
            problems.append(f"{where}: the translation lost or changed {span[:80]!r}")
        for span in extra:
            problems.append(f"{where}: the translation adds {span[:80]!r}, which the English "
                            "does not have (maths, code and URLs are copied byte for byte)")
        problems += [f"{where}: {p}" for p in structure_problems(zh, cell.source)]
        problems += [f"{where}: {p}" for p in cjk_problems(zh, cell.source)]
        problems += [f"{where}: {p}" for p in glossary_problems(zh, cell.source, terms)]
    return problems


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
