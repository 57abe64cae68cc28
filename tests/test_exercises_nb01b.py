"""The notebook 01b self-check accepts the inversion of an all-reduce and rejects the slips."""

from __future__ import annotations

import pytest
import torch

from fedlearn.exercises import nb01b

from .exercise_language import assert_correct, exercise_language, only_in, rejects  # noqa: F401

pytestmark = pytest.mark.usefixtures("exercise_language")


def test_accepts_the_inversion(capsys: pytest.CaptureFixture[str]) -> None:
    nb01b.check_recover_from_allreduce(lambda mean, own, world: world * mean - own)
    assert_correct(capsys.readouterr().out)


@pytest.mark.parametrize(("wrong", "hint"), [
    (lambda mean, own, world: mean - own, "divided by the world size"),
    (lambda mean, own, world: (world * mean - own) / (world - 1), "MEAN of the other"),
    (lambda mean, own, world: 2 * mean - own, "others' sum"),
    (lambda mean, own, world: torch.zeros(3), "shaped like the batch"),
])
def test_rejects_wrong_inversions(wrong, hint: str) -> None:
    with rejects(hint):
        nb01b.check_recover_from_allreduce(wrong)
