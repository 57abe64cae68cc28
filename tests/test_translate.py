"""Tests for tools/translate.py: the Chinese edition's sync check, its build and zh/PENDING.

Each failure kind of the check is triggered on a small synthetic notebook and catalog in a
temporary ``notebooks/`` folder (with its own glossary), the good case passes, and the
repository's own catalogs and ``notebooks/zh/`` are checked as ``make zh-check`` checks them.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from tests.tools_loader import load

tr = load("translate")
colab = load("colab")
make_student = load("make_student")

ROOT = Path(__file__).resolve().parents[1]
URL = "https://github.com/example-org/fedlearn-course"

GLOSSARY = """\
| English | 中文 | definition |
|---|---|---|
| <a id="federated-learning"></a>federated learning (FL) | 联邦学习 | x |
| <a id="fedavg"></a>FedAvg | 联邦平均（FedAvg） | x |
| <a id="secure-aggregation"></a>secure aggregation | 安全聚合 | x |
"""

INTRO_EN = """\
# 01 · What FL is

This notebook shows what [**federated learning**](GLOSSARY.md#federated-learning) (FL) does:
each hospital trains on its own patients and only the model update leaves the building. The
objective is $F(w)=\\sum_k \\frac{n_k}{n}F_k(w)$ and the call is `fl.run(strategy, clients)`.

$$
w_{t+1} = \\sum_k \\frac{n_k}{n} w_k
$$

Read [McMahan et al. (2017)](https://arxiv.org/abs/1602.05629), then
[notebook 02](02_b.ipynb), the [conventions](CONVENTIONS.md) and
[the benchmark](../benchmarks/bench.py)."""

INTRO_ZH = """\
# 01 · 什么是 FL

本笔记本展示[**联邦学习**](GLOSSARY.md#federated-learning)（federated learning，FL）的做法：
每家医院只用自己的患者训练，离开医院的只有模型更新。目标函数是
$F(w)=\\sum_k \\frac{n_k}{n}F_k(w)$，调用方式是 `fl.run(strategy, clients)`。

$$
w_{t+1} = \\sum_k \\frac{n_k}{n} w_k
$$

请阅读 [McMahan 等人（2017）](https://arxiv.org/abs/1602.05629)，然后阅读
[笔记本 02](02_b.ipynb)、[写作约定](CONVENTIONS.md)和[基准测试](../benchmarks/bench.py)。"""

NOTICE_EN = ("**What to notice:** FedAvg with secure aggregation gives the same model as "
             "FedAvg in the clear; the server only ever sees the sum of the updates.")
NOTICE_ZH = ("**注意：** 使用安全聚合的 FedAvg 与明文 FedAvg 得到同一个模型；服务器只能看到"
             "各方更新之和。")
REFS_EN = ("## References\n\n* McMahan et al. Communication-efficient learning of deep networks "
           "from decentralized data. <https://arxiv.org/abs/1602.05629>\n"
           "* Kairouz, P. et al. (2021). Advances and open problems in federated learning and "
           "secure aggregation. <https://arxiv.org/abs/1912.04977>\n\n"
           "Run `python -m fedlearn.flower run --nodes 3\n--rounds 2` to see it.")
REFS_ZH = ("## 参考文献\n\n* McMahan et al. Communication-efficient learning of deep networks "
           "from decentralized data. <https://arxiv.org/abs/1602.05629>\n"
           "* Kairouz, P. et al. (2021). Advances and open problems in federated learning and "
           "secure aggregation. <https://arxiv.org/abs/1912.04977>\n\n"
           "运行 `python -m fedlearn.flower run --nodes 3 --rounds 2` 即可看到。")

SETUP = """\
import os

import numpy as np

import fedlearn as fl
from fedlearn.exercises import nb01

SEED = 0
fl.seed_everything(SEED)"""


def _cell(make, source: str, cid: str, **extra):
    cell = make(source, **extra)
    cell["id"] = cid
    return cell


def _english(name: str, cells: list) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})
    return colab.with_colab_cells(nb, URL, f"notebooks/{name}")


def _notebook_01() -> nbformat.NotebookNode:
    setup = _cell(new_code_cell, SETUP, "setup", execution_count=2,
                  outputs=[new_output("stream", name="stdout", text="ready\n")])
    setup.metadata["execution"] = {"iopub.execute_input": "2026-12-01T13:03:18.467954Z"}
    answer = _cell(new_code_cell, "def answer():\n    \"\"\"Why.\"\"\"\n    return 42",
                   "answer", execution_count=3,
                   outputs=[new_output("execute_result", data={"text/plain": "42"},
                                       execution_count=3)])
    answer.metadata["tags"] = ["solution"]
    return _english("01_a.ipynb", [
        _cell(new_markdown_cell, INTRO_EN, "intro"),
        setup,
        _cell(new_markdown_cell, NOTICE_EN, "notice"),
        answer,
        _cell(new_markdown_cell, REFS_EN, "refs"),
    ])


@pytest.fixture()
def course(tmp_path: Path) -> Path:
    """A tiny course: notebooks/01_a.ipynb translated, 02_b.ipynb pending, a glossary."""
    (tmp_path / "pyproject.toml").write_text(f'[project.urls]\nRepository = "{URL}"\n',
                                             encoding="utf-8")
    en = tmp_path / "notebooks"
    (en / "zh").mkdir(parents=True)
    (en / "GLOSSARY.md").write_text(GLOSSARY, encoding="utf-8")
    nbformat.write(_notebook_01(), en / "01_a.ipynb")
    nbformat.write(_english("02_b.ipynb", [_cell(new_markdown_cell, "# 02 · Local SGD", "t2"),
                                           _cell(new_code_cell, "import fedlearn as fl", "c2")]),
                   en / "02_b.ipynb")
    tr.update(en / "01_a.ipynb")
    catalog = tr.load_catalog(tr.catalog_path(en / "01_a.ipynb"))
    badge = catalog["cells"]["colab-badge"]
    badge["zh"] = badge["en"]
    for cid, zh in (("intro", INTRO_ZH), ("notice", NOTICE_ZH), ("refs", REFS_ZH)):
        catalog["cells"][cid]["zh"] = zh
    tr.save_catalog(tr.catalog_path(en / "01_a.ipynb"), catalog)
    (en / "zh" / "PENDING").write_text("# comment\n02_b.ipynb not translated yet\n",
                                       encoding="utf-8")
    return en


def _terms(en: Path):
    return tr.load_glossary(en / "GLOSSARY.md")


def _set_zh(en: Path, cid: str, zh: str) -> None:
    path = tr.catalog_path(en / "01_a.ipynb")
    catalog = tr.load_catalog(path)
    catalog["cells"][cid]["zh"] = zh
    tr.save_catalog(path, catalog)


def _problems(en: Path) -> list[str]:
    return tr.check_notebook(en / "01_a.ipynb", _terms(en))


def _edit_english(en: Path, cid: str, change) -> None:
    path = en / "01_a.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.id == cid)
    change(cell)
    nbformat.write(nb, path)


# --- the catalog check ------------------------------------------------------------------------

def test_a_faithful_translation_passes(course: Path) -> None:
    assert _problems(course) == []
    assert tr.is_complete(course / "01_a.ipynb")


def test_a_changed_english_cell_is_stale_and_named(course: Path) -> None:
    def edit(cell):
        cell.source = cell.source.replace("only the model update", "only an update")
    _edit_english(course, "intro", edit)
    problems = _problems(course)
    assert problems[0].startswith("01_a.ipynb cell 2 (id intro): the English changed")
    assert "stale en_sha256" in problems[0]
    assert any("+each hospital trains on its own patients and only an update" in p
               for p in problems), "the message shows the changed English line"
    assert not tr.is_complete(course / "01_a.ipynb")


def test_a_cell_without_entry_or_with_empty_zh_fails(course: Path) -> None:
    _edit_english(course, "notice", lambda c: None)
    path = tr.catalog_path(course / "01_a.ipynb")
    catalog = tr.load_catalog(path)
    del catalog["cells"]["notice"]
    catalog["cells"]["refs"]["zh"] = ""
    tr.save_catalog(path, catalog)
    problems = _problems(course)
    assert "01_a.ipynb cell 4 (id notice): no translation" in problems[0]
    assert problems[1] == "01_a.ipynb cell 6 (id refs): empty translation"


def test_a_notebook_without_catalog_says_how_to_start_one(course: Path) -> None:
    (problem,) = tr.check_notebook(course / "02_b.ipynb", _terms(course))
    assert "no catalog" in problem and "translate.py update notebooks/02_b.ipynb" in problem


@pytest.mark.parametrize("old, new, lost", [
    ("\\frac{n_k}{n}F_k(w)$", "\\frac{n_k}{N}F_k(w)$", "math:$F(w)"),
    ("`fl.run(strategy, clients)`", "`fl.run(strategy)`", "code:`fl.run(strategy, clients)`"),
    ("https://arxiv.org/abs/1602.05629)", "https://arxiv.org/abs/1602.05629v2)",
     "url:https://arxiv.org/abs/1602.05629"),
    ("w_{t+1} =", "w_{t} =", "math:$$ w_{t+1}"),
])
def test_maths_code_and_urls_must_be_kept_byte_for_byte(course: Path, old: str, new: str,
                                                        lost: str) -> None:
    assert old in INTRO_ZH
    _set_zh(course, "intro", INTRO_ZH.replace(old, new))
    problems = _problems(course)
    assert any(f"(id intro): the translation lost or changed '{lost}" in p for p in problems)
    assert any("the translation adds" in p for p in problems)


def test_rewrapping_a_maths_span_is_not_a_change(course: Path) -> None:
    _set_zh(course, "intro", INTRO_ZH.replace("w_{t+1} = \\sum_k", "w_{t+1} =\n  \\sum_k"))
    assert _problems(course) == []


def test_an_english_cell_left_untranslated_fails(course: Path) -> None:
    _set_zh(course, "notice", NOTICE_EN)
    problems = _problems(course)
    assert any("(id notice): only 0% of its letters are Chinese" in p for p in problems)
    assert any("(id notice): an untranslated line" in p for p in problems)


def test_a_mostly_english_translation_has_too_low_a_cjk_share(course: Path) -> None:
    _set_zh(course, "notice", "**注意：** " + NOTICE_EN[len("**What to notice:** "):] + " 安全聚合")
    (problem,) = _problems(course)
    assert "(id notice): only" in problem and "at least 30%" in problem


def test_a_line_with_a_relative_link_is_not_exempt_from_being_chinese(course: Path) -> None:
    """Only reference lines (with a URL) keep their language; a relative link (the glossary,
    the conventions) does not hide an English line (before the fix every line with any link
    was skipped by both rules)."""
    english = ("\nThen read the writing conventions that every notebook of this course follows: "
               "[conventions](CONVENTIONS.md)")
    _set_zh(course, "intro", INTRO_ZH.replace("、[写作约定](CONVENTIONS.md)", "") + english)
    (problem,) = _problems(course)
    assert "(id intro): an untranslated line: 'Then read the writing conventions" in problem


def test_references_keep_their_english_titles_but_prose_around_them_does_not(course: Path) -> None:
    """A cited title (a line with its URL) stays English, glossary terms and all (REFS_ZH passes
    in the good case); a prose line after it does not."""
    assert _problems(course) == []
    _set_zh(course, "refs", REFS_ZH + "\n\nEvery one of these articles is worth reading in full "
            "before the exercises.")
    assert any("(id refs): an untranslated line: 'Every one of these articles" in p
               for p in _problems(course))


def test_inline_code_over_a_line_break_is_one_span(course: Path) -> None:
    """CommonMark lets inline code run over a line break; the span is kept as a whole."""
    spans = tr.protected_spans(REFS_EN)
    assert spans["code:`python -m fedlearn.flower run --nodes 3 --rounds 2`"] == 1
    _set_zh(course, "refs", REFS_ZH.replace("--rounds 2", "--rounds 3"))
    problems = _problems(course)
    assert any("lost or changed 'code:`python -m fedlearn.flower run --nodes 3 --rounds 2`'" in p
               for p in problems)


def test_a_glossary_term_rendered_differently_fails(course: Path) -> None:
    _set_zh(course, "intro", INTRO_ZH.replace("[**联邦学习**]", "[**联合学习**]"))
    (problem,) = _problems(course)
    assert problem == ("01_a.ipynb cell 2 (id intro): the link to #federated-learning should "
                       "read 联邦学习 (GLOSSARY.md), not '**联合学习**'")


def test_an_unlinked_glossary_term_must_use_its_rendering(course: Path) -> None:
    _set_zh(course, "notice", NOTICE_ZH.replace("安全聚合", "安全汇总"))
    (problem,) = _problems(course)
    assert "'secure aggregation' is a glossary term: render it as 安全聚合" in problem


def test_a_lost_glossary_link_fails(course: Path) -> None:
    _set_zh(course, "intro", INTRO_ZH.replace("[**联邦学习**](GLOSSARY.md#federated-learning)",
                                              "**联邦学习**"))
    problems = _problems(course)
    assert any("(id intro): the glossary link to #federated-learning is missing" in p
               for p in problems)


def test_first_use_shows_the_english_in_parentheses(course: Path) -> None:
    _set_zh(course, "intro", INTRO_ZH.replace("（federated learning，FL）", "")
            .replace("什么是 FL", "什么是联邦学习"))
    (problem,) = _problems(course)
    assert "first use of 联邦学习: give the English in parentheses" in problem


# --- the build ----------------------------------------------------------------------------------

def _build(en: Path) -> nbformat.NotebookNode:
    return tr.build_notebook(en / "01_a.ipynb", built={"01_a.ipynb"}, repo_url=URL)


def test_build_copies_code_and_outputs_and_adds_one_line(course: Path) -> None:
    english = nbformat.read(course / "01_a.ipynb", as_version=4)
    zh = _build(course)
    assert [c.id for c in zh.cells] == [c.id for c in english.cells]
    assert [c.cell_type for c in zh.cells] == [c.cell_type for c in english.cells]
    extra = []
    for en_cell, zh_cell in zip(english.cells, zh.cells, strict=True):
        assert zh_cell.metadata == en_cell.metadata
        if en_cell.cell_type != "code":
            continue
        assert zh_cell.outputs == en_cell.outputs
        assert zh_cell.execution_count == en_cell.execution_count
        en_lines, zh_lines = en_cell.source.split("\n"), zh_cell.source.split("\n")
        extra += [ln for ln in zh_lines if ln not in en_lines]
        assert [ln for ln in zh_lines if ln in en_lines] == en_lines
    assert extra == ['fl.exercises.set_language("zh")']
    setup = next(c for c in zh.cells if c.id == "setup")
    assert setup.source.split("\n")[7:9] == ['fl.exercises.set_language("zh")', "SEED = 0"]
    install = next(c for c in zh.cells if colab.INSTALL_TAG in c.metadata.get("tags", []))
    assert install.source == next(c for c in english.cells if c.id == install.id).source
    assert zh.metadata["kernelspec"] == english.metadata["kernelspec"]
    assert zh.metadata[tr.EDITION_KEY]["language"] == "zh-CN"
    assert set(zh.metadata) == set(english.metadata) | {tr.EDITION_KEY}


def test_build_writes_the_catalog_with_links_for_the_zh_folder(course: Path) -> None:
    zh = _build(course)
    intro = next(c for c in zh.cells if c.id == "intro").source
    assert "](../GLOSSARY.md#federated-learning)" in intro
    assert "](../CONVENTIONS.md)" in intro and "](../../benchmarks/bench.py)" in intro
    assert "](../02_b.ipynb)" in intro  # 02 has no Chinese edition (not in `built`)
    assert "(https://arxiv.org/abs/1602.05629)" in intro
    assert tr.localise_links(INTRO_ZH, set()) == intro
    both = tr.build_notebook(course / "01_a.ipynb", built={"01_a.ipynb", "02_b.ipynb"},
                             repo_url=URL)
    assert "](02_b.ipynb)" in next(c for c in both.cells if c.id == "intro").source
    assert zh.cells[0].source == colab.badge_source(URL, "notebooks/zh/01_a.ipynb")


@pytest.mark.parametrize("target, built, expected", [
    ("GLOSSARY.md#fedavg", set(), "../GLOSSARY.md#fedavg"),
    ("CONVENTIONS.md", set(), "../CONVENTIONS.md"),
    ("../benchmarks/results/x.json", set(), "../../benchmarks/results/x.json"),
    ("03_c.ipynb", {"03_c.ipynb"}, "03_c.ipynb"),
    ("03_c.ipynb#exercises", set(), "../03_c.ipynb#exercises"),
    ("https://example.org/a.ipynb", set(), "https://example.org/a.ipynb"),
    ("#exercises", set(), "#exercises"),
    ("mailto:x@example.org", set(), "mailto:x@example.org"),
])
def test_relocate(target: str, built: set[str], expected: str) -> None:
    assert tr.relocate(target, built) == expected


def test_links_inside_code_and_maths_are_not_rewritten() -> None:
    text = ("See `[a](GLOSSARY.md)` and ![f](fig.png) and <img src=\"fig.png\">"
            "\n\n[r]: CONVENTIONS.md")
    out = tr.localise_links(text, set())
    assert out == ("See `[a](GLOSSARY.md)` and ![f](../fig.png) and <img src=\"../fig.png\">"
                   "\n\n[r]: ../CONVENTIONS.md")


def test_language_line_goes_after_a_parenthesised_import_block() -> None:
    source = "import fedlearn as fl\nfrom fedlearn.x import (\n    a,\n    b,\n)\nSEED = 0"
    assert tr.with_language_line(source).split("\n")[5:] == [
        'fl.exercises.set_language("zh")', "SEED = 0"]
    assert tr.with_language_line("import fedlearn.survival as sv") is None


def test_build_is_byte_reproducible_and_colab_leaves_it_alone(course: Path) -> None:
    (course / "zh" / "PENDING").unlink()
    _translate_02(course)
    first = tr.build(en_dir=course, repo_url=URL)
    assert [p.name for p in first] == ["01_a.ipynb", "02_b.ipynb"]
    data = (course / "zh" / "01_a.ipynb").read_bytes()
    assert tr.build(en_dir=course, repo_url=URL) == []
    assert (course / "zh" / "01_a.ipynb").read_bytes() == data
    assert tr.notebook_bytes(_build_all(course)) == data
    zh = sorted((course / "zh").glob("*.ipynb"))
    assert colab.stale_notebooks(zh, URL, course.parent) == []


def _build_all(en: Path) -> nbformat.NotebookNode:
    return tr.build_notebook(en / "01_a.ipynb", built={"01_a.ipynb", "02_b.ipynb"}, repo_url=URL)


def _translate_02(en: Path) -> None:
    tr.update(en / "02_b.ipynb")
    path = tr.catalog_path(en / "02_b.ipynb")
    catalog = tr.load_catalog(path)
    for entry in catalog["cells"].values():
        entry["zh"] = entry["en"].replace("Local SGD", "本地 SGD")
    tr.save_catalog(path, catalog)


def test_build_refuses_an_incomplete_catalog(course: Path) -> None:
    _set_zh(course, "notice", "")
    with pytest.raises(tr.TranslationError, match=r"01_a.ipynb cannot be built:\n.*id notice"):
        _build(course)
    with pytest.raises(tr.TranslationError, match="02_b.ipynb is listed in .*PENDING"):
        tr.build([course / "02_b.ipynb"], en_dir=course, repo_url=URL)


def test_student_copies_of_the_zh_edition_are_stubbed(course: Path) -> None:
    student = make_student.make_student_copy(_build(course))
    assert make_student.check_student_notebook(student) == []
    answer = next(c for c in student.cells if c.id == "answer")
    assert "NotImplementedError" in answer.source and not answer.outputs


# --- the edition check: committed notebooks/zh/ and PENDING -------------------------------------

def _edition(en: Path) -> dict[str, list[str]]:
    return tr.check_edition(en, _terms(en), repo_url=URL)


def test_the_edition_check_passes_after_build(course: Path) -> None:
    assert _edition(course) == {"01_a.ipynb": ["zh/01_a.ipynb: not built (run: make zh)"]}
    tr.build(en_dir=course, repo_url=URL)
    assert _edition(course) == {}


def _committed(en: Path, change) -> None:
    path = en / "zh" / "01_a.ipynb"
    nb = nbformat.read(path, as_version=4)
    change(nb)
    nbformat.write(nb, path)


@pytest.mark.parametrize("change, message", [
    (lambda nb: setattr(nb.cells[3], "source", nb.cells[3].source.replace("SEED = 0", "SEED = 1")),
     "zh/01_a.ipynb cell 3 (id setup): its code differs from the English notebook's"),
    (lambda nb: nb.cells[3].outputs[0].__setitem__("text", "other\n"),
     "zh/01_a.ipynb cell 3 (id setup): its outputs differ from the English notebook's"),
    (lambda nb: setattr(nb.cells[4], "source", "**注意：** 手改的译文"),
     "zh/01_a.ipynb cell 4 (id notice): its text is not the catalog's"),
    (lambda nb: nb.metadata.pop(tr.EDITION_KEY),
     "zh/01_a.ipynb: its notebook metadata differs"),
    (lambda nb: nb.cells.pop(4), "zh/01_a.ipynb: its cells are not the English notebook's"),
])
def test_a_committed_zh_notebook_that_differs_is_named_with_its_cell(course: Path, change,
                                                                     message: str) -> None:
    tr.build(en_dir=course, repo_url=URL)
    _committed(course, change)
    (problem,) = _edition(course)["01_a.ipynb"]
    assert problem.startswith(message) and problem.endswith("(run: make zh)")


def test_changed_english_outputs_make_the_zh_notebook_stale(course: Path) -> None:
    tr.build(en_dir=course, repo_url=URL)
    _edit_english(course, "setup", lambda c: c.outputs[0].__setitem__("text", "re-run\n"))
    (problem,) = _edition(course)["01_a.ipynb"]
    assert problem.startswith("zh/01_a.ipynb cell 3 (id setup): its outputs differ")


def test_a_notebook_neither_translated_nor_pending_fails(course: Path) -> None:
    (course / "zh" / "PENDING").write_text("", encoding="utf-8")
    tr.build([course / "01_a.ipynb"], en_dir=course, repo_url=URL)
    report = _edition(course)
    assert list(report) == ["02_b.ipynb"]
    assert "no catalog" in report["02_b.ipynb"][0] and "zh/PENDING" in report["02_b.ipynb"][0]


def test_a_pending_line_of_a_complete_catalog_fails(course: Path) -> None:
    tr.build(en_dir=course, repo_url=URL)
    _translate_02(course)
    (problem,) = _edition(course)["02_b.ipynb"]
    assert problem == ("02_b.ipynb: zh/PENDING lists it (not translated yet), but its catalog is "
                       "complete: remove the line, then make zh")


def test_a_partial_catalog_of_a_pending_notebook_is_fine(course: Path) -> None:
    tr.build(en_dir=course, repo_url=URL)
    tr.update(course / "02_b.ipynb")
    assert _edition(course) == {}


@pytest.mark.parametrize("text, message", [
    ("09_gone.ipynb reason\n", "'09_gone.ipynb' is not a notebook"),
    ("02_b.ipynb\n", "02_b.ipynb has no reason"),
    ("02_b.ipynb a\n02_b.ipynb b\n", "02_b.ipynb is listed twice"),
])
def test_a_malformed_pending_file_fails(course: Path, text: str, message: str) -> None:
    (course / "zh" / "PENDING").write_text(text, encoding="utf-8")
    assert any(message in p for p in _edition(course)["PENDING"])
    with pytest.raises(tr.TranslationError, match=message):
        tr.build(en_dir=course, repo_url=URL)


def test_a_zh_notebook_of_a_pending_or_deleted_notebook_fails_and_build_removes_it(
        course: Path) -> None:
    tr.build(en_dir=course, repo_url=URL)
    stray = course / "zh" / "02_b.ipynb"
    stray.write_bytes((course / "zh" / "01_a.ipynb").read_bytes())
    assert _edition(course) == {"02_b.ipynb": [
        "zh/02_b.ipynb: its English notebook is listed in zh/PENDING: delete it (make zh does)"]}
    assert tr.build(en_dir=course, repo_url=URL) == [stray] and not stray.exists()


# --- the repository -----------------------------------------------------------------------------

def test_the_repository_edition_is_in_sync() -> None:
    """What `make zh-check` checks: every catalog of a notebook not in notebooks/zh/PENDING
    passes the check and its committed notebooks/zh/ notebook is exactly what `make zh`
    writes; every other notebook is listed in PENDING with a reason, and no listed one is
    complete. Fix: translate, `make zh`, or follow the message."""
    report = tr.check_edition()
    assert not report, "\n".join(p for problems in report.values() for p in problems)
    for path in sorted(tr.CATALOG_DIR.glob("*.yaml")):
        tr.load_catalog(path)  # every committed catalog parses, pending ones too


def test_nbval_is_given_the_english_notebooks_not_the_zh_folder(tmp_path: Path) -> None:
    (tmp_path / "zh").mkdir()
    for path in (tmp_path / "01_a.ipynb", tmp_path / "zh" / "01_a.ipynb"):
        nbformat.write(new_notebook(), path)
    done = subprocess.run(["make", "-n", "-s", "notebooks", f"NOTEBOOK_DIR={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    nbval = [ln for ln in done.stdout.replace("\\\n", " ").splitlines() if "--nbval-lax" in ln]
    assert nbval and str(tmp_path / "01_a.ipynb") in nbval[0]
    assert "zh" not in nbval[0].replace(str(tmp_path), ""), nbval[0]


def test_the_edition_leaves_the_english_untouched(course: Path) -> None:
    before = (course / "01_a.ipynb").read_bytes()
    english = copy.deepcopy(nbformat.read(course / "01_a.ipynb", as_version=4))
    tr.build(en_dir=course, repo_url=URL)
    assert (course / "01_a.ipynb").read_bytes() == before
    assert nbformat.read(course / "01_a.ipynb", as_version=4) == english


def test_bold_that_does_not_close_after_chinese_punctuation_fails(course: Path) -> None:
    """The lead's structure rule, checked here with the rest: ``**注意：**使用`` renders no bold."""
    _set_zh(course, "notice", NOTICE_ZH.replace("**注意：** ", "**注意：**"))
    found = [p for p in _problems(course)
             if "(id notice): renders differently from the English: strong 0 (English 1)" in p]
    assert len(found) == 1, found  # once, not once per rule that calls the renderer
