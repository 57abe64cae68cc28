"""A consortium of simulated hospitals built from one MedMNIST data set.

The capstone study (notebook 07) needs hospitals that differ the way real ones do, each with
its own training, validation and test patients:

* **quantity skew**: a university hospital holds ten times the images of a rural clinic
  (``shares``);
* **label skew**: each hospital's label mix is drawn from a Dirichlet centred on the global
  one, so its disease rate varies (``alpha``; ``inf`` keeps every hospital at the global mix);
* **feature skew** (optional): each hospital's "scanner" is a fixed intensity transform,
  ``x -> clip(gain * x ** gamma + offset, 0, 1)``, the same family notebook 04 introduced.

A hospital's validation and test patients come from *its own* population: each class of the
official val/test split is dealt out in the same proportions as that class of the training
split, so a hospital with 30 % of the normal training X-rays also gets about 30 % of the normal
test X-rays. The hospitals' test sets together are exactly the official test split, which
makes the pooled test metrics comparable with published centralised numbers.

Labels are re-coded so that **1 always means disease** (pneumonia; malignant tumour): in
BreastMNIST the malignant class is 0, which would otherwise swap sensitivity and specificity.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import TensorDataset

from . import partition
from .augment import Augment, augmented_clients
from .client import Client

__all__ = ["Scanner", "SCANNERS", "HOSPITALS", "DISEASE_LABEL", "CLASS_NAMES", "Hospital",
           "Consortium", "skewed_label_partition", "proportional_split", "build_consortium",
           "balanced_class_weights", "CASE_STUDY_TRAIN_COUNTS"]

#: Which original label means disease, per MedMNIST flag (BreastMNIST: 0 = malignant).
DISEASE_LABEL = {"pneumoniamnist": 1, "breastmnist": 0}
#: Class names after re-coding (index 1 = disease).
CLASS_NAMES = {"pneumoniamnist": ("normal", "pneumonia"),
               "breastmnist": ("benign/normal", "malignant")}
#: ``(healthy, disease)`` training images the case study keeps (``build_consortium``'s
#: ``train_class_counts``), so that its hospitals are the same on every copy of the data: the
#: official PneumoniaMNIST has 1,214 normal and 3,494 pneumonia training images, the course's
#: offline copy 388 and 3,494; BreastMNIST's copies agree (None: keep every image).
CASE_STUDY_TRAIN_COUNTS: dict[str, tuple[int, int] | None] = {
    "pneumoniamnist": (388, 3494), "breastmnist": None}
#: The default consortium: six hospitals and their shares of the training images.
HOSPITALS: tuple[tuple[str, float], ...] = (
    ("University hospital", 0.38), ("City hospital", 0.24), ("Regional hospital", 0.16),
    ("District hospital", 0.11), ("Community clinic", 0.07), ("Rural clinic", 0.04))


@dataclass(frozen=True)
class Scanner:
    """One hospital's imaging chain: ``x -> clip(gain * x ** gamma + offset, 0, 1)``."""

    name: str = "reference"
    gain: float = 1.0
    gamma: float = 1.0
    offset: float = 0.0

    def __post_init__(self) -> None:
        if not self.gain > 0 or not self.gamma > 0:
            raise ValueError(f"gain and gamma must be > 0, got {self.gain}, {self.gamma}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (self.gain * x.clamp(0, 1) ** self.gamma + self.offset).clamp(0, 1)


#: Six scanners: notebook 04's four, a high-gamma (washed-out shadows) and a bright one.
SCANNERS: tuple[Scanner, ...] = (
    Scanner("reference"), Scanner("low contrast", 0.4, 1.0, 0.45), Scanner("dark", 0.6),
    Scanner("gamma 0.4", 1.0, 0.4), Scanner("gamma 1.8", 1.0, 1.8),
    Scanner("bright", 0.7, 1.0, 0.3))


def _largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """Integers proportional to ``weights`` that sum to ``total`` (Hamilton's method)."""
    w = np.asarray(weights, dtype=float)
    raw = w / w.sum() * total if w.sum() > 0 else np.full(w.shape, total / w.size)
    out = np.floor(raw).astype(np.int64)
    short = total - int(out.sum())
    out[np.argsort(-(raw - out), kind="stable")[:short]] += 1
    return out


def _deal(labels: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Give hospital ``k`` exactly ``counts[k, c]`` random examples of the ``c``-th class."""
    k = counts.shape[0]
    chunks: list[list[np.ndarray]] = [[] for _ in range(k)]
    for c, cls in enumerate(np.unique(labels)):
        idx = np.flatnonzero(labels == cls)
        for j, part in enumerate(partition.size_partition(idx.size, counts[:, c], seed=rng)):
            chunks[j].append(idx[part])
    return [np.sort(np.concatenate(ch)).astype(np.int64) for ch in chunks]


def _check_floor(class_sizes: np.ndarray, k: int, min_per_class: int) -> None:
    if min_per_class < 0:
        raise ValueError(f"min_per_class must be >= 0, got {min_per_class}")
    if class_sizes.min() < k * min_per_class:
        raise ValueError(f"a class has {class_sizes.min()} examples: too few to give each of "
                         f"the {k} hospitals min_per_class={min_per_class}")


def _sinkhorn(m: np.ndarray, rows: np.ndarray, cols: np.ndarray, iters: int = 500) -> np.ndarray:
    """Rescale rows and columns of a positive matrix until its sums are ``rows`` and ``cols``.

    Iterative proportional fitting keeps every cross-ratio ``m[i,a] m[j,b] / (m[i,b] m[j,a])``
    of the start matrix, i.e. which hospital is richer in which class, while matching both
    margins.
    """
    m = m.copy()
    for _ in range(iters):
        m *= (cols / m.sum(axis=0))[None, :]
        m *= (rows / m.sum(axis=1))[:, None]
        if np.allclose(m.sum(axis=0), cols, rtol=1e-9, atol=1e-9):
            break
    return m


def skewed_label_partition(labels: Sequence[int] | np.ndarray, shares: Sequence[float],
                           alpha: float = 1.0, min_per_class: int = 5,
                           seed: int | np.random.Generator = 0) -> list[np.ndarray]:
    """Quantity skew *and* label skew at once.

    1. Hospital sizes are exactly ``shares`` of the data (largest remainder): quantity skew.
    2. Each hospital draws a label mix ``pi_k ~ Dir(alpha * p)``, ``p`` the global class
       frequencies (Hsu, Qi and Brown, 2019): ``E[pi_k] = p``; small ``alpha`` = strong label
       skew, ``alpha = inf`` = every hospital at the global mix.
    3. The matrix ``size_k * pi_k`` is rescaled (iterative proportional fitting) so its column
       sums equal the real class counts, since there are only so many images of each class;
       which hospital is richer in which class is kept.
    4. Each hospital first gets ``min_per_class`` examples of every class, so it can compute
       a sensitivity and a specificity; the rest is dealt out by the fitted counts.
    """
    y = np.asarray(labels)
    s = np.asarray(shares, dtype=float)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {y.shape}")
    if s.ndim != 1 or s.size < 1 or (s <= 0).any() or not np.isfinite(s).all():
        raise ValueError(f"shares must be positive numbers, got {list(s)}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0 (or inf), got {alpha}")
    rng = np.random.default_rng(seed) if not isinstance(seed, np.random.Generator) else seed
    k = s.size
    class_sizes = np.unique(y, return_counts=True)[1]
    _check_floor(class_sizes, k, min_per_class)
    n_cls = class_sizes.size
    cols = (class_sizes - k * min_per_class).astype(float)
    rows = _largest_remainder(s, int(cols.sum())).astype(float)
    prior = class_sizes / class_sizes.sum()
    if math.isinf(alpha):
        mix = np.repeat(prior[None, :], k, axis=0)
    else:
        mix = np.clip(rng.dirichlet(alpha * prior, size=k), 1e-6, None)
    fitted = _sinkhorn(rows[:, None] * mix, rows, cols) if cols.sum() > 0 else \
        np.zeros((k, n_cls))
    counts = np.stack([min_per_class + _largest_remainder(fitted[:, c], int(cols[c]))
                       for c in range(n_cls)], axis=1)
    return _deal(y, counts, rng)


def proportional_split(labels: Sequence[int] | np.ndarray, reference_counts: np.ndarray,
                       min_per_class: int = 1,
                       seed: int | np.random.Generator = 0) -> list[np.ndarray]:
    """Split ``labels`` so each hospital gets each class in the share it has in the reference.

    ``reference_counts[k, c]`` is how many class-``c`` training examples hospital ``k`` holds;
    class ``c`` of ``labels`` is dealt out in proportion to column ``c`` (largest remainder),
    after ``min_per_class`` each. This gives each hospital validation/test patients from its
    own population.
    """
    y = np.asarray(labels)
    ref = np.asarray(reference_counts, dtype=float)
    class_sizes = np.unique(y, return_counts=True)[1]
    if ref.ndim != 2 or ref.shape[1] != class_sizes.size:
        raise ValueError(f"reference_counts must be (hospitals, {class_sizes.size} classes), "
                         f"got shape {ref.shape}")
    k = ref.shape[0]
    _check_floor(class_sizes, k, min_per_class)
    rng = np.random.default_rng(seed) if not isinstance(seed, np.random.Generator) else seed
    counts = np.stack([min_per_class + _largest_remainder(ref[:, c], int(n - k * min_per_class))
                       for c, n in enumerate(class_sizes)], axis=1)
    return _deal(y, counts, rng)


def balanced_class_weights(labels: Sequence[int] | np.ndarray,
                           num_classes: int = 2) -> tuple[float, ...]:
    """``n / (C * n_c)``: the weights under which every class contributes equally to the loss.

    PneumoniaMNIST's training split here is 90 % pneumonia; unweighted, a network first learns
    to call everything pneumonia. Only the class *counts* are needed, an aggregate a hospital
    consortium can share (or sum securely) without revealing any patient.
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    if (counts == 0).any():
        raise ValueError(f"every class needs at least one example, counts are {counts.tolist()}")
    return tuple(float(counts.sum() / (num_classes * c)) for c in counts)


@dataclass(frozen=True, eq=False)
class Hospital:
    """One hospital: a name, a scanner and its own train / validation / test patients."""

    name: str
    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    scanner: Scanner | None = None

    def split(self, name: str) -> TensorDataset:
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}; expected 'train', 'val' or 'test'")
        return getattr(self, name)

    def __repr__(self) -> str:
        return (f"Hospital({self.name!r}, train={len(self.train)}, val={len(self.val)}, "
                f"test={len(self.test)}, scanner={self.scanner.name if self.scanner else None})")


@dataclass(frozen=True, eq=False)
class Consortium:
    """The hospitals of one study, with what is needed to describe them in a model card."""

    flag: str
    class_names: tuple[str, ...]
    hospitals: tuple[Hospital, ...]
    alpha: float
    seed: int

    def __len__(self) -> int:
        return len(self.hospitals)

    def __iter__(self) -> Iterator[Hospital]:
        return iter(self.hospitals)

    def __getitem__(self, i: int) -> Hospital:
        return self.hospitals[i]

    @property
    def names(self) -> list[str]:
        return [h.name for h in self.hospitals]

    def clients(self, eval_split: str = "test", augment: Augment | None = None) -> list[Client]:
        """One :class:`~fedlearn.Client` per hospital, scored on its ``eval_split``.

        Use ``eval_split="val"`` for every choice made while designing the study (method,
        hyperparameters), and the test split once, at the end. With ``augment`` every client
        is an :class:`~fedlearn.augment.AugmentedClient`. Every client also carries its
        hospital's validation split as ``Client.val``, which the tuner
        (:mod:`fedlearn.tuning`) reads instead of ``test``.
        """
        clients = [Client(cid=i, train=h.train, test=h.split(eval_split), name=h.name,
                          val=h.val)
                   for i, h in enumerate(self.hospitals)]
        return list(augmented_clients(clients, augment)) if augment is not None else clients

    def pooled(self, split: str) -> TensorDataset:
        """All hospitals' ``split`` in one data set (what centralising the data would give)."""
        parts = [h.split(split).tensors for h in self.hospitals]
        return TensorDataset(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))

    def label_counts(self, split: str = "train") -> np.ndarray:
        """``counts[hospital, class]`` of ``split``."""
        return np.stack([np.bincount(h.split(split).tensors[1].numpy(),
                                     minlength=len(self.class_names)) for h in self.hospitals])

    def class_weights(self) -> tuple[float, ...]:
        """Balanced loss weights from the pooled training label counts."""
        return balanced_class_weights(self.pooled("train").tensors[1].numpy(),
                                      len(self.class_names))

    def table(self) -> pd.DataFrame:
        """One row per hospital: scanner, sizes, disease rates and label skew (TV distance)."""
        counts = {s: self.label_counts(s) for s in ("train", "val", "test")}
        y = self.pooled("train").tensors[1].numpy()
        offsets = np.cumsum([0] + [len(h.train) for h in self.hospitals])
        parts = [np.arange(offsets[i], offsets[i + 1]) for i in range(len(self))]
        tv = partition.label_tv_distance(y, parts, len(self.class_names))
        disease = self.class_names[1]
        rows = []
        for i, h in enumerate(self.hospitals):
            row: dict[str, object] = {"hospital": h.name}
            if any(x.scanner is not None for x in self.hospitals):
                row["scanner"] = h.scanner.name if h.scanner else "reference"
            for s in ("train", "val", "test"):
                row[f"n {s}"] = int(counts[s][i].sum())
            row[f"% {disease} (train)"] = round(100 * counts["train"][i, 1] /
                                                counts["train"][i].sum(), 1)
            row[f"% {disease} (test)"] = round(100 * counts["test"][i, 1] /
                                               counts["test"][i].sum(), 1)
            row["label skew (TV)"] = round(float(tv[i]), 3)
            rows.append(row)
        return pd.DataFrame(rows).set_index("hospital")

    def describe(self) -> dict[str, object]:
        """A JSON-ready summary for a model card."""
        return {"dataset": self.flag, "class_names": list(self.class_names),
                "label_skew_alpha": self.alpha, "partition_seed": self.seed,
                "hospitals": [{"name": h.name, "n_train": len(h.train), "n_val": len(h.val),
                               "n_test": len(h.test),
                               "scanner": h.scanner.name if h.scanner else None}
                              for h in self.hospitals]}


