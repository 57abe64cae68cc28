"""Exceptions raised by the data loaders.

A course on medical federated learning must never train on half a file: a truncated download
or a re-exported CSV with a shifted column would silently produce a plausible-looking but wrong
experiment. Every loader therefore either returns a fully validated data set or raises one of
these errors, and every message names the offending file and what is wrong with it, so a
student can fix the problem without reading the loader's source.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "DataError",
    "ChecksumError",
    "CorruptFileError",
    "SchemaError",
    "DataNotFoundError",
]


class DataError(Exception):
    """Base class of every data-loading error (catch this to handle them all).

    ``path`` is the file the error is about, when there is one.
    """

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.path = Path(path) if path is not None else None


class ChecksumError(DataError):
    """A downloaded file's md5 differs from the published one (the file is deleted)."""


class CorruptFileError(DataError):
    """A file cannot be read at all: truncated, not a zip/npz archive, undecodable."""


class SchemaError(DataError):
    """A file reads fine but its content is not what the loader expects.

    Missing or unexpected keys/columns, wrong dtype or shape, labels out of range,
    non-numeric values, or splits whose images and labels disagree in length.
    """


class DataNotFoundError(DataError):
    """No local copy exists and it could not be downloaded (disabled or network failure).

    ``searched`` lists every path that was tried, in order.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        searched: tuple[Path, ...] = (),
    ) -> None:
        super().__init__(message, path=path)
        self.searched = tuple(searched)
