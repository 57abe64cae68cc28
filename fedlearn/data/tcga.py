"""Fed-TCGA-BRCA: breast-cancer survival in six regions, exactly as FLamby ships it.

The Cancer Genome Atlas (TCGA) breast-cancer cohort, as preprocessed by FLamby (Ogier du
Terrail et al., NeurIPS 2022 Datasets & Benchmarks): one row per patient with 39 clinical
covariates (age and one-hot stage, tumour size, histology, ...), ``E`` (1 = death observed,
0 = censored) and ``T`` (days to death or to last follow-up). Patients are grouped by the
tissue-source site of their barcode into six regions (Northeast, South, West, Midwest of the
USA, Europe, Canada): a natural cross-silo federation with very different sizes (248 to 40
training patients) and event counts (45 to 2 deaths).

Three files of the FLamby repository at a pinned commit: ``brca.csv`` (1,096 patients),
``centers.csv`` (site code -> region) and ``train_test_split.csv`` (FLamby's static split,
1,088 patients). Eight patients of ``brca.csv`` are not in the split; like FLamby we drop
them, and report how many (:attr:`TcgaBrca.dropped`).

Row order inside each region is ``brca.csv``'s order (FLamby's, so minibatches mean the same
thing). Covariates are *not* standardised, as in FLamby: the Newton-Raphson notebook
standardises federatedly instead (:mod:`fedlearn.survival.standardize`).

Survival-specific checks raise typed :class:`SurvivalDataError` subclasses (negative times,
``E`` outside {0, 1}, missing covariates, an empty region), because each one would silently
bias a Kaplan-Meier curve or a Cox fit rather than crash it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import TensorDataset

from fedlearn.data._files import locate
from fedlearn.data.errors import CorruptFileError, SchemaError
from fedlearn.data.site import Site

__all__ = [
    "TCGA_COMMIT",
    "TCGA_BASE_URL",
    "TCGA_FILES",
    "TCGA_MD5",
    "TCGA_REGIONS",
    "TCGA_N_FEATURES",
    "SurvivalDataError",
    "NegativeTimeError",
    "InvalidEventError",
    "MissingCovariateError",
    "EmptyRegionError",
    "TcgaBrca",
    "read_tcga_frames",
    "load_tcga_brca",
]

TCGA_COMMIT = "edacf54d5211520583b0133d55ac39b6fda8324b"
TCGA_BASE_URL = (
    f"https://raw.githubusercontent.com/owkin/FLamby/{TCGA_COMMIT}/flamby/datasets/fed_tcga_brca/"
)
#: local file name -> path below TCGA_BASE_URL.
TCGA_FILES: dict[str, str] = {
    "brca.csv": "brca.csv",
    "centers.csv": "centers.csv",
    "train_test_split.csv": "dataset_creation_scripts/train_test_split.csv",
}
TCGA_MD5: dict[str, str] = {
    "brca.csv": "989df4ddec084f749d9593146d7ba92f",
    "centers.csv": "03f23a40c35dfb8460b910d090e98dd5",
    "train_test_split.csv": "e648057e47463ee7763924d779cd7f2d",
}
#: FLamby's region index k -> region name in ``centers.csv`` (checked when loading).
TCGA_REGIONS: tuple[str, ...] = ("Northeast", "South", "West", "Midwest", "Europe", "Canada")
TCGA_N_FEATURES = 39
_SUBDIR = "tcga-brca"


class SurvivalDataError(SchemaError):
    """A survival file reads fine but its times, events, covariates or regions are invalid."""


class NegativeTimeError(SurvivalDataError):
    """A follow-up time ``T`` is negative (or not finite)."""


class InvalidEventError(SurvivalDataError):
    """An event flag ``E`` is not 0 (censored) or 1 (death observed)."""


class MissingCovariateError(SurvivalDataError):
    """A covariate is missing (NaN) or not finite."""


class EmptyRegionError(SurvivalDataError):
    """A region of the split has no training or no test patient."""


@dataclass(frozen=True)
class TcgaBrca:
    """The six regions, plus everything a survival analysis needs beside the tensors.

    Attributes:
        sites: one :class:`~fedlearn.data.Site` per region: ``x`` float32 (n, 39) and
            ``y`` float32 (n, 2) holding ``(E, T)`` as FLamby does.
        features: the 39 covariate names, in column order.
        frame: every kept patient: ``pid``, the covariates, ``E``, ``T``, ``region``
            (index 0..5), ``region_name`` and ``fold`` (train/test).
        dropped: patients of ``brca.csv`` absent from the split (8 in FLamby's files).
        dropped_pids: their barcodes.
    """

    sites: list[Site]
    features: list[str]
    frame: pd.DataFrame = field(repr=False)
    dropped: int = 0
    dropped_pids: tuple[str, ...] = ()

    def split(self, fold: str) -> pd.DataFrame:
        """The ``train`` or ``test`` patients of every region (a pooled analysis frame)."""
        if fold not in ("train", "test"):
            raise ValueError(f"fold must be 'train' or 'test', got {fold!r}")
        return self.frame[self.frame["fold"] == fold].reset_index(drop=True)


def _show(value: object) -> str:
    """A cell as the user wrote it (``-3.0``, ``'old'``), not numpy's ``np.float64(-3.0)``."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise CorruptFileError(f"{path} is not a readable CSV file: {exc}", path=path) from exc


def read_tcga_frames(
    root: str | Path | None = None, download: bool = True, *, progress: bool = True
) -> dict[str, tuple[Path, pd.DataFrame]]:
    """Locate (or download and md5-verify) the three files; return ``name -> (path, frame)``."""
    out = {}
    for name, remote in TCGA_FILES.items():
        path = locate(_SUBDIR, name, url=TCGA_BASE_URL + remote, md5=TCGA_MD5.get(name),
                      root=root, download=download, progress=progress)
        out[name] = (path, _read_csv(path))
    return out


def _require_columns(frame: pd.DataFrame, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SchemaError(f"{path}: missing column(s) {missing}; found {list(frame.columns)}",
                          path=path)


def _check_brca(brca: pd.DataFrame, path: Path) -> list[str]:
    """Schema and value checks of ``brca.csv``; returns the covariate names."""
    _require_columns(brca, ["pid", "E", "T"], path)
    features = [c for c in brca.columns if c not in ("pid", "E", "T")]
    if len(features) != TCGA_N_FEATURES or list(brca.columns[-2:]) != ["E", "T"]:
        raise SchemaError(f"{path}: expected pid, {TCGA_N_FEATURES} covariates, E, T; found "
                          f"{len(brca.columns)} columns ending in {list(brca.columns[-2:])}",
                          path=path)
    if brca["pid"].duplicated().any():
        dup = brca.loc[brca["pid"].duplicated(), "pid"].iloc[0]
        raise SchemaError(f"{path}: patient {dup} appears twice", path=path)
    values = brca[features + ["E", "T"]].apply(pd.to_numeric, errors="coerce")
    bad = values[features].isna() | ~np.isfinite(values[features].to_numpy(np.float64))
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise MissingCovariateError(
            f"{path}: covariate {features[col]!r} of patient {brca['pid'].iloc[row]} is "
            f"{_show(brca[features[col]].iloc[row])}, not a finite number; impute or drop the "
            f"patient before federating (a Cox model cannot use a NaN)", path=path)
    event = values["E"]
    wrong = ~event.isin([0, 1])
    if wrong.any():
        i = int(np.flatnonzero(wrong.to_numpy())[0])
        raise InvalidEventError(
            f"{path}: E of patient {brca['pid'].iloc[i]} is {_show(brca['E'].iloc[i])}; E must be "
            f"1 (death observed) or 0 (censored)", path=path)
    time = values["T"].to_numpy(np.float64)
    wrong_t = ~np.isfinite(time) | (time < 0)
    if wrong_t.any():
        i = int(np.flatnonzero(wrong_t)[0])
        raise NegativeTimeError(
            f"{path}: T of patient {brca['pid'].iloc[i]} is {_show(brca['T'].iloc[i])}; follow-up "
            f"times must be finite and >= 0 days", path=path)
    return features


def load_tcga_brca(
    root: str | Path | None = None, download: bool = True, *, progress: bool = True
) -> TcgaBrca:
    """FLamby's Fed-TCGA-BRCA as six :class:`~fedlearn.data.Site` objects (module docstring).

    Files are searched in ``root`` (if given), ``$FEDLEARN_DATA_DIR/tcga-brca/`` and the cache,
    and downloaded from the pinned FLamby commit (md5-verified) when missing and ``download``
    is true. Raises :class:`SchemaError` (or a :class:`SurvivalDataError` subclass) naming the
    file, the patient and the fix.
    """
    files = read_tcga_frames(root, download, progress=progress)
    brca_path, brca = files["brca.csv"]
    centers_path, centers = files["centers.csv"]
    split_path, split = files["train_test_split.csv"]
    features = _check_brca(brca, brca_path)
    _require_columns(centers, ["TSS Code", "Region"], centers_path)
    _require_columns(split, ["pid", "fold", "fold2"], split_path)

    parts = split["fold2"].astype(str).str.extract(r"^(train|test)_(\d+)$")
    if parts.isna().any().any():
        i = int(np.flatnonzero(parts.isna().any(axis=1).to_numpy())[0])
        raise SchemaError(f"{split_path}: fold2 {split['fold2'].iloc[i]!r} of patient "
                          f"{split['pid'].iloc[i]} is not 'train_k' or 'test_k'", path=split_path)
    if (parts[0] != split["fold"].astype(str)).any():
        i = int(np.flatnonzero((parts[0] != split["fold"]).to_numpy())[0])
        raise SchemaError(f"{split_path}: patient {split['pid'].iloc[i]} has fold "
                          f"{split['fold'].iloc[i]!r} but fold2 {split['fold2'].iloc[i]!r}",
                          path=split_path)
    split = split.assign(region=parts[1].astype(int))
    outside = ~split["region"].isin(range(len(TCGA_REGIONS)))
    if outside.any():
        i = int(np.flatnonzero(outside.to_numpy())[0])
        raise SchemaError(f"{split_path}: fold2 {split['fold2'].iloc[i]!r} names region "
                          f"{split['region'].iloc[i]}; regions are 0..{len(TCGA_REGIONS) - 1}",
                          path=split_path)
    unknown = sorted(set(split["pid"]) - set(brca["pid"]))
    if unknown:
        raise SchemaError(f"{split_path}: {len(unknown)} patient(s) of the split are not in "
                          f"{brca_path}, e.g. {unknown[0]}; the two files do not belong together",
                          path=split_path)

    in_split = brca["pid"].isin(set(split["pid"]))
    dropped = tuple(brca.loc[~in_split, "pid"])
    frame = brca[in_split].merge(split[["pid", "fold", "region"]], on="pid", how="left")
    frame[features + ["E", "T"]] = frame[features + ["E", "T"]].astype(np.float64)

    region_of_code = dict(zip(centers["TSS Code"].astype(str), centers["Region"], strict=True))
    names = frame["pid"].str[5:7].map(region_of_code)
    expected = frame["region"].map(dict(enumerate(TCGA_REGIONS)))
    if (names != expected).any():
        i = int(np.flatnonzero((names != expected).to_numpy())[0])
        raise SchemaError(f"{centers_path}: patient {frame['pid'].iloc[i]} is in region "
                          f"{frame['region'].iloc[i]} ({expected.iloc[i]}) of the split but its "
                          f"site code maps to {names.iloc[i]!r}", path=centers_path)
    frame["region_name"] = expected

    sites = []
    for k, name in enumerate(TCGA_REGIONS):
        tensors = {}
        for fold in ("train", "test"):
            rows = frame[(frame["region"] == k) & (frame["fold"] == fold)]
            if rows.empty:
                raise EmptyRegionError(
                    f"{split_path}: region {k} ({name}) has no {fold} patients; every region "
                    f"needs train and test patients (check fold2 values train_{k}/test_{k})",
                    path=split_path)
            x = torch.tensor(rows[features].to_numpy(np.float32))
            y = torch.tensor(rows[["E", "T"]].to_numpy(np.float32))
            tensors[fold] = TensorDataset(x, y)
        sites.append(Site(name=name, train=tensors["train"], test=tensors["test"]))
    return TcgaBrca(sites=sites, features=features, frame=frame.reset_index(drop=True),
                    dropped=len(dropped), dropped_pids=dropped)
