"""UCI Heart Disease as four hospitals, preprocessed exactly like FLamby's Fed-Heart-Disease.

The four ``processed.*.data`` files (Cleveland, Budapest, Zurich/Basel, Long Beach) are a
natural cross-silo federation: same 14 variables, very different patients, missingness and
label balance. Reusing FLamby's preprocessing (Ogier du Terrail et al., NeurIPS 2022) keeps
the course's numbers comparable with the published benchmark:

1. ``?`` becomes NaN; the mostly missing columns ``slope``, ``ca``, ``thal`` are dropped, then
   every row that still has a NaN.
2. ``cp`` and ``restecg`` are one-hot encoded with the first category dropped. The dummy
   columns come from the fixed category sets cp in {1, 2, 3, 4} and restecg in {0, 1, 2}
   (FLamby encodes the pooled frame, which amounts to the same), so every site has the same
   13 features even when it lacks a category.
3. label = ``num > 0`` (any angiographic disease).
4. Per site, ``train_test_split(train_size=0.66, random_state=43)``, stratified on the label
   when each class has more than two rows (FLamby's rule; Switzerland has one healthy
   patient, so its split is not stratified). Rows keep their file order within each split.
5. Each site is z-scored with the mean and (unbiased) std of *its own* training rows: a
   hospital cannot see the others' data. Where a training column is constant (Switzerland's
   ``chol`` is always 0), it is only centred; FLamby divides by ``std + 1e-9`` instead, which
   gives the same zeros on these files but explodes if the test rows differ.

Result: 199/104, 172/89, 30/16 and 85/45 train/test rows.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import TensorDataset

from fedlearn.data._files import locate
from fedlearn.data.errors import SchemaError
from fedlearn.data.site import Site

__all__ = [
    "HEART_BASE_URL",
    "HEART_SITES",
    "HEART_MD5",
    "HEART_RAW_COLUMNS",
    "HEART_FEATURES",
    "HeartSplit",
    "read_heart_file",
    "heart_disease_frames",
    "preprocess_heart_site",
    "load_heart_disease",
]

HEART_BASE_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/heart-disease/"
#: (site name, UCI file name), in FLamby's centre order 0..3.
HEART_SITES: tuple[tuple[str, str], ...] = (
    ("Cleveland", "processed.cleveland.data"),
    ("Hungary", "processed.hungarian.data"),
    ("Switzerland", "processed.switzerland.data"),
    ("VA Long Beach", "processed.va.data"),
)
#: md5 of the UCI files (the list FLamby's download script verifies).
HEART_MD5: dict[str, str] = {
    "processed.cleveland.data": "2d91a8ff69cfd9616aa47b59d6f843db",
    "processed.hungarian.data": "22e96bee155b5973568101c93b3705f6",
    "processed.switzerland.data": "9a87f7577310b3917730d06ba9349e20",
    "processed.va.data": "4249d03ca7711e84f4444768c9426170",
}
HEART_RAW_COLUMNS: tuple[str, ...] = (
    "age", "sex", "cp", "trestbps", "chol", "fbs", "restecg",
    "thalach", "exang", "oldpeak", "slope", "ca", "thal", "num",
)  # fmt: skip
_CONTINUOUS = ("age", "sex", "trestbps", "chol", "fbs", "thalach", "exang", "oldpeak")
_DUMMIES = (("cp", (2, 3, 4)), ("restecg", (1, 2)))  # first categories (1, 0) dropped
#: The 13 model inputs, in FLamby's column order.
HEART_FEATURES: list[str] = list(_CONTINUOUS) + [
    f"{column}_{level}" for column, levels in _DUMMIES for level in levels
]
# Allowed values of the coded columns; a shifted or re-coded export fails here, not in training.
_CODES = {
    "sex": {0, 1},
    "cp": {1, 2, 3, 4},
    "fbs": {0, 1},
    "restecg": {0, 1, 2},
    "exang": {0, 1},
    "num": {0, 1, 2, 3, 4},
}
TRAIN_FRACTION = 0.66
SPLIT_SEED = 43


class HeartSplit(NamedTuple):
    """One site's standardised split plus the train statistics used to standardise it."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    mean: np.ndarray
    std: np.ndarray


def _parse_cell(cell: str, where: str) -> float:
    text = cell.strip()
    if text == "?":
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise SchemaError(f"{where}: {text!r} is neither a number nor '?'") from None
    if not math.isfinite(value):
        raise SchemaError(f"{where}: {text!r} is not a finite number")
    return value


