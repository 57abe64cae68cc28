"""Tests of fedlearn.data.medmnist on synthetic .npz files, a real local download, and
(when FEDLEARN_DATA_DIR is set) the real offline copies."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from fedlearn.data import (
    MEDMNIST_INFO,
    ChecksumError,
    CorruptFileError,
    DataError,
    DataNotFoundError,
    SchemaError,
    load_medmnist,
)
from fedlearn.data.medmnist import read_medmnist_npz

FLAGS_2D = {
    "pathmnist", "chestmnist", "dermamnist", "octmnist", "pneumoniamnist", "retinamnist",
    "breastmnist", "bloodmnist", "tissuemnist", "organamnist", "organcmnist", "organsmnist",
}  # fmt: skip


def make_arrays(flag: str, sizes: tuple[int, int, int] = (6, 3, 4), seed: int = 0) -> dict:
    """Valid arrays for ``flag`` with every class present where the size allows."""
    rng = np.random.default_rng(seed)
    info = MEDMNIST_INFO[flag]
    tail = (28, 28) if info.n_channels == 1 else (28, 28, 3)
    arrays = {}
    for split, n in zip(("train", "val", "test"), sizes, strict=True):
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(n, *tail), dtype=np.uint8)
        if info.multi_label:
            labels = rng.integers(0, 2, size=(n, info.n_classes))
        else:
            labels = (np.arange(n) % info.n_classes)[:, None]
        arrays[f"{split}_labels"] = labels.astype(np.uint8)
    return arrays


def write_npz(folder: Path, flag: str, arrays: dict) -> Path:
    path = folder / "medmnist" / f"{flag}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


@pytest.mark.parametrize("flag", ["breastmnist", "bloodmnist", "retinamnist"])
def test_good_file_loads_with_right_shapes_dtypes_and_values(
    tmp_path: Path, data_env: Path, flag: str
) -> None:
    arrays = make_arrays(flag)
    write_npz(tmp_path, flag, arrays)
    ds = load_medmnist(flag, root=tmp_path, download=False)
    info = MEDMNIST_INFO[flag]
    assert ds.path == tmp_path / "medmnist" / f"{flag}.npz"
    assert (ds.n_channels, ds.n_classes, ds.label_names) == (
        info.n_channels,
        len(info.label_names),
        info.label_names,
    )
    for split, n in zip(("train", "val", "test"), (6, 3, 4), strict=True):
        images, labels = ds.split(split).tensors
        assert images.shape == (n, info.n_channels, 28, 28)
        assert images.dtype == torch.float32 and labels.dtype == torch.int64
        assert labels.shape == (n,)
        assert images.min() >= 0.0 and images.max() <= 1.0
        raw_x, raw_y = ds.numpy(split)
        assert raw_x.dtype == np.uint8 and not raw_x.flags.writeable
        # channel-last uint8 -> channel-first float: pixel (n, h, w, c) lands at (n, c, h, w)
        expected = raw_x[..., None] if raw_x.ndim == 3 else raw_x
        expected = torch.from_numpy(expected.astype(np.float32) / 255).permute(0, 3, 1, 2)
        torch.testing.assert_close(images, expected)
        assert labels.tolist() == raw_y[:, 0].tolist() == arrays[f"{split}_labels"][:, 0].tolist()


def test_multilabel_chestmnist_gives_float_label_matrix(tmp_path: Path, data_env: Path) -> None:
    arrays = make_arrays("chestmnist")
    write_npz(tmp_path, "chestmnist", arrays)
    ds = load_medmnist("chestmnist", root=tmp_path, download=False)
    labels = ds.train.tensors[1]
    assert labels.dtype == torch.float32 and labels.shape == (6, 14)
    np.testing.assert_array_equal(labels.numpy(), arrays["train_labels"])


def test_truncated_file_raises_corrupt_file_error(tmp_path: Path, data_env: Path) -> None:
    path = write_npz(tmp_path, "breastmnist", make_arrays("breastmnist"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match="breastmnist.npz") as err:
        load_medmnist("breastmnist", root=tmp_path, download=False)
    assert err.value.path == path


@pytest.mark.parametrize("content", [b"<html>rate limited</html>", b""])
def test_non_zip_file_raises_corrupt_file_error(
    tmp_path: Path, data_env: Path, content: bytes
) -> None:
    path = tmp_path / "breastmnist.npz"
    path.write_bytes(content)
    with pytest.raises(CorruptFileError, match=re.escape(str(path))):
        read_medmnist_npz(path, "breastmnist")


def test_single_npy_array_is_not_an_npz(tmp_path: Path) -> None:
    path = tmp_path / "breastmnist.npz"
    with open(path, "wb") as handle:
        np.save(handle, np.zeros((2, 28, 28), dtype=np.uint8))
    with pytest.raises(CorruptFileError, match=r"not an \.npz archive"):
        read_medmnist_npz(path, "breastmnist")


def test_corrupt_member_raises_corrupt_file_error(tmp_path: Path) -> None:
    path = tmp_path / "breastmnist.npz"
    np.savez(path, **make_arrays("breastmnist"))  # stored, so bytes map 1:1 to the zip
    data = bytearray(path.read_bytes())
    middle = data.index(b"train_images.npy") + 2000  # inside the image payload
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="train_images"):
        read_medmnist_npz(path, "breastmnist")


def _schema_error(tmp_path: Path, arrays: dict, flag: str = "breastmnist") -> SchemaError:
    path = write_npz(tmp_path, flag, arrays)
    with pytest.raises(SchemaError) as err:
        load_medmnist(flag, root=tmp_path, download=False)
    assert str(path) in str(err.value) and err.value.path == path
    return err.value


def test_wrong_key_set_raises_schema_error(tmp_path: Path, data_env: Path) -> None:
    arrays = make_arrays("breastmnist")
    arrays["training_images"] = arrays.pop("train_images")
    message = str(_schema_error(tmp_path, arrays))
    assert "'train_images'" in message and "'training_images'" in message


@pytest.mark.parametrize("key", ["val_images", "test_labels"])
def test_float_arrays_raise_schema_error(tmp_path: Path, data_env: Path, key: str) -> None:
    arrays = make_arrays("breastmnist")
    arrays[key] = arrays[key].astype(np.float32) / 255
    assert f"{key} has dtype float32" in str(_schema_error(tmp_path, arrays))


def test_label_out_of_range_raises_schema_error(tmp_path: Path, data_env: Path) -> None:
    arrays = make_arrays("breastmnist")
    arrays["train_labels"][2, 0] = 2  # breastmnist is binary
    assert "train_labels range over [0, 2]" in str(_schema_error(tmp_path, arrays))


def test_multilabel_value_other_than_0_1_raises(tmp_path: Path, data_env: Path) -> None:
    arrays = make_arrays("chestmnist")
    arrays["test_labels"][0, 3] = 2
    assert "test_labels" in str(_schema_error(tmp_path, arrays, "chestmnist"))


def test_mismatched_n_raises_schema_error(tmp_path: Path, data_env: Path) -> None:
    arrays = make_arrays("breastmnist")
    arrays["val_labels"] = arrays["val_labels"][:-1]
    assert "val has 3 images but 2 labels" in str(_schema_error(tmp_path, arrays))


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("train_images", np.zeros((6, 28, 28, 3), dtype=np.uint8)),  # RGB for a gray flag
        ("train_images", np.zeros((6, 32, 32), dtype=np.uint8)),
        ("train_labels", np.zeros((6,), dtype=np.uint8)),
        ("train_labels", np.zeros((6, 2), dtype=np.uint8)),
    ],
)
def test_wrong_shapes_raise_schema_error(
    tmp_path: Path, data_env: Path, key: str, bad: np.ndarray
) -> None:
    arrays = make_arrays("breastmnist")
    arrays[key] = bad
    assert f"{key} has shape {bad.shape}" in str(_schema_error(tmp_path, arrays))


def test_not_found_without_download_lists_searched_paths(
    tmp_path: Path, data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    offline = tmp_path / "offline"
    monkeypatch.setenv("FEDLEARN_DATA_DIR", str(offline))
    with pytest.raises(DataNotFoundError) as err:
        load_medmnist("breastmnist", download=False)
    expected = [
        offline / "medmnist" / "breastmnist.npz",
        offline / "breastmnist.npz",
        data_env / "medmnist" / "breastmnist.npz",
    ]
    assert list(err.value.searched) == expected
    message = str(err.value)
    assert all(str(path) in message for path in expected)
    assert "FEDLEARN_DATA_DIR" in message and "download=False" in message
    assert isinstance(err.value, DataError)


def test_data_dir_layouts_and_root_precedence(
    tmp_path: Path, data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    offline = tmp_path / "offline"
    offline.mkdir()
    np.savez(offline / "breastmnist.npz", **make_arrays("breastmnist", (5, 2, 2)))
    monkeypatch.setenv("FEDLEARN_DATA_DIR", str(offline))
    assert len(load_medmnist("breastmnist", download=False).train) == 5  # flat layout

    write_npz(offline, "breastmnist", make_arrays("breastmnist", (7, 2, 2)))
    assert len(load_medmnist("breastmnist", download=False).train) == 7  # subfolder first

    explicit = tmp_path / "explicit"
    write_npz(explicit, "breastmnist", make_arrays("breastmnist", (9, 2, 2)))
    assert len(load_medmnist("breastmnist", root=explicit, download=False).train) == 9


def _serve(served: Path, flag: str, arrays: dict) -> str:
    path = served / f"{flag}.npz"
    np.savez_compressed(path, **arrays)
    return hashlib.md5(path.read_bytes()).hexdigest()


def _point_table_at(monkeypatch: pytest.MonkeyPatch, flag: str, url: str, md5: str) -> None:
    entry = dataclasses.replace(MEDMNIST_INFO[flag], url=url, md5=md5)
    monkeypatch.setitem(MEDMNIST_INFO, flag, entry)


def test_http_download_verifies_md5_and_caches(
    tmp_path: Path, data_env: Path, file_server: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    served, base = file_server
    arrays = make_arrays("pneumoniamnist", (8, 2, 3))
    md5 = _serve(served, "pneumoniamnist", arrays)
    _point_table_at(monkeypatch, "pneumoniamnist", base + "pneumoniamnist.npz", md5)

    ds = load_medmnist("pneumoniamnist", progress=False)
    cached = data_env / "medmnist" / "pneumoniamnist.npz"
    assert ds.path == cached and hashlib.md5(cached.read_bytes()).hexdigest() == md5
    assert [p.name for p in cached.parent.iterdir()] == ["pneumoniamnist.npz"]  # no .part
    assert ds.train.tensors[0].shape == (8, 1, 28, 28)

    (served / "pneumoniamnist.npz").unlink()  # the second load must use the cache
    again = load_medmnist("pneumoniamnist", download=False)
    torch.testing.assert_close(again.train.tensors[0], ds.train.tensors[0])


def test_file_url_download_into_root(
    tmp_path: Path, data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    md5 = _serve(source, "breastmnist", make_arrays("breastmnist"))
    _point_table_at(monkeypatch, "breastmnist", (source / "breastmnist.npz").as_uri(), md5)
    ds = load_medmnist("breastmnist", root=tmp_path / "mine", progress=False)
    assert ds.path == tmp_path / "mine" / "medmnist" / "breastmnist.npz" and ds.path.is_file()


def test_wrong_md5_download_raises_and_leaves_nothing(
    tmp_path: Path, data_env: Path, file_server: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    served, base = file_server
    _serve(served, "breastmnist", make_arrays("breastmnist"))
    url = base + "breastmnist.npz"
    _point_table_at(monkeypatch, "breastmnist", url, "0" * 32)
    with pytest.raises(ChecksumError, match="expected 0{32}") as err:
        load_medmnist("breastmnist", progress=False)
    assert url in str(err.value)
    folder = data_env / "medmnist"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_downloaded_file_is_schema_checked_too(
    tmp_path: Path, data_env: Path, file_server: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    served, base = file_server
    arrays = make_arrays("breastmnist")
    arrays["test_labels"][0, 0] = 9
    md5 = _serve(served, "breastmnist", arrays)
    _point_table_at(monkeypatch, "breastmnist", base + "breastmnist.npz", md5)
    with pytest.raises(SchemaError, match="test_labels"):
        load_medmnist("breastmnist", progress=False)


def test_server_error_becomes_not_found_with_paths(
    tmp_path: Path, data_env: Path, file_server: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, base = file_server
    _point_table_at(monkeypatch, "breastmnist", base + "missing.npz", "0" * 32)
    with pytest.raises(DataNotFoundError, match="404") as err:
        load_medmnist("breastmnist", progress=False)
    assert str(data_env / "medmnist" / "breastmnist.npz") in str(err.value)
    folder = data_env / "medmnist"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_unknown_flag_is_rejected() -> None:
    with pytest.raises(ValueError, match="breastmnist"):
        load_medmnist("organmnist3d", download=False)


def test_table_covers_the_2d_family_consistently() -> None:
    assert set(MEDMNIST_INFO) == FLAGS_2D
    for flag, info in MEDMNIST_INFO.items():
        assert info.flag == flag
        assert info.url == f"https://zenodo.org/records/10519652/files/{flag}.npz?download=1"
        assert len(info.md5) == 32 and int(info.md5, 16) >= 0
        assert info.n_channels in (1, 3) and info.n_classes >= 2
        assert set(info.n_samples) == {"train", "val", "test"}
    assert MEDMNIST_INFO["breastmnist"].md5 == "750601b1f35ba3300ea97c75c52ff8f6"
    assert MEDMNIST_INFO["pneumoniamnist"].md5 == "28209eda62fecd6e6a2d98b1501bb15f"
    assert MEDMNIST_INFO["chestmnist"].multi_label
    assert MEDMNIST_INFO["retinamnist"].task == "ordinal-regression"


def test_table_matches_medmnist_package() -> None:
    medmnist = pytest.importorskip("medmnist")
    for flag, info in MEDMNIST_INFO.items():
        ref = medmnist.INFO[flag]
        assert info.url == ref["url"], flag
        assert info.md5 == ref["MD5"], flag
        assert info.task == ref["task"], flag
        assert info.n_channels == ref["n_channels"], flag
        assert info.label_names == tuple(ref["label"][str(i)] for i in range(len(ref["label"])))
        assert dict(info.n_samples) == ref["n_samples"], flag
        assert info.license == ref["license"], flag


@pytest.mark.realdata
def test_real_breastmnist(real_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDLEARN_CACHE_DIR", str(real_data_dir / "no-such-cache"))
    ds = load_medmnist("breastmnist", download=False)
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [546, 78, 156]
    assert ds.train.tensors[0].shape == (546, 1, 28, 28)
    for split in ("train", "val", "test"):
        assert set(ds.split(split).tensors[1].unique().tolist()) == {0, 1}


@pytest.mark.realdata
def test_real_pneumoniamnist(real_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDLEARN_CACHE_DIR", str(real_data_dir / "no-such-cache"))
    ds = load_medmnist("pneumoniamnist", download=False)
    assert (len(ds.val), len(ds.test)) == (524, 624)
    assert len(ds.train) > 0 and ds.train.tensors[0].shape[1:] == (1, 28, 28)
    for split in ("train", "val", "test"):
        labels = ds.split(split).tensors[1]
        assert set(labels.unique().tolist()) == {0, 1}
