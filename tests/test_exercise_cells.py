"""Tests for tools/exercise_cells.py: which cells are exercises and what students get instead."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nbformat.v4 import new_code_cell, new_markdown_cell

from tests.tools_loader import load

ec = load("exercise_cells")


def _run(source: str) -> dict:
    namespace: dict = {}
    exec(compile(source, "<student cell>", "exec"), namespace)  # noqa: S102 (test of stubs)
    return namespace


def test_function_keeps_signature_and_docstring_and_body_raises() -> None:
    source = (
        "def sgd_step(W, b, x, y, lr):\n"
        '    """One minibatch SGD step for two-output logistic regression."""\n'
        "    p = W @ x\n"
        "    return W - lr * p, b\n"
    )
    student = ec.student_source(new_code_cell(source))
    assert student.startswith('def sgd_step(W, b, x, y, lr):\n    """One minibatch SGD step for '
                              'two-output logistic regression."""\n')
    assert "p = W @ x" not in student
    namespace = _run(student)
    # The function exists (no NameError in the self-check), and calling it says what to do.
    with pytest.raises(NotImplementedError):
        namespace["sgd_step"](1, 2, 3, 4, 5)


def test_multiline_signature_and_comment_after_it_are_handled() -> None:
    source = (
        "def hospitals_needed(epsilon: float, delta: float, rounds: int,\n"
        "                     target_std: float) -> int:\n"
        "    # the hint that is part of the answer\n"
        "    return 3\n"
    )
    student = ec.student_source(new_code_cell(source))
    assert "target_std: float) -> int:" in student
    assert "hint" not in student and "return 3" not in student
    with pytest.raises(NotImplementedError):
        _run(student)["hospitals_needed"](1.0, 1e-5, 1, 0.1)


def test_statements_around_functions_become_stubs_too() -> None:
    source = (
        "import math\n\n\n"
        "def f(n):\n    return math.ceil(n)\n\n\n"
        "# use it\nanswer = f(2.5)\nprint(answer)\n"
    )
    student = ec.student_source(new_code_cell(source))
    assert "def f(n):" in student
    assert "import math" not in student and "answer" not in student and "use it" not in student
    assert student.count("raise NotImplementedError()") == 3


def test_answer_without_function_and_markdown_answer() -> None:
    code = ec.student_source(new_code_cell("weights = {c: 1 for c in 'ab'}\nweights"))
    assert code == ec.CODE_STUB
    assert ec.student_source(new_markdown_cell("**Answer.** n_k/n")) == ec.TEXT_STUB


def test_magics_that_do_not_parse_become_one_stub() -> None:
    assert ec.student_source(new_code_cell("%timeit f(3)\nx = 1")) == ec.CODE_STUB


def test_marked_source_still_runs_and_clears_like_nbgrader() -> None:
    source = "def g(x):\n    '''Doc.'''\n    return 2 * x\n\n\ny = g(2)\n"
    marked = ec.mark_solution_regions(source)
    assert marked.count(ec.BEGIN) == 2 and marked.count(ec.END) == 2
    assert _run(marked)["y"] == 4  # the markers are comments: the reference still runs
    assert ec.clear_marked_regions(marked) == ec.student_source(new_code_cell(source))


def test_unbalanced_markers_are_an_error() -> None:
    with pytest.raises(ValueError, match="without"):
        ec.clear_marked_regions(f"x = 1\n{ec.BEGIN}\ny = 2\n")
    with pytest.raises(ValueError, match="without"):
        ec.clear_marked_regions(f"x = 1\n{ec.END}\n")


def test_self_check_detection_and_points() -> None:
    check = new_code_cell("nb02.check_sgd_step(sgd_step)")
    assert ec.is_self_check(check) and ec.points(check) == 1
    tagged = new_code_cell("assert ok")
    tagged.metadata["tags"] = ["self-check", "points-3"]
    assert ec.is_self_check(tagged) and ec.points(tagged) == 3
    assert not ec.is_self_check(new_code_cell("print(nb02.SITE_ITEMS)"))
    solution = new_code_cell("nb02.check_sgd_step(sgd_step)")
    solution.metadata["tags"] = ["solution"]
    assert not ec.is_self_check(solution)
    assert not ec.is_self_check(new_markdown_cell("nb02.check_sgd_step(sgd_step)"))


_names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda n: n not in {"def", "return", "if", "in", "is", "or", "and", "not", "for", "as"})


@settings(max_examples=50, deadline=None)
@given(names=st.lists(_names, min_size=1, max_size=4, unique=True),
       docstrings=st.lists(st.booleans(), min_size=4, max_size=4))
def test_every_function_survives_as_a_stub(names: list[str], docstrings: list[bool]) -> None:
    """Property: whatever the cell's functions, each still exists and raises when called."""
    parts = []
    for name, doc in zip(names, docstrings, strict=False):
        body = f'    """What {name} does."""\n' if doc else ""
        parts.append(f"def {name}(a, b=1):\n{body}    c = a + b\n    return c\n")
    student = ec.student_source(new_code_cell("\n\n".join(parts)))
    namespace = _run(student)
    for name, doc in zip(names, docstrings, strict=False):
        assert callable(namespace[name])
        assert (namespace[name].__doc__ == f"What {name} does.") == doc
        with pytest.raises(NotImplementedError):
            namespace[name](1)
