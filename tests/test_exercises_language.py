"""The self-checks speak English or Chinese, and no message of any checker lacks its Chinese.

``fl.exercises.set_language("zh")`` is the one code line the Chinese notebooks add. These tests
check the switch itself, then read every checker module (``fedlearn/exercises/nb*.py``) and fail
for any hint, error or ``correct(...)`` message that is not written as ``say(en=..., zh=...)``
with a Chinese version that is really Chinese and uses the same values as the English one. The
walk reads the source, so it also covers branches that no test drives; the checker tests
(``tests/test_exercises_nb*.py``, through ``tests/exercise_language.py``) run every typical
wrong answer in both languages and check the message that actually fired.
"""

from __future__ import annotations

import ast
import pickle
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import fedlearn as fl
from fedlearn import exercises
from fedlearn.exercises import LANGUAGES, Message, correct, language, say, set_language

from .exercise_language import (
    MIN_CJK_SHARE,
    assert_correct,
    assert_twins,
    cjk_share,
    exercise_language,  # noqa: F401  (the fixture, used by name below)
)

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted((ROOT / "fedlearn" / "exercises").glob("nb*.py"))
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")

# --------------------------------------------------------------------------- the switch


def test_the_default_is_english_in_a_fresh_interpreter() -> None:
    code = "import fedlearn as fl; print(fl.exercises.language())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert out.strip() == "en"


@pytest.mark.usefixtures("exercise_language")
def test_set_language_switches_and_the_fixture_restores() -> None:
    start = language()
    other = "en" if start == "zh" else "zh"
    fl.exercises.set_language(other)  # the line the Chinese notebooks add
    assert language() == other and fl.exercises.language() == other
    set_language(start)
    assert language() == start


@pytest.mark.parametrize("code", ["fr", "ZH", "zh-CN", "", None, 1])
def test_an_unknown_code_is_refused_naming_parameter_value_and_accepted_codes(code) -> None:
    before = language()
    with pytest.raises(ValueError, match="set_language: code=") as info:
        set_language(code)
    text = str(info.value)
    assert repr(code) in text and "'en'" in text and "'zh'" in text
    assert isinstance(info.value, fl.ConfigError)
    assert language() == before  # nothing changed
    assert set(LANGUAGES) == {"en", "zh"}


def test_correct_prints_the_prefix_of_the_language(capsys: pytest.CaptureFixture[str]) -> None:
    before = language()
    try:
        set_language("en")
        correct(say(en="two hospitals", zh="两家医院"))
        assert capsys.readouterr().out == "Correct: two hospitals\n"
        set_language("zh")
        correct(say(en="two hospitals", zh="两家医院"))
        assert capsys.readouterr().out == "正确：两家医院\n"
    finally:
        set_language(before)


def test_a_message_is_the_text_of_the_language_it_was_made_in() -> None:
    before = language()
    try:
        set_language("zh")
        m = say(en="sensitivity 0.91", zh="敏感性 0.91")
        assert str(m) == "敏感性 0.91" and (m.en, m.zh) == ("sensitivity 0.91", "敏感性 0.91")
        assert str(AssertionError(m)) == "敏感性 0.91"
        back = pickle.loads(pickle.dumps(m))
        assert isinstance(back, Message) and (back.en, back.zh) == (m.en, m.zh)
        set_language("en")
        assert str(say(en="sensitivity 0.91", zh="敏感性 0.91")) == "sensitivity 0.91"
    finally:
        set_language(before)


def test_the_helpers_can_fail() -> None:
    """The checks behind every checker test reject what they must."""
    with pytest.raises(AssertionError, match="no Chinese version"):
        assert_twins("an English-only hint")
    with pytest.raises(AssertionError, match="prose letters are Chinese"):
        assert_twins(say(en="weight each bin", zh="weight each bin 请"))
    with pytest.raises(AssertionError, match="different numbers"):
        assert_twins(say(en="round 3 of 10", zh="第 4 轮，共 10 轮"))
    with pytest.raises(AssertionError, match="Chinese in it"):
        assert_twins(say(en="round 3：", zh="第 3 轮"))
    assert cjk_share("请使用 fl.FedAvg(cfg, weighted=False) 和 'patient data'") == 1.0
    assert cjk_share("the FedAvg 平均") == 2 / 11


@pytest.mark.usefixtures("exercise_language")
def test_assert_correct_follows_the_language(capsys: pytest.CaptureFixture[str]) -> None:
    correct(say(en="pooled AUROC 0.91", zh="合并的受试者工作特征曲线下面积（AUROC）为 0.91"))
    assert_correct(capsys.readouterr().out, en="AUROC", zh="AUROC")
    with pytest.raises(AssertionError):
        assert_correct("Correct: pooled AUROC 0.91\n" if language() == "zh"
                       else "正确：合并的 AUROC 为 0.91\n")


