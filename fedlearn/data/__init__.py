"""Verified loaders for the course's real medical data sets.

Each loader finds a local copy (``root`` argument, ``$FEDLEARN_DATA_DIR``, then the cache) or
downloads the publisher's file, checks it, and returns ready-to-train tensors. Any problem
raises a :class:`DataError` subclass whose message names the file and the fix.

The loaders are imported on first use (PEP 562, as in :mod:`fedlearn`): the Heart Disease
loader needs pandas and scikit-learn, and loading MedMNIST should not pay for them. To add a
module, add one line to ``_EXPORTS``.
"""

from __future__ import annotations

import importlib
from typing import Any

# module -> the names it lends to ``fedlearn.data``
_EXPORTS: dict[str, tuple[str, ...]] = {
    "site": ("Site",),
    "medmnist": ("load_medmnist", "MedMNIST", "MedMNISTInfo", "MEDMNIST_INFO"),
    "heart": ("load_heart_disease", "heart_disease_frames", "HEART_FEATURES"),
    "tcga": ("load_tcga_brca", "TcgaBrca", "SurvivalDataError", "NegativeTimeError",
             "InvalidEventError", "MissingCovariateError", "EmptyRegionError"),
    "errors": ("DataError", "ChecksumError", "CorruptFileError", "SchemaError",
               "DataNotFoundError"),
}
_ORIGIN: dict[str, str] = {name: mod for mod, names in _EXPORTS.items() for name in names}

__all__ = list(_ORIGIN)


def __getattr__(name: str) -> Any:
    """Import the module defining ``name`` (or the submodule ``name``) on first use."""
    if name in _ORIGIN:
        value: Any = getattr(importlib.import_module(f"{__name__}.{_ORIGIN[name]}"), name)
    elif name in _EXPORTS:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | set(_ORIGIN))
