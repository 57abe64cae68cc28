"""Tests for tools/make_classroom.py: the nbgrader pack, and autograding it for real.

The autograde test runs nbgrader on two notebooks (01 and 02, the quickest) with nbgrader's
execution timeout set: the reference solutions must get full marks on every autograded cell and
the blank release copies zero on every one. It also checks that nbgrader's release and ``make
student`` give the same cells, since one set of tags drives both.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tests.tools_loader import load

mc = load("make_classroom")
ms = load("make_student")
ec = load("exercise_cells")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
# Seconds per cell when nbgrader executes; generous for a busy 2-core CI machine.
AUTOGRADE_TIMEOUT = 600


def _tagged(cell, *tags):
    cell.metadata["tags"] = list(tags)
    return cell


def _notebook():
    return new_notebook(cells=[
        new_markdown_cell("# Demo\n\nExercise: write `double`."),
        _tagged(new_code_cell('def double(x):\n    """Twice x."""\n    return 2 * x'), "solution"),
        new_code_cell("nb99.check_double(double)"),
        _tagged(new_markdown_cell("**Answer.** because"), "solution"),
        _tagged(new_code_cell("assert double(2) == 4"), "self-check", "points-2"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                "language": "python"}})


def test_source_notebook_marks_solutions_and_grades_self_checks() -> None:
    nb = _notebook()
    src = mc.nbgrader_source(nb)
    meta = [c.metadata.get("nbgrader") for c in src.cells]
    assert meta[0] is None
    assert meta[1]["solution"] and not meta[1]["grade"]
    assert src.cells[1].source == ('def double(x):\n    """Twice x."""\n    ### BEGIN SOLUTION\n'
                                   "    return 2 * x\n    ### END SOLUTION")
    assert meta[2]["grade"] and meta[2]["locked"] and meta[2]["points"] == 1
    assert meta[3]["solution"] and meta[3]["grade"] and meta[3]["points"] == mc.MANUAL_POINTS
    assert meta[4]["points"] == 2
    ids = [m["grade_id"] for m in meta if m]
    assert len(ids) == len(set(ids))
    assert "nbgrader" not in nb.cells[1].metadata  # the input is not modified


def test_unknown_notebook_prefix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(mc.ClassroomError, match="--only 99"):
        mc.select(NOTEBOOKS, ["99"])
    # a number names that notebook only, not its appendix; the appendix by its own name
    assert [p.stem for p in mc.select(NOTEBOOKS, ["01"])] == ["01_what_is_federated_learning"]
    assert [p.stem[:3] for p in mc.select(NOTEBOOKS, ["01b"])] == ["01b"]


def _submit(course: Path, student: str, name: str, folder: str) -> None:
    target = course / "submitted" / student / name
    target.mkdir(parents=True)
    for path in (course / folder / name).iterdir():
        shutil.copyfile(path, target / path.name)


@pytest.mark.slow
@pytest.mark.realdata
def test_autograde_reference_full_marks_blank_zero(tmp_path: Path) -> None:
    if not os.environ.get("FEDLEARN_DATA_DIR"):
        pytest.skip("needs FEDLEARN_DATA_DIR (the notebooks load the real data sets)")
    from nbgrader.api import Gradebook

    course = tmp_path / "classroom"
    names = mc.make_course(NOTEBOOKS, course, only=["01", "02"], timeout=AUTOGRADE_TIMEOUT)
    assert names == ["01_what_is_federated_learning", "02_local_sgd"]
    assert f"c.Execute.timeout = {AUTOGRADE_TIMEOUT}" in (course / "nbgrader_config.py").read_text()

    for name in names:
        # One set of tags: nbgrader's release and `make student` give the same cells.
        released = nbformat.read(course / "release" / name / f"{name}.ipynb", as_version=4)
        student = ms.make_student_copy(nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4))
        assert [c.source for c in released.cells] == [c.source for c in student.cells], name
        # Reference: the instructor's source (solutions in place); blank: the release as is.
        _submit(course, "reference", name, "source")
        _submit(course, "blank", name, "release")
        # Kernels import this checkout's fedlearn (PYTHONPATH is inherited).
        mc._nbgrader(course, "autograde", name, "--force")

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for name in names:
            for student, expected in (("reference", "max"), ("blank", 0.0)):
                nb = gb.find_submission_notebook(name, name, student)
                auto = [g for g in nb.grades if g.cell_type == "code"]
                assert auto, f"{name}: no autograded cells"
                for grade in auto:
                    want = grade.max_score if expected == "max" else 0.0
                    assert grade.auto_score == want, (
                        f"{student}/{name} cell {grade.name}: {grade.auto_score} of "
                        f"{grade.max_score}, expected {want}")
