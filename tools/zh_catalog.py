"""The translation catalogs of the Chinese edition: one YAML file per notebook.

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
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import nbformat
import yaml

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