# ----------------------------------------------------------- every message has its Chinese


def _parts(node: ast.expr) -> tuple[str, list[str]]:
    """The constant text of a string or f-string and the source of each value it formats,
    with ``.en``/``.zh`` and ``_en``/``_zh`` (a value's two language versions) made equal."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value, []
    if not isinstance(node, ast.JoinedStr):
        raise TypeError(f"line {node.lineno}: a message must be a string or f-string literal")
    text, values = [], []
    for part in node.values:
        if isinstance(part, ast.Constant):
            text.append(part.value)
        else:
            assert isinstance(part, ast.FormattedValue)
            spec = ast.unparse(part.format_spec) if part.format_spec else ""
            src = re.sub(r"(?<=[._])(en|zh)\b", "LANG", ast.unparse(part.value))
            values.append(f"{src}:{spec}")
            text.append(" ")
    return "".join(text), values


def message_problems(source: str) -> list[str]:
    """Why some message of a checker module has no proper Chinese version (empty: none)."""
    problems = []
    tree = ast.parse(source)

    def is_say(node: ast.expr | None) -> bool:
        return isinstance(node, ast.Call) and getattr(node.func, "id", "") == "say"

    for node in ast.walk(tree):
        where = f"line {getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args:
            if not is_say(node.exc.args[0]):
                problems.append(f"{where}: raise {ast.unparse(node.exc)[:60]} without say()")
        elif isinstance(node, ast.Assert) and node.msg is not None and not is_say(node.msg):
            problems.append(f"{where}: assert message without say(): {ast.unparse(node.msg)[:60]}")
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name == "correct" and not (node.args and is_say(node.args[0])):
                problems.append(f"{where}: correct(...) without say()")
            if any(k.arg == "err_msg" for k in node.keywords):
                problems.append(f"{where}: {name}(err_msg=...) prints numpy's English report")
            if is_say(node):
                kw = {k.arg: k.value for k in node.keywords}
                if set(kw) != {"en", "zh"} or node.args:
                    problems.append(f"{where}: say() needs exactly en=... and zh=...")
                    continue
                (en, en_values), (zh, zh_values) = _parts(kw["en"]), _parts(kw["zh"])
                if _CJK.search(en):
                    problems.append(f"{where}: the English version has Chinese in it")
                if en.strip() and cjk_share(zh) < MIN_CJK_SHARE:
                    problems.append(f"{where}: the Chinese version is only "
                                    f"{cjk_share(zh):.0%} Chinese: {zh[:60]!r}")
                if Counter(en_values) != Counter(zh_values):
                    problems.append(f"{where}: the versions format different values: "
                                    f"{sorted(en_values)} vs {sorted(zh_values)}")
                if Counter(re.findall(r"\d+", en)) != Counter(re.findall(r"\d+", zh)):
                    problems.append(f"{where}: the versions write different numbers")
    return problems


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_every_message_of_every_checker_has_a_chinese_version(path: Path) -> None:
    problems = message_problems(path.read_text(encoding="utf-8"))
    assert not problems, f"{path.name}:\n  " + "\n  ".join(problems)


def test_the_walk_covers_the_course_and_counts_its_messages() -> None:
    stems = {p.stem for p in MODULES}
    assert {"nb01", "nb02", "nb03", "nb04", "nb05", "nb06", "nb07", "nb08", "nb09", "nb10",
            "nb11"} <= stems
    says = sum(p.read_text(encoding="utf-8").count("say(") for p in MODULES)
    assert says >= 150


def test_the_walk_finds_an_english_only_message() -> None:
    bad = '''
def check(x):
    assert x, "an English hint"
    if x > 1:
        raise AssertionError(f"too large: {x}")
    np.testing.assert_allclose(x, 1, err_msg="lower bound")
    assert x, say(en=f"got {x:.2f}", zh="收到的不对")
    assert x, say(en="round 3", zh="第 4 轮")
    assert x, say(en="sensitivity", zh="sensitivity 敏感性 is wrong")
    correct("ok")
'''
    problems = message_problems(bad)
    assert len(problems) == 7, problems
    ok = '''
def check(x, hint):
    assert x, say(en=f"got {x:.2f}{hint.en}", zh=f"收到的是 {x:.2f}{hint.zh}")
    correct(say(en="ok", zh="正确无误"))
'''
    assert message_problems(ok) == []


def test_fl_exercises_exposes_the_switch() -> None:
    assert fl.exercises.set_language is exercises.set_language
    assert fl.exercises.language is exercises.language
