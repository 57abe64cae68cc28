"""Tests for fedlearn.hospitals: the skewed partitions, the per-hospital splits, the consortium."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from fedlearn import partition
from fedlearn.client import Client
from fedlearn.hospitals import (
    HOSPITALS,
    SCANNERS,
    Scanner,
    balanced_class_weights,
    build_consortium,
    proportional_split,
    skewed_label_partition,
)

from .casestudy_data import fake_medmnist, tags


def labels(n0: int, n1: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.r_[np.zeros(n0, int), np.ones(n1, int)])


def assert_partition(parts: list[np.ndarray], n: int) -> None:
    allidx = np.concatenate(parts)
    assert np.array_equal(np.sort(allidx), np.arange(n)), "must be disjoint and complete"
    assert all(p.dtype == np.int64 and np.all(np.diff(p) > 0) for p in parts)


# ------------------------------------------------------------------------- skewed partitions


@pytest.mark.parametrize("alpha", [0.3, 1.0, 10.0, math.inf])
def test_skewed_partition_is_a_partition_with_the_requested_sizes(alpha):
    y = labels(400, 3500)
    shares = [s for _, s in HOSPITALS]
    parts = skewed_label_partition(y, shares, alpha=alpha, min_per_class=5, seed=1)
    assert_partition(parts, y.size)
    counts = partition.label_counts(y, parts)
    assert counts.min() >= 5, "every hospital needs both classes"
    # sizes: the floors plus the shares of the rest, up to one example per class of rounding
    target = 2 * 5 + np.asarray(shares) / sum(shares) * (y.size - len(shares) * 2 * 5)
    assert np.all(np.abs(counts.sum(axis=1) - target) <= 2 + 1e-9)


def test_alpha_controls_label_skew():
    y = labels(1000, 2000)
    shares = [0.3, 0.3, 0.2, 0.1, 0.1]

    def mean_tv(alpha: float) -> float:
        return float(np.mean([partition.label_tv_distance(
            y, skewed_label_partition(y, shares, alpha, 5, seed=s)).mean() for s in range(8)]))

    tv_small, tv_big, tv_inf = mean_tv(0.3), mean_tv(30.0), mean_tv(math.inf)
    assert tv_small > 0.2 > tv_big
    assert tv_inf < 0.01, "alpha = inf keeps every hospital at the global label mix"


def test_skewed_partition_is_seeded():
    y = labels(300, 700)
    a = skewed_label_partition(y, [0.5, 0.3, 0.2], 1.0, seed=3)
    b = skewed_label_partition(y, [0.5, 0.3, 0.2], 1.0, seed=3)
    c = skewed_label_partition(y, [0.5, 0.3, 0.2], 1.0, seed=4)
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(np.array_equal(p, q) for p, q in zip(a, c, strict=True))


@pytest.mark.parametrize("kwargs,match", [
    ({"shares": [0.5, -0.1]}, "shares"),
    ({"alpha": 0.0}, "alpha"),
    ({"min_per_class": 200}, "too few"),
    ({"min_per_class": -1}, "min_per_class"),
])
def test_skewed_partition_rejects_bad_arguments(kwargs, match):
    args = {"labels": labels(100, 300), "shares": [0.5, 0.5], "alpha": 1.0, "min_per_class": 5}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        skewed_label_partition(**args)


def test_proportional_split_follows_the_reference_shares():
    ref = np.array([[10, 300], [60, 100], [30, 100]])
    y = labels(100, 500, seed=2)
    parts = proportional_split(y, ref, min_per_class=2, seed=0)
    assert_partition(parts, y.size)
    counts = partition.label_counts(y, parts)
    for c, n_c in enumerate((100, 500)):
        expected = 2 + ref[:, c] / ref[:, c].sum() * (n_c - 3 * 2)
        assert np.all(np.abs(counts[:, c] - expected) < 1.0)
    with pytest.raises(ValueError, match="reference_counts"):
        proportional_split(y, ref[:, :1])


def test_balanced_class_weights():
    w = balanced_class_weights([0, 1, 1, 1])
    assert w == pytest.approx((2.0, 2 / 3))
    counts = np.array([1, 3])
    assert np.allclose(np.asarray(w) * counts, 2.0), "each class then weighs n / C in total"
    with pytest.raises(ValueError, match="at least one"):
        balanced_class_weights([1, 1, 1])


# ------------------------------------------------------------------------------- scanners


def test_scanner_formula_and_reference_identity():
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(Scanner()(x), x)
    s = Scanner("t", gain=0.5, gamma=2.0, offset=0.1)
    assert torch.allclose(s(x), (0.5 * x ** 2 + 0.1).clamp(0, 1))
    assert float(Scanner("hot", 3.0)(x).max()) <= 1.0
    with pytest.raises(ValueError, match="gain"):
        Scanner("bad", gain=0.0)
    assert len(SCANNERS) == len(HOSPITALS)


# ------------------------------------------------------------------------------ consortium


def test_consortium_splits_cover_the_data_and_keep_hospitals_apart():
    data = fake_medmnist()
    cons = build_consortium(data, HOSPITALS[:4], alpha=1.0, min_per_class=(5, 1, 3), seed=0)
    assert len(cons) == 4 and cons.names == [n for n, _ in HOSPITALS[:4]]
    for split in ("train", "val", "test"):
        seen = [tags(h.split(split)) for h in cons]
        union = set().union(*seen)
        assert sum(len(s) for s in seen) == len(union), f"{split}: a patient in two hospitals"
        assert union == tags(data.split(split)), f"{split}: every patient somewhere"
    counts = cons.label_counts("test")
    assert counts.min() >= 3


def test_val_and_test_follow_each_hospitals_training_mix():
    data = fake_medmnist(sizes=(3000, 1000, 1000), frac_disease=0.5)
    cons = build_consortium(data, HOSPITALS[:3], alpha=0.5, min_per_class=(5, 1, 1), seed=1)
    tr = cons.label_counts("train") / cons.label_counts("train").sum(axis=1, keepdims=True)
    te = cons.label_counts("test") / cons.label_counts("test").sum(axis=1, keepdims=True)
    assert np.abs(tr - te).max() < 0.05


def test_labels_are_recoded_so_that_one_means_disease():
    data = fake_medmnist(flag="breastmnist", disease=0, frac_disease=0.3)
    cons = build_consortium(data, HOSPITALS[:3], alpha=math.inf, seed=0)
    assert cons.class_names == ("benign/normal", "malignant")
    y = cons.pooled("test").tensors[1]
    sick_orig = int((data.test.tensors[1] == 0).sum())
    assert int(y.sum()) == sick_orig, "label 1 must count the malignant (original 0) images"


def test_feature_skew_applies_each_hospitals_scanner():
    data = fake_medmnist()
    plain = build_consortium(data, HOSPITALS, seed=5)
    scanned = build_consortium(data, HOSPITALS, scanners=SCANNERS, seed=5)
    for p, s, sc in zip(plain, scanned, SCANNERS, strict=True):
        assert s.scanner == sc
        for split in ("train", "val", "test"):
            assert torch.allclose(s.split(split).tensors[0], sc(p.split(split).tensors[0]))
            assert torch.equal(s.split(split).tensors[1], p.split(split).tensors[1])
    with pytest.raises(ValueError, match="scanners"):
        build_consortium(data, HOSPITALS, scanners=SCANNERS[:2])


def test_consortium_helpers():
    cons = build_consortium(fake_medmnist(), HOSPITALS[:3], seed=0)
    table = cons.table()
    assert list(table.index) == cons.names
    assert table["n train"].sum() == 600 and table["n test"].sum() == 180
    assert {"% pneumonia (train)", "label skew (TV)"} <= set(table.columns)
    clients = cons.clients("val")
    assert all(isinstance(c, Client) for c in clients)
    assert [len(c.test) for c in clients] == [len(h.val) for h in cons]
    # every client carries its hospital's own validation split, whatever eval_split is
    assert all(c.val is h.val for c, h in zip(cons.clients(), cons, strict=True))
    assert len(cons.pooled("train")) == 600
    w = cons.class_weights()
    n = np.bincount(cons.pooled("train").tensors[1].numpy())
    assert np.allclose(np.asarray(w) * n, 300.0)
    json.dumps(cons.describe())  # must be JSON-ready for the model card
    with pytest.raises(ValueError, match="split"):
        cons[0].split("training")


def test_non_binary_labels_are_refused():
    data = fake_medmnist()
    data.train.tensors[1][:5] = 2
    with pytest.raises(ValueError, match="binary"):
        build_consortium(data, HOSPITALS[:2])


@pytest.mark.realdata
def test_real_pneumonia_consortium(real_data_dir):
    from fedlearn.data import load_medmnist

    data = load_medmnist("pneumoniamnist", root=real_data_dir, download=False, progress=False)
    cons = build_consortium(data, alpha=1.0, seed=0)
    assert len(cons) >= 5
    assert sum(len(h.train) for h in cons) == len(data.train)  # never assume official counts
    assert sum(len(h.test) for h in cons) == len(data.test) == 624
    assert cons.label_counts("test").min() >= 3
