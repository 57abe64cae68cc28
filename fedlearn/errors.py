"""The package's error for a configuration or input it refuses before doing any work.

A bad setting found deep inside torch, NumPy or scikit-learn surfaces as a message about
tensors the user never created (``Target 5 is out of bounds``, ``mat1 and mat2 shapes cannot
be multiplied``), or not at all (a negative clipping norm silently turns training into
gradient ascent). fedlearn checks values where they enter (:class:`~fedlearn.TrainConfig`,
:class:`~fedlearn.Client`, the start of :func:`fedlearn.run`) and raises :class:`ConfigError`
with a message that names the parameter (or hospital, or file), the value, and the fix.

:class:`ConfigError` subclasses :class:`ValueError`, so code (and tests) that catch
``ValueError`` keep working.
"""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A configuration or input fedlearn refuses before training: the message says the fix."""
