"""Tests for fedlearn.partition: structural invariants (property-based) plus statistical checks
that the skewed partitioners really produce the heterogeneity they promise."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fedlearn import partition  # noqa: E402
from fedlearn.partition import (  # noqa: E402
    dirichlet_partition,
    iid_partition,
    label_counts,
    label_tv_distance,
    natural_partition,
    plot_label_counts,
    quantity_skew_partition,
    shard_partition,
    size_partition,
    summarize,
)

SETTINGS = settings(max_examples=40, deadline=None)


def assert_valid_partition(parts: list[np.ndarray], n: int, num_clients: int) -> None:
    """Disjoint, complete, one sorted int64 array per client."""
    assert isinstance(parts, list)
    assert len(parts) == num_clients
    for p in parts:
        assert isinstance(p, np.ndarray)
        assert p.dtype == np.int64
        assert p.ndim == 1
        assert np.all(np.diff(p) > 0), "indices must be sorted and unique within a client"
    allidx = np.concatenate(parts)
    assert allidx.size == n, "clients overlap or miss examples"
    np.testing.assert_array_equal(np.sort(allidx), np.arange(n))


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@st.composite
def labelled(draw, min_n: int = 1, max_n: int = 400, max_classes: int = 10):
    k = draw(st.integers(1, max_classes))
    n = draw(st.integers(min_n, max_n))
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).integers(0, k, n)


# ------------------------------------------------------------------------------------------ iid


@SETTINGS
@given(n=st.integers(1, 500), data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_iid_valid_and_balanced(n, data, seed):
    c = data.draw(st.integers(1, min(n, 30)))
    parts = iid_partition(n, c, seed)
    assert_valid_partition(parts, n, c)
    sizes = [p.size for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert same(parts, iid_partition(n, c, seed))


def test_iid_seed_changes_split_and_generator_accepted():
    a = iid_partition(100, 4, seed=0)
    assert not same(a, iid_partition(100, 4, seed=1))
    g1, g2 = np.random.default_rng(7), np.random.default_rng(7)
    assert same(iid_partition(100, 4, g1), iid_partition(100, 4, g2))


# ---------------------------------------------------------------------------- size / quantity


@SETTINGS
@given(sizes=st.lists(st.integers(0, 50), min_size=1, max_size=12), seed=st.integers(0, 1000))
def test_size_partition_exact_sizes(sizes, seed):
    n = sum(sizes)
    assume(n > 0)
    parts = size_partition(n, sizes, seed)
    assert_valid_partition(parts, n, len(sizes))
    assert [p.size for p in parts] == sizes
    assert same(parts, size_partition(n, sizes, seed))


@SETTINGS
@given(
    n=st.integers(200, 2000),
    c=st.integers(1, 10),
    beta=st.floats(0.01, 50),
    min_size=st.integers(0, 10),
    seed=st.integers(0, 2**32 - 1),
)
def test_quantity_skew_valid(n, c, beta, min_size, seed):
    parts = quantity_skew_partition(n, c, beta=beta, min_size=min_size, seed=seed)
    assert_valid_partition(parts, n, c)
    assert min(p.size for p in parts) >= min_size
    assert same(parts, quantity_skew_partition(n, c, beta=beta, min_size=min_size, seed=seed))


def test_quantity_skew_beta_controls_size_spread():
    def size_cv(beta: float) -> float:
        cvs = []
        for s in range(20):
            sizes = [p.size for p in quantity_skew_partition(5000, 10, beta, min_size=1, seed=s)]
            cvs.append(np.std(sizes) / np.mean(sizes))
        return float(np.mean(cvs))

    # Dir(beta) over 10 clients has coefficient of variation sqrt(9 / (10 beta + 1))
    assert size_cv(1000.0) < 0.05
    assert size_cv(0.5) > 0.8
    assert not same(
        quantity_skew_partition(1000, 5, seed=0), quantity_skew_partition(1000, 5, seed=1)
    )


def test_quantity_skew_min_size_always_feasible():
    # min_size * num_clients == n leaves no freedom: every client gets exactly min_size
    parts = quantity_skew_partition(100, 10, beta=0.01, min_size=10, seed=0)
    assert [p.size for p in parts] == [10] * 10
    # tiny beta: rejection sampling would almost never succeed here, the shift always does
    parts = quantity_skew_partition(200, 9, beta=0.05, min_size=9, seed=0)
    assert_valid_partition(parts, 200, 9)
    assert min(p.size for p in parts) >= 9
    assert max(p.size for p in parts) > 2 * 200 / 9  # still strongly skewed


def test_quantity_skew_keeps_label_mix():
    y = np.random.default_rng(0).integers(0, 4, 20000)
    parts = quantity_skew_partition(y.size, 5, beta=5.0, min_size=1000, seed=3)
    assert label_tv_distance(y, parts).max() < 0.05


# ------------------------------------------------------------------------------------ dirichlet


@SETTINGS
@given(
    y=labelled(min_n=30),
    data=st.data(),
    alpha=st.floats(0.05, 1000),
    balance=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_dirichlet_valid_deterministic(y, data, alpha, balance, seed):
    c = data.draw(st.integers(1, 8))
    parts = dirichlet_partition(y, c, alpha, min_size=0, seed=seed, balance=balance)
    assert_valid_partition(parts, y.size, c)
    again = dirichlet_partition(y, c, alpha, min_size=0, seed=seed, balance=balance)
    assert same(parts, again)


@SETTINGS
@given(
    y=labelled(min_n=300, max_n=1000),
    c=st.integers(2, 6),
    alpha=st.floats(0.3, 100),
    seed=st.integers(0, 2**32 - 1),
)
def test_dirichlet_min_size_held(y, c, alpha, seed):
    parts = dirichlet_partition(y, c, alpha, min_size=10, seed=seed)
    assert_valid_partition(parts, y.size, c)
    assert min(p.size for p in parts) >= 10


def test_dirichlet_seed_changes_split_and_string_labels():
    y = np.array(["benign", "malignant", "normal"] * 100)
    a = dirichlet_partition(y, 4, 0.5, seed=0)
    assert_valid_partition(a, y.size, 4)
    assert not same(a, dirichlet_partition(y, 4, 0.5, seed=1))


def test_dirichlet_large_alpha_is_iid_small_alpha_is_not():
    y = np.random.default_rng(0).integers(0, 10, 20000)
    iid_like = label_tv_distance(y, dirichlet_partition(y, 10, alpha=1e4, seed=1))
    skewed = label_tv_distance(y, dirichlet_partition(y, 10, alpha=0.05, seed=1))
    assert iid_like.max() < 0.05
    assert skewed.mean() > 0.5
    # a uniformly random split of the same size is the noise floor the IID case should match
    baseline = label_tv_distance(y, iid_partition(y.size, 10, seed=1))
    assert iid_like.mean() < 3 * baseline.mean() + 0.01


def test_dirichlet_gives_up_after_max_tries():
    y = np.repeat([0, 1], 50)
    with pytest.raises(ValueError, match="could not give every client >= min_size=10"):
        dirichlet_partition(y, 10, alpha=0.01, min_size=10, seed=0, max_tries=5)


# ---------------------------------------------------------------------------------------- shard


@SETTINGS
@given(
    c=st.integers(1, 20),
    spc=st.integers(1, 4),
    shard_size=st.integers(1, 20),
    seed=st.integers(0, 2**32 - 1),
)
def test_shard_gives_whole_shards(c, spc, shard_size, seed):
    # one distinct label per shard, scrambled: a client must own exactly `spc` complete labels
    y = np.repeat(np.arange(c * spc), shard_size)
    y = np.random.default_rng(seed).permutation(y)
    parts = shard_partition(y, c, spc, seed=seed)
    assert_valid_partition(parts, y.size, c)
    counts = label_counts(y, parts)
    for row in counts:
        assert np.count_nonzero(row) == spc
        assert set(row[row > 0]) == {shard_size}
    assert same(parts, shard_partition(y, c, spc, seed=seed))


@SETTINGS
@given(y=labelled(min_n=40), data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_shard_valid_sizes(y, data, seed):
    spc = data.draw(st.integers(1, 3))
    c = data.draw(st.integers(1, y.size // spc))
    parts = shard_partition(y, c, spc, seed=seed)
    assert_valid_partition(parts, y.size, c)
    lo = (y.size // (c * spc)) * spc
    assert all(lo <= p.size <= lo + spc for p in parts)


def test_shard_mcmahan_setting_few_classes_per_client():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 6000)  # unbalanced classes, so shards straddle class boundaries
    parts = shard_partition(y, 100, 2, seed=0)
    classes_seen = np.count_nonzero(label_counts(y, parts), axis=1)
    assert (classes_seen <= 2).mean() >= 0.8
    assert classes_seen.max() <= 4  # two shards, each spanning at most two classes here
    balanced = np.repeat(np.arange(10), 600)
    seen = np.count_nonzero(label_counts(balanced, shard_partition(balanced, 100, 2, 1)), axis=1)
    assert seen.max() <= 2
    assert not same(shard_partition(y, 100, 2, seed=0), shard_partition(y, 100, 2, seed=1))


# -------------------------------------------------------------------------------------- natural


def test_natural_partition_groups_by_sorted_site():
    sites = np.array(["va", "cleveland", "va", "hungarian", "cleveland", "switzerland"])
    parts = natural_partition(sites)
    assert_valid_partition(parts, sites.size, 4)
    assert [sites[p][0] for p in parts] == ["cleveland", "hungarian", "switzerland", "va"]
    np.testing.assert_array_equal(parts[0], [1, 4])
    np.testing.assert_array_equal(parts[3], [0, 2])


@SETTINGS
@given(g=st.lists(st.integers(-3, 5), min_size=1, max_size=200))
def test_natural_partition_property(g):
    g = np.array(g)
    parts = natural_partition(g)
    assert_valid_partition(parts, g.size, np.unique(g).size)
    for site, p in zip(np.unique(g), parts, strict=True):
        assert np.all(g[p] == site)


# ---------------------------------------------------------------------------------- diagnostics


def test_label_counts_and_tv_by_hand():
    y = np.array([0, 0, 1, 1, 2, 2])
    parts = [np.array([0, 2, 4]), np.array([1, 3]), np.array([5])]
    counts = label_counts(y, parts, num_classes=4)
    np.testing.assert_array_equal(counts, [[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 1, 0]])
    tv = label_tv_distance(y, parts)
    np.testing.assert_allclose(tv, [0.0, 1 / 3, 2 / 3])
    table = summarize(parts, y, class_names=["a", "b", "c"])
    assert list(table.columns) == ["client", "n", "a", "b", "c", "tv"]
    assert table["n"].tolist() == [3, 2, 1]
    assert list(summarize(parts).columns) == ["client", "n"]


@SETTINGS
@given(y=labelled(min_n=10), seed=st.integers(0, 1000))
def test_label_counts_rows_sum_to_sizes(y, seed):
    parts = iid_partition(y.size, min(5, y.size), seed)
    counts = label_counts(y, parts)
    assert counts.sum(axis=1).tolist() == [p.size for p in parts]
    np.testing.assert_array_equal(counts.sum(axis=0), np.bincount(y))
    tv = label_tv_distance(y, parts)
    assert np.all((tv >= 0) & (tv <= 1 + 1e-12))


def test_plot_label_counts_bar():
    counts = np.array([[5, 0, 2], [1, 1, 1], [0, 4, 0], [3, 3, 3]])
    fig, ax = plt.subplots()
    out = plot_label_counts(counts, ax=ax, class_names=["normal", "benign", "malignant"])
    assert out is ax
    assert len(ax.patches) == counts.size  # one bar segment per client x class
    heights = np.array([p.get_height() for p in ax.patches]).reshape(3, 4).T
    np.testing.assert_array_equal(heights, counts)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["normal", "benign", "malignant"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2", "3"]
    assert ax.get_xlabel() == "client (hospital)"
    assert ax.get_ylabel() == "number of examples"
    plt.close(fig)


def test_plot_label_counts_heatmap_and_new_axes():
    counts = np.arange(12).reshape(3, 4)
    ax = plot_label_counts(counts, kind="heatmap", client_names=["A", "B", "C"])
    assert len(ax.images) == 1
    np.testing.assert_array_equal(ax.images[0].get_array(), counts.T)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["A", "B", "C"]
    assert len(ax.get_yticklabels()) == 4
    assert ax.get_xlabel() == "client (hospital)"
    plt.close(ax.figure)


# ------------------------------------------------------------------------------- invalid input

Y = np.repeat(np.arange(5), 20)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: iid_partition(10, 0), "num_clients must be >= 1"),
        (lambda: iid_partition(10, 2.5), "num_clients must be an integer"),
        (lambda: iid_partition(3, 5), "more clients than samples"),
        (lambda: iid_partition(0, 1), "n must be >= 1"),
        (lambda: size_partition(10, [3, 3]), "sizes must sum to n=10"),
        (lambda: size_partition(10, [12, -2]), "sizes must be >= 0"),
        (lambda: size_partition(10, [5.0, 5.0]), "sizes must be integers"),
        (lambda: quantity_skew_partition(100, 5, beta=0), "beta must be a finite number > 0"),
        (lambda: quantity_skew_partition(100, 5, min_size=30), "min_size infeasible"),
        (lambda: dirichlet_partition(Y, 5, alpha=0), "alpha must be a finite number > 0"),
        (lambda: dirichlet_partition(Y, 5, alpha=-1.0), "alpha must be a finite number > 0"),
        (lambda: dirichlet_partition(Y, 5, alpha=float("inf")), "alpha must be a finite"),
        (lambda: dirichlet_partition(Y, 0, alpha=1.0), "num_clients must be >= 1"),
        (lambda: dirichlet_partition(Y, 101, 1.0), "more clients than samples"),
        (lambda: dirichlet_partition(Y, 5, 1.0, min_size=21), "min_size infeasible"),
        (lambda: dirichlet_partition(Y, 5, 1.0, min_size=-1), "min_size must be >= 0"),
        (lambda: dirichlet_partition(Y, 5, 1.0, max_tries=0), "max_tries must be >= 1"),
        (lambda: dirichlet_partition(Y.reshape(10, 10), 2, 1.0), "labels must be a 1-D array"),
        (lambda: dirichlet_partition([], 2, 1.0), "labels must not be empty"),
        (lambda: shard_partition(Y, 60, 2), "more shards than samples"),
        (lambda: shard_partition(Y, 5, 0), "shards_per_client must be >= 1"),
        (lambda: natural_partition([1.0, np.nan]), "groups must not contain NaN"),
        (lambda: label_counts(Y, [np.array([0, 100])]), "outside"),
        (lambda: label_counts(Y, [np.arange(5)], num_classes=3), "num_classes=3 is smaller"),
        (lambda: label_counts(Y.astype(float), [np.arange(5)]), "integer class ids"),
        (lambda: plot_label_counts(np.ones(3)), "2-D clients x classes"),
        (lambda: plot_label_counts(np.ones((2, 2)), kind="pie"), "kind must be"),
        (lambda: plot_label_counts(np.ones((2, 2)), class_names=["a"]), "class_names has 1"),
    ],
)
def test_invalid_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_seed_must_be_int_or_generator():
    with pytest.raises(TypeError, match="seed must be an int"):
        iid_partition(10, 2, seed=None)


@SETTINGS
@given(st.lists(st.integers(0, 2), min_size=1, max_size=60), st.integers(0, 2**31 - 1))
def test_class_subsample_keeps_exactly_the_counts_class_by_class(labels, seed):
    y = np.asarray(labels)
    have = np.bincount(y, minlength=3)
    counts = [int(c) // 2 for c in have]
    keep = partition.class_subsample(y, counts, seed=seed)
    assert len(set(keep.tolist())) == len(keep) == sum(counts)
    assert np.array_equal(y[keep], np.repeat(np.arange(3), counts))  # class-blocked order
    assert np.array_equal(keep, partition.class_subsample(y, counts, seed=seed))


def test_class_subsample_dict_drops_unlisted_classes_and_names_a_short_class():
    y = np.array([0, 0, 1, 1, 1, 2])
    assert sorted(y[partition.class_subsample(y, {1: 2})].tolist()) == [1, 1]
    with pytest.raises(ValueError, match=r"counts\[2\] = 2 .* only 1 examples of class 2"):
        partition.class_subsample(y, [1, 1, 2])
