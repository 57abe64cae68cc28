"""The checker tests run in both languages of the self-checks (English and Chinese).

Every ``tests/test_exercises_nb*.py`` module applies :func:`exercise_language` to all its tests,
so each test runs once with ``set_language("en")`` and once with ``set_language("zh")`` (a few
tests that replay whole federated runs are pinned to one language to keep the suite fast; see
their ``parametrize("exercise_language", ...)``). The fixture restores the language afterwards,
so the order of the tests cannot leak a language from one test into another.

:func:`rejects` replaces ``pytest.raises(AssertionError, match=hint)``: the checker must raise a
:class:`~fedlearn.exercises.Message` (made by ``say(en=..., zh=...)``) that is exactly the text of
the selected language, whose English version matches ``hint`` and has no Chinese in it, and
whose Chinese version is mostly Chinese and carries the same numbers. Both versions of the very
hint that fired are checked, whichever language the test runs in.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from fedlearn.exercises import Message, language, set_language

#: the least share of Chinese characters among the letters of a Chinese message's prose
MIN_CJK_SHARE = 0.5
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_FULLWIDTH = re.compile(r"[\u3000-\u303f\uff00-\uffef]")
_QUOTED = re.compile(r"`[^`]*`|'[^'\n]*'|\"[^\"\n]*\"")
_ASCII_RUN = re.compile(r"[ -~]+")
#: an ASCII stretch with one of these is maths or code: operators, indices, calls, dotted names
_CODE = re.compile(r"[=*/^_\[\]|<>+\\{}]|[A-Za-z]\(|[A-Za-z]\.[A-Za-z]|--")


def cjk_share(text: str) -> float:
    """The share of Chinese characters among the letters of ``text``'s prose.

    Not prose, so not counted: quoted values and code (``'patient data'``, ```clip```), and
    every stretch of ASCII between two Chinese characters or punctuation marks that holds
    maths or code (``W_new = W - lr * grad``, ``fl.FedAvg(cfg, weighted=False)``, ``2^32``).
    The letters of the other ASCII stretches (``FedAvg``, ``state dict``, an untranslated
    sentence) count against the share.
    """
    text = _QUOTED.sub(" ", text)
    latin = sum(sum(c.isalpha() for c in run) for run in _ASCII_RUN.findall(text)
                if not _CODE.search(run))
    cjk = len(_CJK.findall(text))
    return cjk / (cjk + latin) if cjk + latin else 0.0


def numbers(text: str) -> Counter[str]:
    """Every run of digits in ``text``: a Chinese message must carry the English one's."""
    return Counter(re.findall(r"\d+", text))


def assert_english(text: str) -> None:
    assert not _CJK.search(text) and not _FULLWIDTH.search(text), \
        f"an English message with Chinese in it: {text!r}"


def assert_chinese(text: str) -> None:
    share = cjk_share(text)
    assert share >= MIN_CJK_SHARE, (
        f"only {share:.0%} of the prose letters are Chinese (at least {MIN_CJK_SHARE:.0%}): "
        f"{text!r}")


def assert_twins(message: object) -> None:
    """``message`` is a say() message whose two versions are each right and say the same."""
    assert isinstance(message, Message), (
        f"not a say(en=..., zh=...) message, so it has no Chinese version: {message!r}")
    assert_english(message.en)
    assert_chinese(message.zh)
    assert numbers(message.en) == numbers(message.zh), (
        f"the two versions carry different numbers:\n  en: {message.en}\n  zh: {message.zh}")
    assert str(message) == (message.zh if language() == "zh" else message.en), (
        f"the message is not in the selected language {language()!r}: {message}")


@pytest.fixture(params=["en", "zh"])
def exercise_language(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test with the self-checks speaking ``request.param``; restore it afterwards."""
    before = language()
    set_language(request.param)
    try:
        yield request.param
    finally:
        set_language(before)


@contextmanager
def rejects(hint: str) -> Iterator[pytest.ExceptionInfo[AssertionError]]:
    """Like ``pytest.raises(AssertionError, match=hint)``, in either language (see the module)."""
    with pytest.raises(AssertionError) as info:
        yield info
    message = info.value.args[0] if info.value.args else None
    assert_twins(message)
    assert re.search(hint, message.en), f"hint {hint!r} not in the message {message.en!r}"


def assert_correct(out: str, *, en: str = "", zh: str = "", count: int | None = None) -> None:
    """``out`` holds ``Correct: ...`` lines (``正确：...`` in Chinese; ``count`` of them if given)
    in the selected language, the English ones containing ``en`` and the Chinese ones ``zh``.

    A Chinese line must have Chinese after its prefix; its share of Chinese is not measured
    here, because a success line formats data (hospital names such as ``hospital 0``): the
    template's share is what ``tests/test_exercises_language.py`` checks, in the source.
    """
    lines = [ln for ln in out.splitlines() if ln.startswith(("Correct: ", "正确："))]
    assert lines and (count is None or len(lines) == count), \
        f"expected {count or 'some'} 'Correct' line(s), got {out!r}"
    for line in lines:
        if language() == "zh":
            assert line.startswith("正确："), line
            assert len(_CJK.findall(line[3:])) >= 4, f"no Chinese after the prefix: {line!r}"
            assert zh in line, f"{zh!r} not in {line!r}"
        else:
            assert line.startswith("Correct: "), line
            assert_english(line)
            assert en in line, f"{en!r} not in {line!r}"


def only_in(code: str) -> pytest.MarkDecorator:
    """Run a test in one language only: one that replays whole federated runs (every message
    it meets is still checked in both versions by :func:`rejects`), or one with no message."""
    return pytest.mark.parametrize("exercise_language", [code], indirect=True)
