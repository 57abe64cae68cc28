"""The course's exercise cells: which cell is what, and what a student gets in its place.

One set of cell tags drives both the student copies (``tools/make_student.py``, ``make
student``) and the nbgrader classroom pack (``tools/make_classroom.py``, ``make classroom``), so
the two can never disagree:

* ``solution``: the reference answer to an exercise, code or markdown. In a code solution every
  top-level function keeps its signature and docstring and its body becomes the stub; the rest
  of the cell (code that uses the functions, or an answer that is not a function) becomes the
  stub too. A markdown solution becomes :data:`TEXT_STUB`.
* the **self-check**: a code cell that calls an exercise check of ``fedlearn.exercises``
  (``nb02.check_sgd_step(sgd_step)``), or any code cell tagged ``self-check``. nbgrader grades it
  automatically: full points when it runs without error. A tag ``points-N`` sets its points
  (default 1).

The stub is nbgrader's own default (``# YOUR CODE HERE`` then ``raise NotImplementedError()``),
and ``make classroom`` passes these constants to nbgrader's configuration explicitly.

For nbgrader the regions to clear are marked in the instructor notebook with ``### BEGIN
SOLUTION`` / ``### END SOLUTION`` comment lines (:func:`mark_solution_regions`); the student
copy replaces each region with the stub at the region's indentation (:func:`student_source`),
which is exactly what nbgrader's ``ClearSolutions`` does with those markers.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from nbformat import NotebookNode

SOLUTION_TAG = "solution"
SELF_CHECK_TAG = "self-check"
POINTS_TAG = re.compile(r"^points-(\d+)$")
DEFAULT_POINTS = 1
BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
TEXT_STUB = "YOUR ANSWER HERE"
# A call to one of the notebook's exercise checks, e.g. `nb02.check_sgd_step(sgd_step)` or
# `fedlearn.exercises.nb02.check_sgd_step(...)`.
_CHECK_CALL = re.compile(r"\bnb\d{2}\.check_\w+\s*\(")


def tags(cell: NotebookNode) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def is_solution(cell: NotebookNode) -> bool:
    return SOLUTION_TAG in tags(cell)


def is_self_check(cell: NotebookNode) -> bool:
    """A code cell that runs an exercise check (and is not itself a solution)."""
    if cell.cell_type != "code" or is_solution(cell):
        return False
    return SELF_CHECK_TAG in tags(cell) or bool(_CHECK_CALL.search(cell.source))


def points(cell: NotebookNode) -> int:
    """The points a self-check is worth: its ``points-N`` tag, else :data:`DEFAULT_POINTS`."""
    for tag in tags(cell):
        match = POINTS_TAG.match(tag)
        if match:
            return int(match.group(1))
    return DEFAULT_POINTS


@dataclass(frozen=True)
class Region:
    """Lines ``start``..``end`` (0-based, inclusive) of a cell to clear, at ``indent``."""

    start: int
    end: int
    indent: str


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _is_docstring(node: ast.stmt) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str))


def _signature_end(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Last line (0-based) of ``def name(...) -> T:``, which may span several lines."""
    first = node.lineno - 1
    for last in range(first, node.body[0].lineno - 1):
        header = "\n".join(line.lstrip() if i == 0 else line
                           for i, line in enumerate(lines[first:last + 1]))
        try:
            ast.parse(header + "\n    pass")
        except SyntaxError:
            continue
        return last
    return node.body[0].lineno - 2


def solution_regions(source: str) -> list[Region]:
    """The parts of a code solution that a student writes.

    Top-level ``def`` (and ``async def``) statements keep their decorators, signature and
    docstring; their bodies are regions. Runs of other top-level statements (with the comments
    among them) are regions. A cell that does not parse as Python (IPython magics) is one region.
    """
    lines = source.split("\n")
    if not source.strip():
        return []
    try:
        tree = ast.parse(source)
    except SyntaxError:
        first = next(i for i, line in enumerate(lines) if line.strip())
        last = max(i for i, line in enumerate(lines) if line.strip())
        return [Region(first, last, "")]

    regions: list[Region] = []
    run: list[ast.stmt] = []
    kept_until = -1  # last line (0-based) that belongs to a kept signature or docstring

    def close_run() -> None:
        if not run:
            return
        start = run[0].lineno - 1
        # Comments between the previous kept block and this run belong to the answer.
        while start - 1 > kept_until and lines[start - 1].strip().startswith("#"):
            start -= 1
        regions.append(Region(start, run[-1].end_lineno - 1, ""))
        run.clear()

    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            close_run()
            body = node.body
            if _is_docstring(body[0]):
                kept_until = body[0].end_lineno - 1
                body = body[1:]
            else:
                kept_until = _signature_end(lines, node)
            if body and body[0].lineno - 1 > kept_until:
                start = body[0].lineno - 1
                while start - 1 > kept_until and lines[start - 1].strip().startswith("#"):
                    start -= 1
                regions.append(Region(start, node.end_lineno - 1, _indent(lines[start])))
                kept_until = node.end_lineno - 1
            elif body:
                # `def f(x): return x` on one line: the whole def is the answer.
                regions.append(Region(node.lineno - 1, node.end_lineno - 1, ""))
                kept_until = node.end_lineno - 1
        else:
            run.append(node)
    close_run()
    return regions


def mark_solution_regions(source: str) -> str:
    """``source`` with ``### BEGIN SOLUTION`` / ``### END SOLUTION`` around every region."""
    lines = source.split("\n")
    out: list[str] = []
    regions = {r.start: r for r in solution_regions(source)}
    ends = {r.end: r for r in regions.values()}
    for i, line in enumerate(lines):
        if i in regions:
            out.append(regions[i].indent + BEGIN)
        out.append(line)
        if i in ends:
            out.append(ends[i].indent + END)
    return "\n".join(out)


def clear_marked_regions(source: str, stub: str = CODE_STUB) -> str:
    """Replace every marked region by ``stub`` at the marker's indentation (nbgrader's rule)."""
    out: list[str] = []
    inside = False
    for line in source.split("\n"):
        if BEGIN in line:
            if inside:
                raise ValueError(f"nested {BEGIN!r} in:\n{source}")
            inside = True
            out.extend(_indent(line) + stub_line for stub_line in stub.split("\n"))
        elif END in line:
            if not inside:
                raise ValueError(f"{END!r} without {BEGIN!r} in:\n{source}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN!r} without {END!r} in:\n{source}")
    return "\n".join(out)


def student_source(cell: NotebookNode) -> str:
    """What a student sees in place of a solution cell."""
    if cell.cell_type != "code":
        return TEXT_STUB
    marked = mark_solution_regions(cell.source)
    if BEGIN not in marked:
        return CODE_STUB
    return clear_marked_regions(marked)
