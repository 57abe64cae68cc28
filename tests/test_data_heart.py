"""Tests of fedlearn.data.heart: schema checks and preprocessing on synthetic files, a real
local download, and FLamby's published split on the real files (when FEDLEARN_DATA_DIR is set)."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.model_selection import train_test_split

from fedlearn.data import (
    HEART_FEATURES,
    ChecksumError,
    DataNotFoundError,
    SchemaError,
    Site,
    heart,
    heart_disease_frames,
    load_heart_disease,
)
from fedlearn.data.heart import HEART_SITES, preprocess_heart_site, read_heart_file

SITE_NAMES = ["Cleveland", "Hungary", "Switzerland", "VA Long Beach"]
FLAMBY_COUNTS = {"Cleveland": (199, 104), "Hungary": (172, 89), "Switzerland": (30, 16),
                 "VA Long Beach": (85, 45)}  # fmt: skip


def synthetic_lines(n: int, seed: int) -> list[str]:
    """UCI-formatted rows with every coded column in range and some '?' cells."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        row = [
            rng.integers(30, 75), rng.integers(0, 2), rng.integers(1, 5), rng.integers(95, 190),
            rng.integers(120, 350), rng.integers(0, 2), rng.integers(0, 3), rng.integers(90, 200),
            rng.integers(0, 2), round(float(rng.uniform(0, 4)), 1), "?", "?", "?", i % 3,
        ]  # fmt: skip
        if i % 7 == 6:
            row[3] = "?"  # incomplete rows are dropped before the split
        lines.append(",".join(str(v) for v in row))
    return lines


def write_site_files(folder: Path, sizes: tuple[int, ...] = (40, 30, 20, 25)) -> Path:
    target = folder / "heart-disease"
    target.mkdir(parents=True, exist_ok=True)
    for seed, ((_, filename), n) in enumerate(zip(HEART_SITES, sizes, strict=True)):
        (target / filename).write_text("\n".join(synthetic_lines(n, seed)) + "\n")
    return target


def test_synthetic_sites_load_standardised(tmp_path: Path, data_env: Path) -> None:
    write_site_files(tmp_path)
    sites = load_heart_disease(root=tmp_path, download=False)
    assert [s.name for s in sites] == SITE_NAMES and all(isinstance(s, Site) for s in sites)
    for site, n_rows in zip(sites, (40, 30, 20, 25), strict=True):
        complete = n_rows - n_rows // 7  # every 7th row has a '?' in trestbps
        x_train, y_train = site.train.tensors
        x_test, y_test = site.test.tensors
        assert (len(x_train), len(x_test)) == (
            int(np.floor(0.66 * complete)),
            complete - len(x_train),
        )
        assert x_train.dtype == torch.float32 and x_train.shape[1] == 13 == len(HEART_FEATURES)
        assert y_train.dtype == torch.int64 and set(y_train.unique().tolist()) <= {0, 1}
        torch.testing.assert_close(x_train.mean(0), torch.zeros(13), atol=1e-5, rtol=0)


def test_missing_category_keeps_the_same_13_columns() -> None:
    rows = [[50, 1, cp, 130, 200, 0, 0, 150, 0, 1.0, np.nan, np.nan, np.nan, i % 2]
            for i, cp in enumerate([2, 3, 2, 3, 2, 3, 2, 3])]  # fmt: skip
    frame = pd.DataFrame(rows, columns=list(heart.HEART_RAW_COLUMNS), dtype=float)
    split = preprocess_heart_site(frame)
    x = np.vstack([split.x_train, split.x_test])
    assert x.shape == (8, 13)
    absent = [HEART_FEATURES.index(name) for name in ("cp_4", "restecg_1", "restecg_2")]
    assert np.all(x[:, absent] == 0)  # categories this site lacks: constant, centred to 0
    cp2 = HEART_FEATURES.index("cp_2")
    one_hot = x[:, cp2] * split.std[cp2]
    np.testing.assert_allclose(np.sort(one_hot + split.mean[cp2]), [0] * 4 + [1] * 4, atol=1e-6)


def frame_from_lines(tmp_path: Path, lines: list[str]) -> pd.DataFrame:
    path = tmp_path / "site.data"
    path.write_text("\n".join(lines) + "\n")
    return read_heart_file(path)


def test_split_seed_is_a_parameter(tmp_path: Path) -> None:
    frame = frame_from_lines(tmp_path, synthetic_lines(60, 5))
    a, b = preprocess_heart_site(frame), preprocess_heart_site(frame, split_seed=43)
    c = preprocess_heart_site(frame, split_seed=7)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert a.x_train.shape == c.x_train.shape
    assert not np.allclose(a.mean, c.mean)  # another seed puts other rows in train


def test_too_few_complete_rows_is_a_schema_error(tmp_path: Path) -> None:
    frame = frame_from_lines(tmp_path, synthetic_lines(3, 0))
    with pytest.raises(SchemaError, match="site X: only 3 complete rows"):
        preprocess_heart_site(frame, source="site X")


