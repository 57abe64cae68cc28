"""Self-check functions for the notebooks' exercises, one module per notebook.

Each checker takes the learner's answer, prints ``Correct: ...`` when it is right and
raises :class:`AssertionError` with a hint when it is not. They live in the package (not
in the notebooks) so that they are tested like the rest of the code and so that the
student copy of a notebook, which has its solutions removed, still has its checks.

The messages speak English or Chinese: ``fl.exercises.set_language("zh")`` (the first code
cell of every notebook in ``notebooks/zh/``) switches them all; see
:mod:`fedlearn.exercises.language`.
"""

from __future__ import annotations

from .language import LANGUAGES, Message, language, say, set_language

__all__ = ["LANGUAGES", "Message", "correct", "language", "say", "set_language"]

_PREFIX = {"en": "Correct: ", "zh": "正确："}


def correct(message: str) -> None:
    """Report a passed self-check in one recognisable line (``Correct: ...`` / ``正确：...``)."""
    print(f"{_PREFIX[language()]}{message}")
