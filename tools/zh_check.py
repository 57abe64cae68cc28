"""The sync check of a Chinese translation against its English notebook, cell by cell.

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
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from zh_catalog import (
    EN_DIR,
    _shown,
    catalog_path,
    load_catalog,
    read_notebook,
    source_hash,
)

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
        en_spans, zh_spans = protected_spans(cell.source), protected_spans(zh)
        lost, extra = en_spans - zh_spans, zh_spans - en_spans
        for span in lost:
            problems.append(f"{where}: the translation lost or changed {span[:80]!r}")
        for span in extra:
            problems.append(f"{where}: the translation adds {span[:80]!r}, which the English "
                            "does not have (maths, code and URLs are copied byte for byte)")
        problems += [f"{where}: {p}" for p in structure_problems(zh, cell.source)]
        problems += [f"{where}: {p}" for p in cjk_problems(zh, cell.source)]
        problems += [f"{where}: {p}" for p in glossary_problems(zh, cell.source, terms)]
    return problems