@pytest.mark.parametrize(
    ("bad_line", "expected"),
    [
        ("63,1,1,145,233,1,2,150,0,2.3,3,0,6", r"line 3: expected 14 comma-separated columns"),
        ("63,1,1,145,233,1,2,150,0,2.3,3,0,6,0,1", r"line 3: expected 14 .* found 15"),
        ("63,1,1,145,abc,1,2,150,0,2.3,3,0,6,0", r"line 3, column chol: 'abc' is neither"),
        ("63,1,1,145,,1,2,150,0,2.3,3,0,6,0", r"line 3, column chol: '' is neither"),
        ("63,1,7,145,233,1,2,150,0,2.3,3,0,6,0", r"line 3, column cp: value 7 not in"),
        ("63,1,1,145,233,1,2,150,0,2.3,3,0,6,9", r"line 3, column num: value 9 not in"),
        ("63,1,1,145,inf,1,2,150,0,2.3,3,0,6,0", r"column chol: 'inf' is not a finite"),
    ],
)
def test_corrupt_lines_raise_schema_error_naming_file_and_line(
    tmp_path: Path, data_env: Path, bad_line: str, expected: str
) -> None:
    folder = write_site_files(tmp_path)
    path = folder / "processed.hungarian.data"
    lines = path.read_text().splitlines()
    lines[2] = bad_line
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SchemaError, match=expected) as err:
        load_heart_disease(root=tmp_path, download=False)
    assert str(path) in str(err.value) and err.value.path == path


@pytest.mark.parametrize("content", [b"", b"\n\n", bytes(range(256))])
def test_empty_or_binary_file_is_a_schema_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "processed.va.data"
    path.write_bytes(content)
    with pytest.raises(SchemaError, match=re.escape(str(path))):
        read_heart_file(path)


