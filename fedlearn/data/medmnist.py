"""MedMNIST v2 2D data sets at 28x28: a verified table of the official files and a loader.

MedMNIST gives the course real medical images small enough to train on a laptop CPU, in a
single ``.npz`` per data set with a fixed train/val/test split. The table of official files
(``_medmnist_table``) is copied from the ``medmnist`` package's ``INFO`` (Zenodo record
10519652) so that fedlearn does not depend on that package at run time; the tests
cross-check it.

Local copies (``FEDLEARN_DATA_DIR`` or the cache) are not md5-checked, because offline copies
are often re-saved (different bytes, sometimes fewer training images), but every file, local
or downloaded, goes through a strict schema check before any tensor is built.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch
from torch.utils.data import TensorDataset

from fedlearn.data._files import locate, md5sum
from fedlearn.data._medmnist_table import MEDMNIST_TABLE
from fedlearn.data.errors import CorruptFileError, SchemaError

__all__ = [
    "MEDMNIST_URL",
    "MEDMNIST_INFO",
    "SPLITS",
    "MedMNISTInfo",
    "MedMNIST",
    "load_medmnist",
    "read_medmnist_npz",
]

MEDMNIST_URL = "https://zenodo.org/records/10519652/files/{flag}.npz?download=1"
SPLITS = ("train", "val", "test")
IMAGE_SIZE = 28
_KEYS = tuple(f"{split}_{kind}" for split in SPLITS for kind in ("images", "labels"))


@dataclass(frozen=True)
class MedMNISTInfo:
    """Metadata of one MedMNIST flag (immutable; ``n_samples`` are the *official* sizes)."""

    flag: str
    task: str
    n_channels: int
    label_names: tuple[str, ...]
    n_samples: Mapping[str, int]
    md5: str
    url: str
    license: str

    @property
    def n_classes(self) -> int:
        """Number of classes (or of binary labels, for multi-label chestmnist)."""
        return len(self.label_names)

    @property
    def multi_label(self) -> bool:
        """True when each image carries several independent 0/1 labels (chestmnist)."""
        return self.task.startswith("multi-label")


MEDMNIST_INFO: dict[str, MedMNISTInfo] = {
    flag: MedMNISTInfo(
        flag=flag,
        task=row.task,
        n_channels=row.n_channels,
        label_names=row.labels,
        n_samples=MappingProxyType(dict(zip(SPLITS, row.n_samples, strict=True))),
        md5=row.md5,
        url=MEDMNIST_URL.format(flag=flag),
        license=row.license,
    )
    for flag, row in MEDMNIST_TABLE.items()
}


@dataclass(frozen=True, eq=False)
class MedMNIST:
    """A loaded, validated MedMNIST data set.

    ``train``/``val``/``test`` hold float32 images in [0, 1] shaped (N, C, 28, 28) and labels
    that are int64 (N,) for single-label tasks or float32 (N, L) for multi-label chestmnist,
    ready for ``nn.CrossEntropyLoss`` / ``nn.BCEWithLogitsLoss`` respectively.
    """

    flag: str
    info: MedMNISTInfo
    path: Path
    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    arrays: Mapping[str, np.ndarray] = field(repr=False)

    @property
    def n_classes(self) -> int:
        return self.info.n_classes

    @property
    def n_channels(self) -> int:
        return self.info.n_channels

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.info.label_names

    @property
    def task(self) -> str:
        return self.info.task

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name}={len(self.split(name))}" for name in SPLITS)
        return f"MedMNIST(flag={self.flag!r}, task={self.task!r}, {sizes}, path='{self.path}')"

    def provenance(self) -> str:
        """Which file these tensors came from, for a notebook to state beside its outputs.

        Offline copies are not md5-checked and need not be the official file (the course's
        offline PneumoniaMNIST lacks 826 normal training images), so a notebook's numbers are
        only reproducible together with this line: file name, md5, whether it is the official
        file, and the split sizes.
        """
        md5 = md5sum(self.path)
        which = ("the official file" if md5 == self.info.md5 else
                 f"NOT the official file (md5 {self.info.md5})")
        sizes = "/".join(str(len(self.split(s))) for s in SPLITS)
        return f"{self.path.name}: md5 {md5}, {which}; train/val/test {sizes} images"

    def split(self, name: str) -> TensorDataset:
        """The TensorDataset of split ``name`` ('train', 'val' or 'test')."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return getattr(self, name)

    def numpy(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Raw read-only uint8 images (N, 28, 28[, 3]) and labels (N, 1 or L) of ``split``.

        Useful for partitioning by label or plotting without undoing the tensor conversion.
        """
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return self.arrays[f"{split}_images"], self.arrays[f"{split}_labels"]


def _info(flag: str) -> MedMNISTInfo:
    key = flag.lower()
    if key not in MEDMNIST_INFO:
        raise ValueError(f"unknown MedMNIST flag {flag!r}; expected one of {sorted(MEDMNIST_INFO)}")
    return MEDMNIST_INFO[key]


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Read every array of ``path`` eagerly, turning any low-level failure into a DataError."""
    unreadable = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
    try:
        archive = np.load(path, allow_pickle=False)
    except unreadable as exc:
        raise CorruptFileError(
            f"{path} is not a readable .npz archive (truncated or not a zip file?): {exc}",
            path=path,
        ) from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise CorruptFileError(f"{path} holds a single array, not an .npz archive", path=path)
    with archive:
        found = set(archive.files)
        missing = [key for key in _KEYS if key not in found]
        extra = sorted(found - set(_KEYS))
        if missing or extra:
            raise SchemaError(
                f"{path} has the wrong keys: missing {missing}, unexpected {extra}; "
                f"a MedMNIST file holds exactly {list(_KEYS)}",
                path=path,
            )
        arrays: dict[str, np.ndarray] = {}
        for key in _KEYS:
            try:
                arrays[key] = archive[key]
            except unreadable as exc:
                raise CorruptFileError(
                    f"{path}: array {key!r} cannot be read (corrupt or truncated): {exc}",
                    path=path,
                ) from exc
    return arrays


def _check_schema(arrays: Mapping[str, np.ndarray], info: MedMNISTInfo, path: Path) -> None:
    """Raise SchemaError unless ``arrays`` look exactly like an official file of ``info.flag``."""
    spatial = (IMAGE_SIZE, IMAGE_SIZE) if info.n_channels == 1 else (IMAGE_SIZE, IMAGE_SIZE, 3)
    width = info.n_classes if info.multi_label else 1
    for split in SPLITS:
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        where = f"{path} ({info.flag}): {split}"
        if images.dtype != np.uint8:
            raise SchemaError(f"{where}_images has dtype {images.dtype}, expected uint8", path=path)
        if images.ndim != 1 + len(spatial) or images.shape[1:] != spatial:
            raise SchemaError(
                f"{where}_images has shape {images.shape}, expected (N, *{spatial}) "
                f"for {info.n_channels} channel(s)",
                path=path,
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise SchemaError(
                f"{where}_labels has dtype {labels.dtype}, expected an integer type (uint8)",
                path=path,
            )
        if labels.ndim != 2 or labels.shape[1] != width:
            raise SchemaError(
                f"{where}_labels has shape {labels.shape}, expected (N, {width})", path=path
            )
        if len(images) != len(labels):
            raise SchemaError(
                f"{where} has {len(images)} images but {len(labels)} labels", path=path
            )
        if len(images) == 0:
            raise SchemaError(f"{where} split is empty", path=path)
        upper = 2 if info.multi_label else info.n_classes
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= upper:
            raise SchemaError(
                f"{where}_labels range over [{low}, {high}], outside [0, {upper - 1}] "
                f"({'0/1 flags' if info.multi_label else f'{info.n_classes} classes'})",
                path=path,
            )


def read_medmnist_npz(path: str | Path, flag: str) -> dict[str, np.ndarray]:
    """Read and schema-check a MedMNIST ``.npz``; return its six raw arrays (read-only).

    Raises CorruptFileError if the archive cannot be read and SchemaError if its keys, dtypes,
    shapes, sizes or label ranges are wrong. The md5 is deliberately not checked here.
    """
    path = Path(path)
    info = _info(flag)
    arrays = _read_npz(path)
    _check_schema(arrays, info, path)
    for array in arrays.values():
        array.flags.writeable = False
    return arrays


def _to_dataset(images: np.ndarray, labels: np.ndarray, info: MedMNISTInfo) -> TensorDataset:
    """uint8 (N, 28, 28[, 3]) -> float32 (N, C, 28, 28) in [0, 1]; labels to loss-ready dtype."""
    x = torch.from_numpy(images.astype(np.float32) / np.float32(255.0))
    x = x.unsqueeze(1) if images.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()
    if info.multi_label:
        y = torch.from_numpy(labels.astype(np.float32))
    else:
        y = torch.from_numpy(labels[:, 0].astype(np.int64))
    return TensorDataset(x, y)


def load_medmnist(
    flag: str,
    root: str | Path | None = None,
    download: bool = True,
    *,
    progress: bool = True,
) -> MedMNIST:
    """Load MedMNIST ``flag`` at 28x28, from a local copy or a verified download.

    Args:
        flag: one of ``MEDMNIST_INFO`` (e.g. ``"breastmnist"``, ``"pneumoniamnist"``).
        root: folder to search first and to download into (else ``FEDLEARN_DATA_DIR``, then
            the cache; see :mod:`fedlearn.data._files`).
        download: fetch the official file when no local copy exists.
        progress: show a tqdm bar while downloading.

    Raises:
        DataNotFoundError: no local copy, and download disabled or failing.
        ChecksumError: the downloaded file does not match the published md5.
        CorruptFileError, SchemaError: the file is unreadable or not a valid MedMNIST file.
    """
    info = _info(flag)
    path = locate(
        "medmnist",
        f"{info.flag}.npz",
        url=info.url,
        md5=info.md5,
        root=root,
        download=download,
        progress=progress,
    )
    arrays = read_medmnist_npz(path, info.flag)
    splits = {
        split: _to_dataset(arrays[f"{split}_images"], arrays[f"{split}_labels"], info)
        for split in SPLITS
    }
    return MedMNIST(flag=info.flag, info=info, path=path, arrays=MappingProxyType(arrays), **splits)