def build_consortium(data: object, hospitals: Sequence[tuple[str, float]] = HOSPITALS, *,
                     alpha: float = 1.0, min_per_class: tuple[int, int, int] = (5, 1, 3),
                     scanners: Sequence[Scanner] | None = None, disease_label: int | None = None,
                     train_class_counts: tuple[int, int] | None = None,
                     seed: int = 0) -> Consortium:
    """Hospitals from a loaded MedMNIST data set (``fedlearn.data.load_medmnist(...)``).

    Args:
        data: a :class:`fedlearn.data.MedMNIST` (binary task) or anything with ``flag`` and
            ``split(name)`` returning a TensorDataset of images and integer labels.
        hospitals: ``(name, share of the training images)`` pairs.
        alpha: label skew of :func:`skewed_label_partition` (``inf``: none).
        min_per_class: at least this many examples of each class per hospital in
            (train, val, test), so each hospital's sensitivity and specificity are defined.
        scanners: one :class:`Scanner` per hospital (feature skew), or None.
        disease_label: the original label meaning disease (default: :data:`DISEASE_LABEL`).
        train_class_counts: ``(healthy, disease)`` training images to keep (a seeded
            :func:`fedlearn.partition.class_subsample`) before dealing them out, so that the
            hospitals' per-class counts are the same on every copy of the data (the course's
            offline PneumoniaMNIST has 388 normal training images, the official file 1,214).
            None keeps every training image.
        seed: seeds every random split.
    """
    flag = str(getattr(data, "flag", "custom"))
    disease = DISEASE_LABEL.get(flag, 1) if disease_label is None else disease_label
    names = [n for n, _ in hospitals]
    if scanners is not None and len(scanners) != len(names):
        raise ValueError(f"{len(scanners)} scanners for {len(names)} hospitals")
    rng = np.random.default_rng(seed)
    xs, ys = {}, {}
    for s in ("train", "val", "test"):
        x, y = data.split(s).tensors  # type: ignore[attr-defined]
        if y.dim() != 1 or y.unique().numel() != 2:
            raise ValueError(f"{flag} {s}: expected binary integer labels, got shape "
                             f"{tuple(y.shape)} with values {y.unique().tolist()}")
        xs[s], ys[s] = x, (y == disease).long()  # re-code: 1 = disease
    if train_class_counts is not None:
        # its own stream: how many draws a subsample consumes depends on the copy's class
        # sizes, and the partitions below must not (same per-class counts on every copy)
        own = np.random.default_rng([seed, 1])
        keep = torch.as_tensor(partition.class_subsample(ys["train"].numpy(),
                                                         list(train_class_counts), own))
        xs["train"], ys["train"] = xs["train"][keep], ys["train"][keep]
    parts = {"train": skewed_label_partition(ys["train"].numpy(), [w for _, w in hospitals],
                                             alpha, min_per_class[0], rng)}
    ref = np.stack([np.bincount(ys["train"].numpy()[p], minlength=2) for p in parts["train"]])
    for s, m in (("val", min_per_class[1]), ("test", min_per_class[2])):
        parts[s] = proportional_split(ys[s].numpy(), ref, m, rng)
    members = []
    for k, name in enumerate(names):
        sc = scanners[k] if scanners is not None else None
        sets = {}
        for s in ("train", "val", "test"):
            ix = torch.as_tensor(parts[s][k])
            x = xs[s][ix]
            sets[s] = TensorDataset(sc(x) if sc is not None else x.clone(), ys[s][ix])
        members.append(Hospital(name, sets["train"], sets["val"], sets["test"], sc))
    class_names = CLASS_NAMES.get(flag, ("healthy", "disease"))
    return Consortium(flag, tuple(class_names), tuple(members), float(alpha), seed)
