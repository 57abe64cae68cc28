"""Tests of fedlearn.data.tcga: FLamby's Fed-TCGA-BRCA loader on synthetic files (schema and
typed survival errors), a real local download with md5 checks, and the real files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fedlearn.data import (
    ChecksumError,
    DataNotFoundError,
    EmptyRegionError,
    InvalidEventError,
    MissingCovariateError,
    NegativeTimeError,
    SchemaError,
    load_tcga_brca,
    tcga,
)
from fedlearn.data.tcga import TCGA_FILES, TCGA_MD5, TCGA_REGIONS

CODES = ("A1", "B2", "C3", "D4", "E5", "F6")  # one tissue-source site per region


def write_files(folder: Path, n_per_region: int = 6, extra: int = 2, seed: int = 0) -> Path:
    """Synthetic brca.csv / centers.csv / train_test_split.csv in FLamby's layout."""
    rng = np.random.default_rng(seed)
    target = folder / "tcga-brca"
    target.mkdir(parents=True, exist_ok=True)
    rows, split = [], []
    for k, code in enumerate(CODES):
        for i in range(n_per_region):
            pid = f"TCGA-{code}-{k}{i:03d}"
            rows.append([pid, int(rng.integers(30, 90)), *rng.integers(0, 2, 38).tolist(),
                         float(rng.integers(0, 2)), float(rng.integers(1, 3000))])
            fold = "train" if i < n_per_region - 2 else "test"
            split.append([pid, fold, f"{fold}_{k}"])
    for j in range(extra):  # patients of brca.csv that the split does not list
        rows.append([f"TCGA-{CODES[0]}-X{j:03d}", 50, *([0] * 38), 0.0, 10.0])
    columns = ["pid", "age_at_index"] + [f"c{i}" for i in range(38)] + ["E", "T"]
    pd.DataFrame(rows, columns=columns).to_csv(target / "brca.csv", index=False)
    pd.DataFrame({"TSS Code": list(CODES), "Source Site": "s", "Country": "c", "State": "x",
                  "Region": list(TCGA_REGIONS)}).to_csv(target / "centers.csv", index=False)
    pd.DataFrame(split, columns=["pid", "fold", "fold2"]).to_csv(
        target / "train_test_split.csv", index=False)
    return target


def test_synthetic_files_load_as_six_regions(tmp_path: Path, data_env: Path) -> None:
    write_files(tmp_path)
    data = load_tcga_brca(root=tmp_path, download=False)
    assert [s.name for s in data.sites] == list(TCGA_REGIONS)
    assert data.dropped == 2 and len(data.dropped_pids) == 2
    for s in data.sites:
        assert (s.n_train, s.n_test) == (4, 2)
        x, y = s.train.tensors
        assert x.dtype == torch.float32 and x.shape == (4, 39)
        assert y.dtype == torch.float32 and y.shape == (4, 2)
    assert len(data.split("train")) == 24 and len(data.split("test")) == 12
    with pytest.raises(ValueError, match="fold must be 'train' or 'test'"):
        data.split("validation")


def _edit_brca(folder: Path, row: int, column: str, value: object) -> None:
    path = folder / "tcga-brca" / "brca.csv"
    frame = pd.read_csv(path)
    frame[column] = frame[column].astype(object)
    frame.loc[row, column] = value
    frame.to_csv(path, index=False)


@pytest.mark.parametrize(("column", "value", "error", "message"), [
    ("T", -3.0, NegativeTimeError, r"T of patient TCGA-A1-0002 is -3.0.*>= 0 days"),
    ("E", 2.0, InvalidEventError, r"E of patient TCGA-A1-0002 is 2.0; E must be 1"),
    ("c5", np.nan, MissingCovariateError, r"covariate 'c5' of patient TCGA-A1-0002 is nan"),
    ("age_at_index", "old", MissingCovariateError, r"'age_at_index' .* is 'old'"),
])
def test_invalid_survival_values_raise_typed_errors(
    tmp_path: Path, data_env: Path, column: str, value: object, error: type, message: str
) -> None:
    write_files(tmp_path)
    _edit_brca(tmp_path, 2, column, value)
    with pytest.raises(error, match=message) as err:
        load_tcga_brca(root=tmp_path, download=False)
    assert isinstance(err.value, SchemaError) and err.value.path.name == "brca.csv"


