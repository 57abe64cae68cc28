"""Every self-check of the course is fed its typical wrong answers and must reject them with a hint.

The wrong answers themselves live next to the right ones in ``tests/test_exercises_nbNN.py``
(swapped runs, an untrained model, another configuration, a wrong constant, a formula that
forgets a term, ...). This file makes sure none is forgotten: it reads those test files and
fails for any public ``check_*`` in ``fedlearn/exercises/`` that no test calls inside
``rejects(hint)`` (``tests/exercise_language.py``: the hint in English, a Chinese twin with the
same numbers, in both languages) or ``pytest.raises(AssertionError, match=...)``, i.e. a checker
nobody has shown to reject a wrong answer with a recognisable hint. The run-taking checkers
(notebooks 01 and 03) are fed swapped runs, untrained models and other configurations in their
own test files.
"""

from __future__ import annotations

import ast
import functools
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(p.stem for p in (ROOT / "fedlearn" / "exercises").glob("nb*.py"))


def all_checkers() -> list[str]:
    names = []
    for stem in MODULES:
        mod = importlib.import_module(f"fedlearn.exercises.{stem}")
        names += [f"{stem}.{n}" for n in mod.__all__ if n.startswith("check_")]
    return names


def _raises_with_hint(node: ast.With) -> bool:
    """``pytest.raises(AssertionError, match=hint)`` or ``rejects(hint)`` (the same check in both
    languages, ``tests/exercise_language.py``)."""
    for item in node.items:
        call = item.context_expr
        if (isinstance(call, ast.Call) and getattr(call.func, "attr", "") == "raises"
                and call.args and getattr(call.args[0], "id", "") == "AssertionError"
                and any(k.arg == "match" for k in call.keywords)):
            return True
        if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "rejects" and call.args:
            return True
    return False


@functools.cache
def rejected_with_hint() -> frozenset[str]:
    """``nbNN.check_x`` called inside ``pytest.raises(AssertionError, match=...)`` or
    ``rejects(...)`` in a test, either
    directly or through a helper of the same test file that calls it."""
    found: set[str] = set()
    for path in sorted((ROOT / "tests").glob("test_exercises_nb*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        helpers: dict[str, set[str]] = {}
        for fn in (n for n in tree.body if isinstance(n, ast.FunctionDef)):
            helpers[fn.name] = {f"{c.func.value.id}.{c.func.attr}" for c in ast.walk(fn)
                                if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
                                and isinstance(c.func.value, ast.Name)
                                and c.func.attr.startswith("check_")}
        for node in ast.walk(tree):
            if isinstance(node, ast.With) and _raises_with_hint(node):
                for call in (c for c in ast.walk(node) if isinstance(c, ast.Call)):
                    func = call.func
                    if (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                            and func.attr.startswith("check_")):
                        found.add(f"{func.value.id}.{func.attr}")
                    elif isinstance(func, ast.Name) and func.id in helpers:
                        found |= helpers[func.id]
    return frozenset(found)


def test_the_course_has_checkers_in_every_exercise_module() -> None:
    assert len(all_checkers()) >= 30 and len(MODULES) >= 10


@pytest.mark.parametrize("checker", all_checkers())
def test_every_checker_is_shown_to_reject_a_wrong_answer_with_a_hint(checker: str) -> None:
    assert checker in rejected_with_hint(), (
        f"{checker} is never called inside rejects(<hint>) (or pytest.raises(AssertionError, "
        "match=<hint>)) in "
        "tests/test_exercises_nb*.py: add its typical wrong answers (swapped runs, an untrained "
        "model, a wrong constant) and the hint each must print")


def test_the_scan_sees_a_missing_case(tmp_path: Path) -> None:
    """The coverage scan can fail: a raises() without match= does not count."""
    tree = ast.parse("with pytest.raises(AssertionError):\n    nb01.check_x(1)\n")
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.With))
    assert not _raises_with_hint(node)
    tree = ast.parse("with pytest.raises(AssertionError, match='h'):\n    nb01.check_x(1)\n")
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.With))
    assert _raises_with_hint(node)
    for src, hinted in (("with rejects('h'):\n    nb01.check_x(1)\n", True),
                        ("with rejects():\n    nb01.check_x(1)\n", False)):
        node = next(n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.With))
        assert _raises_with_hint(node) == hinted
