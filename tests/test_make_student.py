"""Tests for tools/make_student.py on notebooks built in memory with nbformat."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

_TOOL = Path(__file__).resolve().parents[1] / "tools" / "make_student.py"


def _load_tool():
    # tools/ is a folder of scripts, not a package, so load the script by its path.
    spec = importlib.util.spec_from_file_location("make_student", _TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_student"] = module
    spec.loader.exec_module(module)
    return module


ms = _load_tool()


def _tagged(cell: NotebookNode, *tags: str) -> NotebookNode:
    cell.metadata["tags"] = list(tags)
    return cell


def _course_notebook() -> NotebookNode:
    """A small instructor notebook: intro, executed code, exercise, code and markdown solutions."""
    executed = new_code_cell(source="x = 2\nx * 21", execution_count=1)
    executed.outputs = [new_output("execute_result", data={"text/plain": "42"}, execution_count=1)]
    return new_notebook(
        cells=[
            new_markdown_cell("# FedAvg\nExercise: write the weighted mean."),
            executed,
            _tagged(new_code_cell("def weighted_mean(w, n):\n    return sum(w * n) / sum(n)"),
                    "solution"),
            _tagged(new_markdown_cell("**Answer:** the weights are the sample counts."),
                    "solution"),
            _tagged(new_code_cell("assert callable(weighted_mean)"), "check"),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}},
    )


def test_solutions_replaced_in_place_by_exercise_cells() -> None:
    nb = _course_notebook()
    student = ms.make_student_copy(nb)

    sources = [cell.source for cell in student.cells]
    assert not any("return sum(w * n)" in s for s in sources)
    assert not any("**Answer:**" in s for s in sources)
    placeholders = [c for c in student.cells if "exercise-answer" in c.metadata.get("tags", [])]
    assert [c.cell_type for c in placeholders] == ["code", "markdown"]
    # The exercise keeps its signature; its body is the stub nbgrader also writes.
    assert placeholders[0].source == ("def weighted_mean(w, n):\n    # YOUR CODE HERE\n"
                                      "    raise NotImplementedError()")
    assert placeholders[1].source == "YOUR ANSWER HERE"
    # Each stands exactly where its solution was.
    assert student.cells[2] is placeholders[0] and student.cells[3] is placeholders[1]


def test_self_check_finds_the_function_and_is_told_to_write_it() -> None:
    """The bug this replaces: the self-check saw NameError because the def was dropped."""
    student = ms.make_student_copy(_course_notebook())
    namespace: dict = {}
    exec(student.cells[2].source, namespace)  # noqa: S102 (running the student's cell)
    exec(student.cells[4].source, namespace)  # the check cell: the function exists
    with pytest.raises(NotImplementedError):
        namespace["weighted_mean"](1, 2)


def test_other_cells_kept_in_order() -> None:
    nb = _course_notebook()
    student = ms.make_student_copy(nb)

    assert [c.source for c in student.cells[:2]] == [nb.cells[0].source, nb.cells[1].source]
    assert student.cells[4].source == nb.cells[4].source
    assert student.cells[4].metadata["tags"] == ["check"]


def test_outputs_cleared_and_source_untouched() -> None:
    nb = _course_notebook()
    student = ms.make_student_copy(nb)

    for cell in student.cells:
        if cell.cell_type == "code":
            assert cell.outputs == []
            assert cell.execution_count is None
    # The instructor notebook passed in is not modified.
    assert nb.cells[1].outputs and nb.cells[1].execution_count == 1
    assert len(nb.cells) == 5


def test_result_validates_and_passes_check() -> None:
    student = ms.make_student_copy(_course_notebook())
    nbformat.validate(student)
    assert ms.check_student_notebook(student) == []


def test_placeholder_reuses_solution_id_so_builds_are_reproducible() -> None:
    nb = _course_notebook()
    first = ms.make_student_copy(nb)
    second = ms.make_student_copy(nb)
    assert first.cells[2].id == nb.cells[2].id
    assert first.cells[3].id == nb.cells[3].id
    assert nbformat.writes(first) == nbformat.writes(second)


def test_older_notebook_without_cell_ids_stays_valid() -> None:
    nb = _course_notebook()
    nb.nbformat_minor = 4
    for cell in nb.cells:
        del cell["id"]
    nbformat.validate(nb)

    student = ms.make_student_copy(nb)
    nbformat.validate(student)
    assert all("id" not in cell for cell in student.cells)


def test_check_flags_leftover_solution_and_outputs() -> None:
    nb = _course_notebook()
    problems = ms.check_student_notebook(nb)
    assert any("solution" in p for p in problems)
    assert any("outputs" in p for p in problems)


def test_cli_round_trip_on_disk(tmp_path: Path) -> None:
    src, dst = tmp_path / "notebooks", tmp_path / "student"
    src.mkdir()
    nbformat.write(_course_notebook(), src / "01_demo.ipynb")
    (src / "GLOSSARY.md").write_text("| term |\n", encoding="utf-8")
    (src / "CONVENTIONS.md").write_text("authoring notes\n", encoding="utf-8")

    assert ms.main([str(src), str(dst)]) == 0
    written = nbformat.read(dst / "01_demo.ipynb", as_version=4)
    nbformat.validate(written)
    assert len(written.cells) == 5
    assert (dst / "GLOSSARY.md").read_text(encoding="utf-8") == "| term |\n"
    assert not (dst / "CONVENTIONS.md").exists()
    assert ms.main(["--check", str(dst)]) == 0
    # The instructor notebook itself fails the student check.
    assert ms.main(["--check", str(src)]) == 1


def test_cli_empty_folder_is_not_an_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src, dst = tmp_path / "notebooks", tmp_path / "student"
    src.mkdir()
    assert ms.main([str(src), str(dst)]) == 0
    assert "no notebooks yet" in capsys.readouterr().out
    assert list(dst.iterdir()) == []


def test_cli_rejects_missing_source(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        ms.main([str(tmp_path / "absent"), str(tmp_path / "out")])
