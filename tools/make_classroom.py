"""Make an nbgrader course (the classroom pack) from the course notebooks.

``make classroom`` runs this. For every notebook it writes an nbgrader *source* assignment,
named after the notebook, in which

* every ``solution`` cell is an nbgrader solution cell, its answer wrapped in ``### BEGIN
  SOLUTION`` / ``### END SOLUTION`` so that functions keep their signature and docstring (the
  rules are in ``tools/exercise_cells.py``, shared with ``make student``); a markdown answer is
  a manually graded answer;
* every self-check cell (a call to a ``fedlearn.exercises`` check) is a locked, autograded test
  cell worth its ``points-N`` tag (default 1);

and then runs ``nbgrader generate_assignment`` to produce the *release* versions students get.
The course folder holds an ``nbgrader_config.py`` with the stubs and the execution timeout, so
``nbgrader autograde`` run there uses the same settings.

Usage::

    python tools/make_classroom.py notebooks/ build/classroom/
    python tools/make_classroom.py notebooks/ build/classroom/ --only 01 02 --timeout 600

Then, in ``build/classroom/``: ``nbgrader autograde ASSIGNMENT`` after collecting submissions
into ``submitted/STUDENT/ASSIGNMENT/``; see ``docs/instructor.md``.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
from nbformat import NotebookNode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import exercise_cells  # noqa: E402  (tools/ is a folder of scripts, not a package)

COURSE_ID = "fedlearn"
# Points for a markdown answer, graded by hand in nbgrader's formgrader.
MANUAL_POINTS = 1
# Files beside the notebooks that every assignment ships (the notebooks link to the glossary).
EXTRA_FILES = ("GLOSSARY.md",)
NBGRADER_SCHEMA = 3

CONFIG_TEMPLATE = '''\
# nbgrader configuration of the fedlearn classroom pack, written by tools/make_classroom.py.
# The stubs are the ones `make student` writes (tools/exercise_cells.py), so the nbgrader
# release and the plain student copies agree cell for cell.
import os

c = get_config()  # noqa: F821 (nbgrader provides it)
c.CourseDirectory.course_id = {course_id!r}
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.ClearSolutions.code_stub = {{"python": {code_stub!r}}}
c.ClearSolutions.text_stub = {text_stub!r}
c.ClearSolutions.begin_solution_delimeter = {begin!r}
c.ClearSolutions.end_solution_delimeter = {end!r}
# Seconds per cell when autograding; a cell that runs longer fails (and scores zero).
c.Execute.timeout = {timeout}
'''


class ClassroomError(RuntimeError):
    """nbgrader refused a notebook or an assignment; the message carries its log."""


def _grade_id(cell: NotebookNode, index: int, kind: str) -> str:
    return f"{kind}-{cell.get('id') or index}"


def nbgrader_source(nb: NotebookNode) -> NotebookNode:
    """The instructor (source) version of ``nb`` with nbgrader metadata on exercise cells."""
    out = copy.deepcopy(nb)
    for index, cell in enumerate(out.cells):
        if exercise_cells.is_solution(cell):
            meta = {"solution": True, "locked": False, "task": False,
                    "schema_version": NBGRADER_SCHEMA, "grade_id": _grade_id(cell, index, "answer")}
            if cell.cell_type == "code":
                marked = exercise_cells.mark_solution_regions(cell.source)
                cell.source = marked if exercise_cells.BEGIN in marked else cell.source
                meta["grade"] = False
            else:
                meta.update(grade=True, points=MANUAL_POINTS)
            cell.metadata["nbgrader"] = meta
        elif exercise_cells.is_self_check(cell):
            cell.metadata["nbgrader"] = {
                "grade": True, "solution": False, "locked": True, "task": False,
                "points": exercise_cells.points(cell), "schema_version": NBGRADER_SCHEMA,
                "grade_id": _grade_id(cell, index, "check"),
            }
    nbformat.validate(out)
    return out


def _nbgrader(course: Path, *args: str) -> None:
    bindir = Path(sys.executable).parent
    exe = bindir / "nbgrader"
    cmd = [str(exe) if exe.is_file() else "nbgrader", *args]
    # nbgrader runs `alembic` (its database migrations) by name: put this venv's bin/ first.
    env = dict(os.environ, PATH=os.pathsep.join([str(bindir), os.environ.get("PATH", "")]))
    result = subprocess.run(cmd, cwd=course, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise ClassroomError(f"`{' '.join(args)}` failed in {course}:\n{result.stdout}\n"
                             f"{result.stderr}")


def select(src: Path, only: list[str] | None) -> list[Path]:
    """The notebooks of ``src`` to include: all, or those ``only`` names.

    A name is a notebook's number (``01`` is ``01_...`` and not the appendix ``01b_...``) or
    the start of its file name beyond the number (``01b_read``).
    """
    notebooks = sorted(src.glob("*.ipynb"))

    def named(p: Path, prefix: str) -> bool:
        number = p.stem.split("_", 1)[0]
        return number == prefix or (len(prefix) > len(number) and p.stem.startswith(prefix))

    if only:
        chosen = [p for p in notebooks if any(named(p, prefix) for prefix in only)]
        unknown = [o for o in only if not any(named(p, o) for p in notebooks)]
        if unknown:
            raise ClassroomError(f"--only {' '.join(unknown)}: no notebook in {src} starts with "
                                 f"that; available: {', '.join(p.stem for p in notebooks)}")
        return chosen
    return notebooks


def make_course(src: Path, course: Path, only: list[str] | None = None,
                timeout: int = 600) -> list[str]:
    """Write the nbgrader course into ``course`` and release every assignment; returns names."""
    notebooks = select(src, only)
    course.mkdir(parents=True, exist_ok=True)
    (course / "nbgrader_config.py").write_text(CONFIG_TEMPLATE.format(
        course_id=COURSE_ID, code_stub=exercise_cells.CODE_STUB,
        text_stub=exercise_cells.TEXT_STUB, begin=exercise_cells.BEGIN.removeprefix("### "),
        end=exercise_cells.END.removeprefix("### "), timeout=int(timeout)), encoding="utf-8")
    names = []
    for path in notebooks:
        name = path.stem
        folder = course / "source" / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        nb = nbformat.read(path, as_version=4)
        nbformat.write(nbgrader_source(nb), folder / path.name)
        for extra in EXTRA_FILES:
            if (src / extra).is_file():
                shutil.copyfile(src / extra, folder / extra)
        _nbgrader(course, "generate_assignment", name, "--force")
        names.append(name)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="folder of instructor notebooks")
    parser.add_argument("course", type=Path, help="nbgrader course folder to write")
    parser.add_argument("--only", nargs="+", metavar="PREFIX",
                        help="only the notebooks whose file name starts with PREFIX (e.g. 01 02)")
    parser.add_argument("--timeout", type=int, default=600,
                        help="seconds per cell when nbgrader executes a notebook (default 600)")
    args = parser.parse_args(argv)
    if not args.src.is_dir():
        parser.error(f"{args.src} is not a folder")
    try:
        names = make_course(args.src, args.course, args.only, args.timeout)
    except ClassroomError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not names:
        print(f"no notebooks in {args.src}: nothing to release")
    for name in names:
        print(f"released {args.course / 'release' / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