def read_heart_file(path: str | Path) -> pd.DataFrame:
    """Read one ``processed.*.data`` file into a float frame with NaN for ``?``.

    Raises SchemaError naming the file and line for a wrong column count, a non-numeric cell,
    an impossible code (e.g. cp = 7) or an empty file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError as exc:
        raise SchemaError(f"{path} is not a plain-text UCI file: {exc}", path=path) from exc
    rows: list[list[float]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        cells = line.split(",")
        if len(cells) != len(HEART_RAW_COLUMNS):
            raise SchemaError(
                f"{path}, line {lineno}: expected {len(HEART_RAW_COLUMNS)} comma-separated "
                f"columns ({', '.join(HEART_RAW_COLUMNS)}), found {len(cells)}",
                path=path,
            )
        try:
            row = [
                _parse_cell(cell, f"{path}, line {lineno}, column {name}")
                for name, cell in zip(HEART_RAW_COLUMNS, cells, strict=True)
            ]
        except SchemaError as exc:
            raise SchemaError(str(exc), path=path) from None
        for name, allowed in _CODES.items():
            value = row[HEART_RAW_COLUMNS.index(name)]
            if not math.isnan(value) and value not in allowed:
                raise SchemaError(
                    f"{path}, line {lineno}, column {name}: value {value:g} not in "
                    f"{sorted(allowed)}",
                    path=path,
                )
        rows.append(row)
    if not rows:
        raise SchemaError(f"{path} contains no data rows", path=path)
    return pd.DataFrame(rows, columns=list(HEART_RAW_COLUMNS), dtype=np.float64)


def heart_disease_frames(
    root: str | Path | None = None, download: bool = True, *, progress: bool = True
) -> dict[str, pd.DataFrame]:
    """Raw (validated, unprocessed) frame of each site, keyed by site name, in site order.

    For exploring the heterogeneity between hospitals in the notebooks: missingness, label
    balance and feature distributions all differ before any preprocessing hides them.
    """
    frames: dict[str, pd.DataFrame] = {}
    for name, filename in HEART_SITES:
        path = locate(
            "heart-disease",
            filename,
            url=HEART_BASE_URL + filename,
            md5=HEART_MD5.get(filename),
            root=root,
            download=download,
            progress=progress,
        )
        frames[name] = read_heart_file(path)
    return frames


def _features(complete: pd.DataFrame) -> np.ndarray:
    """13 features: the continuous/binary columns, then drop-first dummies of cp and restecg."""
    columns = [complete[name].to_numpy(np.float64) for name in _CONTINUOUS]
    for name, levels in _DUMMIES:
        columns += [(complete[name].to_numpy() == level).astype(np.float64) for level in levels]
    return np.column_stack(columns)


def preprocess_heart_site(
    frame: pd.DataFrame, *, split_seed: int = SPLIT_SEED, source: str = "heart-disease frame"
) -> HeartSplit:
    """Apply FLamby's preprocessing (module docstring) to one site's raw frame.

    ``split_seed`` defaults to FLamby's 43; change it only to study split variance.
    ``source`` names the data in error messages.
    """
    complete = frame.drop(columns=["slope", "ca", "thal"]).dropna(axis=0)
    n_rows = len(complete)
    if n_rows < 4:
        raise SchemaError(
            f"{source}: only {n_rows} complete rows after dropping missing values; "
            "at least 4 are needed to split and standardise"
        )
    x = _features(complete)
    y = (complete["num"].to_numpy() > 0).astype(np.int64)
    counts = np.bincount(y, minlength=2)
    stratify = y if (counts > 2).all() else None
    train_idx, test_idx = train_test_split(
        np.arange(n_rows),
        test_size=1.0 - TRAIN_FRACTION,
        train_size=TRAIN_FRACTION,
        random_state=split_seed,
        shuffle=True,
        stratify=stratify,
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    mean = x[train_idx].mean(axis=0)
    std = x[train_idx].std(axis=0, ddof=1)
    z = (x - mean) / np.where(std > 0, std, 1.0)
    return HeartSplit(
        x_train=z[train_idx].astype(np.float32),
        y_train=y[train_idx],
        x_test=z[test_idx].astype(np.float32),
        y_test=y[test_idx],
        mean=mean,
        std=std,
    )


def load_heart_disease(
    root: str | Path | None = None,
    download: bool = True,
    *,
    split_seed: int = SPLIT_SEED,
    progress: bool = True,
) -> list[Site]:
    """The four hospitals as ``Site`` objects: float32 features (N, 13), int64 labels (N,).

    Files are searched in ``root`` (if given), ``$FEDLEARN_DATA_DIR/heart-disease/`` and the
    cache, and downloaded from UCI (md5-verified) when missing and ``download`` is true.
    """
    sites = []
    for name, frame in heart_disease_frames(root, download, progress=progress).items():
        split = preprocess_heart_site(frame, split_seed=split_seed, source=f"site {name}")
        sites.append(
            Site(
                name=name,
                train=TensorDataset(
                    torch.from_numpy(split.x_train), torch.from_numpy(split.y_train)
                ),
                test=TensorDataset(torch.from_numpy(split.x_test), torch.from_numpy(split.y_test)),
            )
        )
    return sites