def test_missing_file_lists_searched_paths(
    tmp_path: Path, data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_site_files(tmp_path / "offline")
    (folder / "processed.switzerland.data").unlink()
    monkeypatch.setenv("FEDLEARN_DATA_DIR", str(tmp_path / "offline"))
    with pytest.raises(DataNotFoundError) as err:
        load_heart_disease(download=False)
    expected = [
        folder / "processed.switzerland.data",
        tmp_path / "offline" / "processed.switzerland.data",
        data_env / "heart-disease" / "processed.switzerland.data",
    ]
    assert list(err.value.searched) == expected
    assert all(str(path) in str(err.value) for path in expected)


def _serve_sites(served: Path, monkeypatch: pytest.MonkeyPatch, base: str) -> dict[str, str]:
    write_site_files(served)
    md5 = {}
    for _, filename in HEART_SITES:
        md5[filename] = hashlib.md5((served / "heart-disease" / filename).read_bytes()).hexdigest()
        monkeypatch.setitem(heart.HEART_MD5, filename, md5[filename])
    monkeypatch.setattr(heart, "HEART_BASE_URL", base + "heart-disease/")
    return md5


def test_http_download_then_offline_reload(
    data_env: Path, file_server: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    served, base = file_server
    md5 = _serve_sites(served, monkeypatch, base)
    sites = load_heart_disease(progress=False)
    for _, filename in HEART_SITES:
        cached = data_env / "heart-disease" / filename
        assert hashlib.md5(cached.read_bytes()).hexdigest() == md5[filename]
    again = load_heart_disease(download=False)
    for a, b in zip(sites, again, strict=True):
        torch.testing.assert_close(a.train.tensors[0], b.train.tensors[0])


def test_wrong_md5_download_raises_checksum_error(
    data_env: Path, file_server: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    served, base = file_server
    _serve_sites(served, monkeypatch, base)
    monkeypatch.setitem(heart.HEART_MD5, "processed.cleveland.data", "f" * 32)
    with pytest.raises(ChecksumError, match="processed.cleveland.data"):
        load_heart_disease(progress=False)
    assert not (data_env / "heart-disease" / "processed.cleveland.data").exists()


def test_published_md5s() -> None:
    assert heart.HEART_MD5["processed.cleveland.data"] == "2d91a8ff69cfd9616aa47b59d6f843db"
    assert [name for name, _ in HEART_SITES] == SITE_NAMES


# ---- real files -----------------------------------------------------------------------------


def flamby_reference(folder: Path) -> dict[int, tuple[np.ndarray, np.ndarray, list[str]]]:
    """FLamby's Fed-Heart-Disease pipeline, written out independently: pooled get_dummies,
    per-centre split, per-centre train mean/std (torch, unbiased) with its 1e-9 epsilon."""
    features, labels, centres, sets = [], [], [], []
    for centre, (_, filename) in enumerate(HEART_SITES):
        df = pd.read_csv(folder / filename, header=None, na_values="?")
        df = df.drop(columns=[10, 11, 12]).dropna(axis=0)
        y = (df.iloc[:, -1] > 0).astype(int)
        counts = y.value_counts()
        stratify = y if len(counts) > 1 and (counts > 2).all() else None
        _, test_idx = train_test_split(
            np.arange(len(df)),
            test_size=1.0 - 0.66,
            train_size=0.66,
            random_state=43,
            stratify=stratify,
        )
        features.append(df.iloc[:, :-1])
        labels.append(y.to_numpy())
        centres += [centre] * len(df)
        sets += ["test" if i in set(test_idx) else "train" for i in range(len(df))]
    pooled = pd.get_dummies(pd.concat(features, ignore_index=True), columns=[2, 6], drop_first=True)
    x_all = torch.from_numpy(pooled.to_numpy(dtype=np.float32))
    y_all, centres_arr, sets_arr = np.concatenate(labels), np.array(centres), np.array(sets)
    out = {}
    for centre in range(4):
        train = (centres_arr == centre) & (sets_arr == "train")
        mean, std = x_all[train].mean(0), x_all[train].std(0)
        z = ((x_all - mean) / (std + 1e-9)).numpy()
        out[centre] = (z[centres_arr == centre], y_all[centres_arr == centre],
                       list(sets_arr[centres_arr == centre]), list(pooled.columns))  # fmt: skip
    return out


@pytest.fixture(scope="module")
def real_sites() -> list[Site]:
    if not os.environ.get("FEDLEARN_DATA_DIR"):
        pytest.skip("set FEDLEARN_DATA_DIR to the folder holding the real data files")
    return load_heart_disease(download=False)


@pytest.mark.realdata
def test_real_counts_features_and_labels(real_sites: list[Site]) -> None:
    assert [s.name for s in real_sites] == SITE_NAMES
    for site in real_sites:
        assert (site.n_train, site.n_test) == FLAMBY_COUNTS[site.name]
        x_train, y_train = site.train.tensors
        x_test, y_test = site.test.tensors
        assert x_train.shape[1] == x_test.shape[1] == 13
        # Switzerland has a single healthy patient after dropping incomplete rows: it is in test.
        assert set(y_train.unique().tolist()) <= {0, 1}
        assert set(y_test.unique().tolist()) == {0, 1}, site.name


@pytest.mark.realdata
def test_real_train_features_are_z_scored_per_site(real_sites: list[Site]) -> None:
    for site in real_sites:
        x = site.train.tensors[0].double()
        std = x.std(0)
        constant = std < 1e-6  # Switzerland's chol is always 0 (missing coded as 0)
        assert constant.sum() <= 1
        torch.testing.assert_close(
            x.mean(0), torch.zeros(13, dtype=torch.float64), atol=1e-6, rtol=0
        )
        torch.testing.assert_close(
            std[~constant], torch.ones(int((~constant).sum()), dtype=torch.float64)
        )
    swiss = real_sites[2].train.tensors[0]
    assert torch.all(swiss[:, HEART_FEATURES.index("chol")] == 0)


@pytest.mark.realdata
def test_real_load_is_deterministic(real_sites: list[Site]) -> None:
    for a, b in zip(real_sites, load_heart_disease(download=False), strict=True):
        for ta, tb in zip(
            a.train.tensors + a.test.tensors, b.train.tensors + b.test.tensors, strict=True
        ):
            assert torch.equal(ta, tb)


@pytest.mark.realdata
def test_real_matches_flamby_pipeline(real_sites: list[Site], real_data_dir: Path) -> None:
    reference = flamby_reference(real_data_dir / "heart-disease")
    for centre, site in enumerate(real_sites):
        z, y, sets, columns = reference[centre]
        assert [str(c) for c in columns][-5:] == ["2_2.0", "2_3.0", "2_4.0", "6_1.0", "6_2.0"]
        train = np.array(sets) == "train"
        np.testing.assert_allclose(site.train.tensors[0].numpy(), z[train], atol=1e-5)
        np.testing.assert_allclose(site.test.tensors[0].numpy(), z[~train], atol=1e-5)
        np.testing.assert_array_equal(site.train.tensors[1].numpy(), y[train])
        np.testing.assert_array_equal(site.test.tensors[1].numpy(), y[~train])


@pytest.mark.realdata
def test_real_frames_are_raw(real_data_dir: Path) -> None:
    frames = heart_disease_frames(download=False)
    assert list(frames) == SITE_NAMES
    assert [len(f) for f in frames.values()] == [303, 294, 123, 200]
    assert all(list(f.columns) == list(heart.HEART_RAW_COLUMNS) for f in frames.values())
    assert frames["Cleveland"].iloc[:, :10].notna().all().all()  # only ca/thal have '?'
    assert frames["Hungary"]["ca"].isna().sum() > 250  # why FLamby drops ca, thal, slope
    assert frames["Switzerland"]["chol"].eq(0).all()  # missing cholesterol coded as 0
