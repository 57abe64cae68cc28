"""The language the self-checks speak: English (the default) or Chinese.

The Chinese edition of the course (``notebooks/zh/``) runs the same code cells as the English
notebooks; the one line it adds, ``fl.exercises.set_language("zh")`` in the first code cell,
makes every hint and every ``Correct: ...`` line of :mod:`fedlearn.exercises` appear in
Chinese. A learner who reads Chinese first should not meet an English hint at the moment of
being stuck.

Each checker writes its messages once, side by side: ``say(en=f"...", zh=f"...")``. Both are
f-strings over the *same* values, so a number in the Chinese hint is the number in the English
one (the tests check that, and that no message lacks its Chinese). The terms follow
``notebooks/GLOSSARY.md``, the course's terminology authority (敏感性, 特异性, 差分隐私, ...).
"""

from __future__ import annotations

from ..errors import ConfigError

__all__ = ["LANGUAGES", "Message", "language", "say", "set_language"]

#: the accepted language codes and what they select
LANGUAGES: dict[str, str] = {"en": "English", "zh": "Simplified Chinese, 简体中文"}

_current = "en"


def set_language(code: str) -> None:
    """Choose the language of every self-check message from now on: ``"en"`` or ``"zh"``."""
    global _current
    if not isinstance(code, str) or code not in LANGUAGES:
        accepted = ", ".join(f"{c!r} ({name})" for c, name in LANGUAGES.items())
        raise ConfigError(f"set_language: code={code!r} is not a language of the self-checks; "
                          f"accepted codes: {accepted}, e.g. fl.exercises.set_language('zh')")
    _current = code


def language() -> str:
    """The code of the language the self-checks speak now (``"en"`` unless changed)."""
    return _current


class Message(str):
    """A message in the current language that also keeps both versions.

    It *is* the string in the language selected when it was made (so ``str(exc)``, printing
    and ``pytest.raises(match=...)`` see exactly what the learner sees), and carries ``.en`` and
    ``.zh`` so that a test run in one language can still check the other version of the very
    message that was raised.
    """

    en: str
    zh: str

    def __new__(cls, en: str, zh: str) -> Message:
        obj = super().__new__(cls, zh if _current == "zh" else en)
        obj.en, obj.zh = en, zh
        return obj

    def __getnewargs__(self) -> tuple[str, str]:  # pickling (e.g. an error sent between processes)
        return self.en, self.zh


def say(*, en: str, zh: str) -> Message:
    """The message in the current language; write ``en`` and ``zh`` over the same values."""
    return Message(en, zh)
