"""Tests for tools/build_site.py's source assembly (no Sphinx run; tests/test_site.py does that)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tests.tools_loader import load

bs = load("build_site")
colab = load("colab")

ROOT = Path(__file__).resolve().parents[1]


def _repo(tmp_path: Path, with_zh: bool) -> Path:
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "docs" / "_static").mkdir(parents=True)
    (root / "README.md").write_text(f"# Course\n\n[![Open In Colab]({colab.BADGE_IMAGE})](x)\n",
                                    encoding="utf-8")
    (root / "data" / "README.md").write_text("# Data\n", encoding="utf-8")
    (root / "docs" / "api.md").write_text("# API\n", encoding="utf-8")
    (root / "docs" / "_static" / "colab-badge.svg").write_text("<svg/>", encoding="utf-8")
    badge = new_markdown_cell(f"[![Open In Colab]({colab.BADGE_IMAGE})](https://colab)")
    install = new_code_cell("import sys")
    install.metadata["tags"] = [colab.INSTALL_TAG]
    nbformat.write(new_notebook(cells=[badge, install, new_markdown_cell("# One")]),
                   root / "notebooks" / "01_one.ipynb")
    if with_zh:
        (root / "notebooks" / "zh").mkdir()
        nbformat.write(new_notebook(cells=[badge, new_markdown_cell("# 一")]),
                       root / "notebooks" / "zh" / "01_one.ipynb")
    return root


def test_english_only_site_has_one_edition_and_local_badges(tmp_path: Path) -> None:
    root = _repo(tmp_path, with_zh=False)
    src = tmp_path / "src"
    languages = bs.assemble(root, src)
    assert [e["code"] for e in languages["editions"]] == ["en"]
    index = (src / "index.md").read_text(encoding="utf-8")
    assert "notebooks/01_one" in index and "中文" not in index
    assert colab.BADGE_IMAGE not in index
    nb = nbformat.read(src / "notebooks" / "01_one.ipynb", as_version=4)
    assert "../" + bs.BADGE_FILE in nb.cells[0].source
    assert "remove-cell" in nb.cells[1].metadata["tags"]  # the Colab-only cell is not shown
    assert (src / bs.BADGE_FILE).is_file() and (src / "docs" / "api.md").is_file()


def test_chinese_edition_gets_a_section_and_counterparts(tmp_path: Path) -> None:
    root = _repo(tmp_path, with_zh=True)
    src = tmp_path / "src"
    languages = bs.assemble(root, src)
    assert [e["code"] for e in languages["editions"]] == ["en", "zh"]
    assert languages["pages"]["notebooks/01_one"] == {"_self": "en", "zh": "notebooks/zh/01_one"}
    assert languages["pages"]["notebooks/zh/01_one"] == {"_self": "zh", "en": "notebooks/01_one"}
    index = (src / "index.md").read_text(encoding="utf-8")
    assert ":caption: 中文版 (Chinese edition)" in index and "notebooks/zh/01_one" in index
    zh = nbformat.read(src / "notebooks" / "zh" / "01_one.ipynb", as_version=4)
    assert "../../" + bs.BADGE_FILE in zh.cells[0].source
    stored = json.loads((src / "_languages.json").read_text(encoding="utf-8"))
    assert stored == languages


def test_rebuild_drops_deleted_notebooks_and_leaves_unchanged_files_alone(tmp_path: Path) -> None:
    root = _repo(tmp_path, with_zh=True)
    src = tmp_path / "src"
    bs.assemble(root, src)
    kept = src / "notebooks" / "01_one.ipynb"
    mtime = kept.stat().st_mtime_ns
    (root / "notebooks" / "zh" / "01_one.ipynb").unlink()
    bs.assemble(root, src)
    assert not (src / "notebooks" / "zh" / "01_one.ipynb").exists()
    assert kept.stat().st_mtime_ns == mtime


def test_a_damaged_mathjax_download_is_refused(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"mathjax-{bs.MATHJAX_VERSION}.tgz").write_bytes(b"not the package")
    with pytest.raises(bs.SiteBuildError, match="sha256"):
        bs.vendor_mathjax(cache)


def test_glossary_anchors_become_myst_targets(tmp_path: Path) -> None:
    """GLOSSARY.md's HTML row anchors reach the site as MyST inline targets, which Sphinx knows
    (an <a id> it does not, and a link to it would be a myst.xref_missing warning)."""
    root = _repo(tmp_path, with_zh=False)
    (root / "notebooks" / "GLOSSARY.md").write_text(
        '| <a id="fednova"></a>FedNova | x | y |\n', encoding="utf-8")
    bs.assemble(root, tmp_path / "src")
    text = (tmp_path / "src" / "notebooks" / "GLOSSARY.md").read_text(encoding="utf-8")
    assert text == "| []{#fednova}FedNova | x | y |\n"


def _bilingual_repo(tmp_path: Path) -> Path:
    """A two-notebook course with the real docs/ configuration and a Chinese edition of
    notebook 01 built by tools/translate.py (02 pending), to run Sphinx on."""
    translate = load("translate")
    root = tmp_path / "repo"
    en = root / "notebooks"
    (en / "zh").mkdir(parents=True)
    shutil.copytree(ROOT / "docs", root / "docs", ignore=shutil.ignore_patterns("*.md"))
    for page in ("api", "instructor"):
        (root / "docs" / f"{page}.md").write_text(f"# {page}\n\nA page of the course.\n",
                                                  encoding="utf-8")
    (root / "data").mkdir()
    (root / "data" / "README.md").write_text("# Data\n\nWhere the data come from.\n",
                                             encoding="utf-8")
    (root / "README.md").write_text("# Course\n\n[简体中文](README.zh-CN.md)\n\nA course on "
                                    "federated learning.\n\n## Data\n\nPublic data.\n",
                                    encoding="utf-8")
    (root / "README.zh-CN.md").write_text(
        "# 课程\n\n[English](README.md) · [数据](README.md#data) · "
        "[第一课](notebooks/zh/01_one.ipynb)\n", encoding="utf-8")
    (root / "pyproject.toml").write_text(
        '[project]\nname = "x"\nversion = "0"\n[project.urls]\n'
        'Repository = "https://github.com/example-org/course"\n', encoding="utf-8")
    (en / "GLOSSARY.md").write_text(
        "# Glossary\n\n| English | 中文 | definition |\n|---|---|---|\n"
        '| <a id="fedavg"></a>FedAvg | 联邦平均（FedAvg） | the weighted mean of the models |\n',
        encoding="utf-8")
    for name, title in (("01_one.ipynb", "One"), ("02_two.ipynb", "Two")):
        nb = new_notebook(cells=[
            new_markdown_cell(f"# {title}\n\n[**FedAvg**](GLOSSARY.md#fedavg) averages the "
                              "hospitals' models; see [notebook 02](02_two.ipynb)."),
            new_code_cell("import fedlearn as fl", outputs=[], execution_count=1)],
            metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                     "language": "python"},
                      "language_info": {"name": "python"}})
        for i, cell in enumerate(nb.cells):
            cell["id"] = f"c{i}"
        nbformat.write(colab.with_colab_cells(nb, "https://github.com/example-org/course",
                                              f"notebooks/{name}"), en / name)
    (en / "zh" / "PENDING").write_text("02_two.ipynb not translated yet\n", encoding="utf-8")
    translate.update(en / "01_one.ipynb")
    catalog = translate.load_catalog(translate.catalog_path(en / "01_one.ipynb"))
    catalog["cells"]["colab-badge"]["zh"] = catalog["cells"]["colab-badge"]["en"]
    catalog["cells"]["c0"]["zh"] = ("# 一\n\n[**联邦平均**](GLOSSARY.md#fedavg)（FedAvg）对各医院的"
                                    "模型取平均；见[笔记本 02](02_two.ipynb)。")
    translate.save_catalog(translate.catalog_path(en / "01_one.ipynb"), catalog)
    translate.build(en_dir=en)
    return root


def test_the_chinese_edition_builds_with_its_switch_and_glossary_links(tmp_path: Path) -> None:
    """Sphinx itself (warnings are errors) on an English + Chinese course: the zh page links to
    the shared glossary's row and to the English notebook not yet translated, and the language
    switch joins each page to its counterpart. MathJax is stood in for by an empty script (the
    browser test, tests/test_site.py, runs the real one)."""
    root = _bilingual_repo(tmp_path)
    mathjax = tmp_path / "build" / "cache" / "mathjax-static" / "mathjax"
    mathjax.mkdir(parents=True)
    (mathjax / f".version-{bs.MATHJAX_VERSION}").write_text("", encoding="utf-8")
    (mathjax / "tex-mml-chtml.js").write_text("", encoding="utf-8")
    out = bs.build(root, tmp_path / "build", quiet=True)
    zh = (out / "notebooks" / "zh" / "01_one.html").read_text(encoding="utf-8")
    en = (out / "notebooks" / "01_one.html").read_text(encoding="utf-8")
    glossary = (out / "notebooks" / "GLOSSARY.html").read_text(encoding="utf-8")
    assert 'href="../GLOSSARY.html#fedavg"' in zh and 'id="fedavg"' in glossary
    assert 'href="../02_two.html"' in zh  # 02 is pending: its English page
    assert re.search(r'<a class="course-language" lang="en" href="\.\./01_one\.html">', zh)
    assert re.search(r'<a class="course-language" lang="zh" href="zh/01_one\.html">', en)
    assert '<span class="course-language current" lang="zh">' in zh
    assert "<strong>联邦平均</strong></span></a>（FedAvg）" in zh
    assert "/blob/main/notebooks/zh/01_one.ipynb" in zh  # the Colab badge opens the zh notebook
    assert 'src="../../_images/colab-badge.svg"' in zh  # served by the site
    home = (out / "README.zh-CN.html").read_text(encoding="utf-8")
    index = (out / "index.html").read_text(encoding="utf-8")
    assert 'href="README.zh-CN.html"' in index and 'href="index.html#data"' in home
    assert re.search(r'<a class="course-language" lang="en" href="index\.html">', home)
    assert re.search(r'<a class="course-language" lang="zh" href="README\.zh-CN\.html">', index)