def test_region_without_test_patients_is_an_empty_region_error(
    tmp_path: Path, data_env: Path
) -> None:
    target = write_files(tmp_path)
    split = pd.read_csv(target / "train_test_split.csv")
    split = split[split["fold2"] != "test_3"]
    split.to_csv(target / "train_test_split.csv", index=False)
    with pytest.raises(EmptyRegionError, match=r"region 3 \(Midwest\) has no test patients"):
        load_tcga_brca(root=tmp_path, download=False)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s.assign(fold2=s["fold2"].str.replace("train_0", "train_9")), "names region 9"),
    (lambda s: s.assign(fold2=s["fold2"].str.replace("train_1", "val_1")), "is not 'train_k'"),
    (lambda s: s.assign(fold=s["fold"].where(s["fold2"] != "test_2", "train")), "but fold2"),
    (lambda s: pd.concat([s, pd.DataFrame([["TCGA-ZZ-0000", "train", "train_0"]],
                                          columns=s.columns)]), "not in"),
    (lambda s: s.drop(columns="fold2"), r"missing column\(s\) \['fold2'\]"),
])
def test_inconsistent_split_is_a_schema_error(tmp_path: Path, data_env: Path, edit,
                                              message: str) -> None:
    target = write_files(tmp_path)
    path = target / "train_test_split.csv"
    edit(pd.read_csv(path)).to_csv(path, index=False)
    with pytest.raises(SchemaError, match=message):
        load_tcga_brca(root=tmp_path, download=False)


def test_region_code_disagreeing_with_split_is_a_schema_error(
    tmp_path: Path, data_env: Path
) -> None:
    target = write_files(tmp_path)
    centers = pd.read_csv(target / "centers.csv")
    centers.loc[0, "Region"] = "South"
    centers.to_csv(target / "centers.csv", index=False)
    with pytest.raises(SchemaError, match=r"maps to 'South'"):
        load_tcga_brca(root=tmp_path, download=False)


def test_wrong_number_of_covariates_is_a_schema_error(tmp_path: Path, data_env: Path) -> None:
    target = write_files(tmp_path)
    frame = pd.read_csv(target / "brca.csv").drop(columns="c0")
    frame.to_csv(target / "brca.csv", index=False)
    with pytest.raises(SchemaError, match="expected pid, 39 covariates, E, T"):
        load_tcga_brca(root=tmp_path, download=False)


def test_missing_files_without_download(data_env: Path) -> None:
    with pytest.raises(DataNotFoundError, match="brca.csv not found and download=False"):
        load_tcga_brca(download=False)


def _serve(served: Path, monkeypatch: pytest.MonkeyPatch, base: str) -> dict[str, str]:
    write_files(served)
    md5 = {}
    for name, remote in TCGA_FILES.items():
        dest = served / "flamby" / remote
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes((served / "tcga-brca" / name).read_bytes())
        md5[name] = hashlib.md5(dest.read_bytes()).hexdigest()
        monkeypatch.setitem(tcga.TCGA_MD5, name, md5[name])
    monkeypatch.setattr(tcga, "TCGA_BASE_URL", base + "flamby/")
    return md5


def test_download_is_md5_verified_and_cached(
    data_env: Path, file_server: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    served, base = file_server
    md5 = _serve(served, monkeypatch, base)
    data = load_tcga_brca(progress=False)
    assert data.dropped == 2
    for name in TCGA_FILES:
        cached = data_env / "tcga-brca" / name
        assert hashlib.md5(cached.read_bytes()).hexdigest() == md5[name]


def test_download_with_wrong_md5_is_discarded(
    data_env: Path, file_server: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    served, base = file_server
    _serve(served, monkeypatch, base)
    monkeypatch.setitem(tcga.TCGA_MD5, "centers.csv", "0" * 32)
    with pytest.raises(ChecksumError, match="centers.csv"):
        load_tcga_brca(progress=False)
    assert not (data_env / "tcga-brca" / "centers.csv").exists()


def test_urls_point_at_the_pinned_flamby_commit() -> None:
    assert tcga.TCGA_BASE_URL.startswith(
        "https://raw.githubusercontent.com/owkin/FLamby/edacf54d5211520583b0133d55ac39b6fda8324b/")
    assert set(TCGA_MD5) == set(TCGA_FILES)


@pytest.mark.realdata
def test_real_files_match_flamby(real_data_dir: Path, data_env: Path) -> None:
    for name in TCGA_FILES:
        path = real_data_dir / "tcga-brca" / name
        assert hashlib.md5(path.read_bytes()).hexdigest() == TCGA_MD5[name]
    data = load_tcga_brca(root=real_data_dir, download=False)
    assert [(s.n_train, s.n_test) for s in data.sites] == [
        (248, 63), (156, 40), (164, 42), (129, 33), (129, 33), (40, 11)]
    assert data.dropped == 8 and len(data.frame) == 1088
    test_deaths = [int(s.test.tensors[1][:, 0].sum()) for s in data.sites]
    assert test_deaths == [14, 4, 8, 3, 2, 1]
    assert data.features[0] == "age_at_index" and len(data.features) == 39
