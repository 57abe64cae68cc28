"""The notebook 03b self-check accepts the right answer and rejects wrong ones with a hint."""

from __future__ import annotations

import pytest

from fedlearn.exercises import nb03b

from .exercise_language import assert_correct, exercise_language, only_in, rejects  # noqa: F401

pytestmark = pytest.mark.usefixtures("exercise_language")


@only_in("zh")  # slow: one language (rejects() checks both versions of a hint)
def test_accepts_agreeing_engines(capsys) -> None:
    nb03b.check_engines_agree(nb03b.engine_gap(seed=1), engines_differ=False)
    assert_correct(capsys.readouterr().out)


@pytest.mark.parametrize("gap,differ,hint", [(0.3, False, "same initial model"),
                                             (1e-7, True, "same function"),
                                             (float("nan"), False, "finite float")])
def test_rejects_wrong_answers(gap, differ, hint) -> None:
    with rejects(hint):
        nb03b.check_engines_agree(gap, engines_differ=differ)
