"""Make student copies of the course notebooks: solutions out, outputs cleared.

The instructor notebooks in ``notebooks/`` are complete and executed by the test suite, so they
can never drift out of date. Students get a copy made from them mechanically:

* a cell tagged ``solution`` becomes an exercise cell tagged ``exercise-answer`` at the same place:
  every function keeps its signature and docstring and its body becomes ``raise
  NotImplementedError()``, so a learner who runs the self-check below it is told to write the
  body (not ``NameError``); answers that are not functions, and markdown answers, become the
  same stubs nbgrader uses. The rules live in ``tools/exercise_cells.py``, which the nbgrader
  pack (``tools/make_classroom.py``) uses too, so the two student copies cannot drift;
* every output and execution count is cleared, so no answer leaks through a printed result.

Usage::

    python tools/make_student.py notebooks/ build/student/    # write student copies
    python tools/make_student.py --check build/student/       # validate copies already written

Every copy is checked with :func:`nbformat.validate` before it is written.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
from pathlib import Path

import nbformat
from nbformat import NotebookNode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import exercise_cells  # noqa: E402  (tools/ is a folder of scripts, not a package)

SOLUTION_TAG = exercise_cells.SOLUTION_TAG
ANSWER_TAG = "exercise-answer"
# Files beside the notebooks that students need too (authoring notes such as CONVENTIONS.md stay).
STUDENT_FILES = ("GLOSSARY.md",)


def _tags(cell: NotebookNode) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _exercise_for(solution: NotebookNode) -> NotebookNode:
    """The cell a student gets where ``solution`` was: same kind, same id, stubbed source.

    Reusing the solution's id keeps rebuilds byte-identical (new random ids would make every
    build a diff); the ``solution`` tag becomes ``exercise-answer``, other tags stay.
    """
    cell = copy.deepcopy(solution)
    cell.source = exercise_cells.student_source(solution)
    cell.metadata["tags"] = [ANSWER_TAG] + [t for t in _tags(solution) if t != SOLUTION_TAG]
    if cell.cell_type == "code":
        cell.outputs = []
        cell.execution_count = None
    return cell


def make_student_copy(nb: NotebookNode) -> NotebookNode:
    """Return a student copy of ``nb``; ``nb`` itself is left unchanged.

    Every cell tagged ``solution`` is replaced in place by its exercise cell (see
    :func:`exercise_cells.student_source`), tagged ``exercise-answer``. All code outputs and
    execution counts are cleared. The result is validated with :func:`nbformat.validate`
    (raises ``nbformat.ValidationError`` if the source notebook was already malformed).
    """
    student = copy.deepcopy(nb)
    cells: list[NotebookNode] = []
    for cell in student.cells:
        if SOLUTION_TAG in _tags(cell):
            cells.append(_exercise_for(cell))
            continue
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cells.append(cell)
    student.cells = cells
    nbformat.validate(student)
    return student


def check_student_notebook(nb: NotebookNode) -> list[str]:
    """Problems that make ``nb`` unfit to hand to a student (empty list when fine).

    Runs the nbformat schema validation and checks that no solution or output survived.
    """
    problems: list[str] = []
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as err:
        problems.append(f"invalid notebook: {err.message}")
    for index, cell in enumerate(nb.cells):
        if SOLUTION_TAG in _tags(cell):
            problems.append(f"cell {index} is still tagged {SOLUTION_TAG!r}")
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count")):
            problems.append(f"cell {index} still has outputs")
        if exercise_cells.BEGIN in cell.source or exercise_cells.END in cell.source:
            problems.append(f"cell {index} still has a solution region marker")
    return problems


def convert_dir(src: Path, dst: Path) -> list[Path]:
    """Write a student copy of every ``src/*.ipynb`` into ``dst``; returns the written paths.

    The glossary next to the notebooks is copied unchanged because the notebooks link to it.
    """
    dst.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for path in sorted(src.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        out = dst / path.name
        nbformat.write(make_student_copy(nb), out)
        written.append(out)
    for name in STUDENT_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)
    return written


def check_dir(directory: Path) -> dict[Path, list[str]]:
    """Re-read every notebook in ``directory`` from disk and check it; maps path -> problems."""
    report: dict[Path, list[str]] = {}
    for path in sorted(directory.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        report[path] = check_student_notebook(nb)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="folder of instructor notebooks (or, with --check,"
                        " the folder of student notebooks to validate)")
    parser.add_argument("dst", type=Path, nargs="?", help="folder to write student copies into")
    parser.add_argument("--check", action="store_true",
                        help="validate the student notebooks in SRC instead of writing copies")
    args = parser.parse_args(argv)

    if not args.src.is_dir():
        parser.error(f"{args.src} is not a folder")

    if args.check:
        report = check_dir(args.src)
        if not report:
            print(f"no notebooks yet in {args.src}: nothing to check")
            return 0
        failed = False
        for path, problems in report.items():
            for problem in problems:
                print(f"{path}: {problem}", file=sys.stderr)
            failed = failed or bool(problems)
            print(f"{path}: {'FAILED' if problems else 'ok'}")
        return 1 if failed else 0

    if args.dst is None:
        parser.error("DST is required unless --check is given")
    written = convert_dir(args.src, args.dst)
    if not written:
        print(f"no notebooks yet in {args.src}: nothing to convert")
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
