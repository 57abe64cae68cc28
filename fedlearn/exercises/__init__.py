"""Self-check functions for the notebooks' exercises, one module per notebook.

Each checker takes the learner's answer, prints ``Correct: ...`` when it is right and
raises :class:`AssertionError` with a hint when it is not. They live in the package (not
in the notebooks) so that they are tested like the rest of the code and so that the
student copy of a notebook, which has its solutions removed, still has its checks.
"""

from __future__ import annotations


def correct(message: str) -> None:
    """Report a passed self-check in one recognisable line."""
    print(f"Correct: {message}")
