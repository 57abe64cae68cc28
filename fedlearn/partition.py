"""Split one dataset among simulated hospitals (federated clients).

Real federated data is never identically distributed: hospitals differ in how many patients they
see (*quantity skew*) and in which diagnoses are common (*label skew*). Because the course only has
centralised public datasets, we *simulate* that heterogeneity by partitioning example indices.
Every partitioner here is a pure function of its arguments and a seed, and returns a list with one
sorted ``int64`` index array per client; the arrays are disjoint and together cover every example.

Partitioners (from most to least homogeneous):

* :func:`iid_partition` -- random equal-sized split, the optimistic baseline.
* :func:`size_partition` / :func:`quantity_skew_partition` -- unequal sizes, same label mix.
* :func:`dirichlet_partition` -- per-class Dirichlet label skew (NIID-Bench / FedLab recipe).
* :func:`shard_partition` -- McMahan et al. (2017) pathological non-IID shards.
* :func:`natural_partition` -- the real site ids, when the data has them (e.g. Heart Disease).

Before partitioning, :func:`class_subsample` keeps a fixed number of examples per class, so that
a notebook's hospitals have the same per-class counts whichever copy of a data set is loaded
(the course's offline PneumoniaMNIST has 388 normal training images, the official file 1,214).

Diagnostics: :func:`label_counts`, :func:`label_tv_distance`, :func:`summarize` and
:func:`plot_label_counts` make the simulated heterogeneity visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas only for summarize(), imported there (a lean ``import fedlearn``)
    import pandas as pd
    from matplotlib.axes import Axes

Seed = int | np.random.Generator

__all__ = [
    "Seed",
    "class_subsample",
    "dirichlet_partition",
    "iid_partition",
    "label_counts",
    "label_tv_distance",
    "natural_partition",
    "plot_label_counts",
    "quantity_skew_partition",
    "shard_partition",
    "size_partition",
    "summarize",
]


# --------------------------------------------------------------------------- validation helpers


def _rng(seed: Seed) -> np.random.Generator:
    """Turn ``seed`` into a Generator; refuse ``None`` so every split is reproducible."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int or np.random.Generator, got {type(seed).__name__}")
    return np.random.default_rng(int(seed))


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_clients(num_clients: object, n: int) -> int:
    num_clients = _check_int("num_clients", num_clients, 1)
    if num_clients > n:
        raise ValueError(
            f"more clients than samples: num_clients={num_clients} but only n={n} examples"
        )
    return num_clients


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def _check_min_size(min_size: object, num_clients: int, n: int) -> int:
    min_size = _check_int("min_size", min_size, 0)
    if min_size * num_clients > n:
        raise ValueError(
            f"min_size infeasible: {num_clients} clients x min_size={min_size} "
            f"needs {min_size * num_clients} examples but only n={n} exist"
        )
    return min_size


def _as_1d(name: str, values: object) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError(f"{name} must not contain NaN")
    return arr


def _split(indices: np.ndarray, sizes: np.ndarray) -> list[np.ndarray]:
    """Cut ``indices`` into consecutive chunks of ``sizes``; each chunk sorted, int64."""
    chunks = np.split(indices, np.cumsum(sizes)[:-1])
    return [np.sort(c).astype(np.int64) for c in chunks]


# --------------------------------------------------------------------------------- partitioners


def class_subsample(labels: Sequence | np.ndarray, counts: Sequence[int] | dict[int, int],
                    seed: Seed = 0) -> np.ndarray:
    """Indices of a seeded random subset with exactly ``counts[c]`` examples of each class ``c``.

    Why: a composition written as "every normal image plus 612 pneumonia ones" depends on the
    copy of the data (388 normal images offline, 1,214 in the official PneumoniaMNIST), so the
    same notebook would print 39 % normal on one and 66 % on the other. Fixed per-class counts
    that every copy can supply give the same composition everywhere.

    The result is ordered **class by class** (all kept examples of class 0, in increasing index
    order, then class 1, ...), so ``labels[result]`` is the same vector for every copy with
    enough examples per class. Every partitioner above is a function of that label vector (or
    only of its length) and a seed, so the per-class counts of each simulated hospital are then
    the same on every copy too; only which images they are differs.

    Args:
        labels: integer class ids, one per example.
        counts: how many examples of each class to keep: a sequence indexed by class id, or a
            dict ``{class id: count}`` (classes not listed are dropped).
        seed: seeds the draw within each class.

    Raises:
        ValueError: naming the class, the count asked for and the count available.
    """
    y = _int_labels(labels)
    wanted = dict(counts) if isinstance(counts, dict) else dict(enumerate(counts))
    rng = _rng(seed)
    chosen = []
    for c in sorted(wanted):
        need = _check_int(f"counts[{c}]", wanted[c], 0)
        idx = np.flatnonzero(y == c)
        if need > idx.size:
            raise ValueError(
                f"counts[{c}] = {need} but the labels hold only {idx.size} examples of class {c}: "
                f"ask for at most {idx.size} (counts must be available in every copy of the data)")
        chosen.append(np.sort(rng.choice(idx, need, replace=False)))
    return np.concatenate(chosen).astype(np.int64) if chosen else np.zeros(0, dtype=np.int64)


def iid_partition(n: int, num_clients: int, seed: Seed = 0) -> list[np.ndarray]:
    """Shuffle ``range(n)`` and split it as evenly as possible (sizes differ by at most one).

    This is the textbook assumption under which FedAvg equals centralised SGD; every other
    partitioner is measured against it.
    """
    n = _check_int("n", n, 1)
    num_clients = _check_clients(num_clients, n)
    perm = _rng(seed).permutation(n)
    return [np.sort(c).astype(np.int64) for c in np.array_split(perm, num_clients)]


def size_partition(n: int, sizes: Sequence[int] | np.ndarray, seed: Seed = 0) -> list[np.ndarray]:
    """Random split of ``range(n)`` into clients of the given ``sizes`` (which must sum to ``n``).

    Use this to model a *known* imbalance, e.g. one university hospital and several small
    clinics (``fractions`` can be turned into sizes with ``np.round(fractions * n)``, fixing the
    rounding on the largest client). Labels are ignored, so every client keeps the global mix.
    """
    n = _check_int("n", n, 1)
    sizes_arr = np.asarray(sizes)
    if sizes_arr.ndim != 1 or sizes_arr.size == 0:
        raise ValueError(f"sizes must be a non-empty 1-D sequence, got shape {sizes_arr.shape}")
    if sizes_arr.dtype.kind not in "iu":
        raise ValueError(f"sizes must be integers, got dtype {sizes_arr.dtype}")
    if (sizes_arr < 0).any():
        raise ValueError(f"sizes must be >= 0, got {sizes_arr.tolist()}")
    if int(sizes_arr.sum()) != n:
        raise ValueError(f"sizes must sum to n={n}, got sum {int(sizes_arr.sum())}")
    return _split(_rng(seed).permutation(n), sizes_arr.astype(np.int64))


def quantity_skew_partition(
    n: int,
    num_clients: int,
    beta: float = 0.5,
    min_size: int = 10,
    seed: Seed = 0,
) -> list[np.ndarray]:
    """Quantity skew: client sizes follow Dirichlet(``beta``) proportions (NIID-Bench style).

    Labels are not considered, so each client's label mix matches the global one in
    expectation; only the amount of data differs. Small ``beta`` (e.g. 0.1) gives a few large
    and many tiny hospitals, large ``beta`` approaches equal sizes.

    Every client first gets ``min_size`` examples and the remaining ``n - num_clients *
    min_size`` are shared out in Dirichlet proportions. NIID-Bench instead redraws the
    proportions until all sizes reach the minimum; that rejection loop can practically never
    finish for small ``beta`` (e.g. beta=0.5, 9 clients, n=200, min_size=9), whereas this
    construction always succeeds and still follows the same Dirichlet shape. For explicit sizes
    use :func:`size_partition`.
    """
    n = _check_int("n", n, 1)
    num_clients = _check_clients(num_clients, n)
    beta = _check_positive("beta", beta)
    min_size = _check_min_size(min_size, num_clients, n)
    rng = _rng(seed)
    rest = n - num_clients * min_size
    proportions = rng.dirichlet(np.full(num_clients, beta))
    bounds = (np.cumsum(proportions) * rest).astype(np.int64)
    bounds[-1] = rest  # float round-off must not drop the last examples
    sizes = min_size + np.diff(bounds, prepend=0)
    return size_partition(n, sizes, rng)


def dirichlet_partition(
    labels: Sequence | np.ndarray,
    num_clients: int,
    alpha: float,
    min_size: int = 10,
    seed: Seed = 0,
    max_tries: int = 1000,
    balance: bool = True,
) -> list[np.ndarray]:
    """Label skew: each class is spread over clients by Dirichlet(``alpha``) proportions.

    This is the recipe popularised by Hsu et al. (2019) and implemented in NIID-Bench and FedLab:
    for every class ``k``, draw ``p ~ Dir(alpha * 1)`` over clients and hand out the (shuffled)
    examples of ``k`` in those proportions. ``alpha -> 0`` gives each class to very few hospitals
    (strongly non-IID), ``alpha -> inf`` gives every hospital the global label mix (IID).

    With ``balance=True`` (the NIID-Bench default) a client that already holds ``>= n /
    num_clients`` examples receives nothing from later classes, which keeps sizes from
    exploding; set it to ``False`` for the plain per-class Dirichlet draw. The whole assignment
    is redrawn until every client has ``>= min_size`` examples (tiny clients make local training
    meaningless); after ``max_tries`` attempts a ValueError is raised.

    ``labels`` can be of any sortable dtype; classes are visited in sorted order.
    """
    y = _as_1d("labels", labels)
    n = y.size
    num_clients = _check_clients(num_clients, n)
    alpha = _check_positive("alpha", alpha)
    min_size = _check_min_size(min_size, num_clients, n)
    max_tries = _check_int("max_tries", max_tries, 1)
    rng = _rng(seed)

    _, y_codes = np.unique(y, return_inverse=True)
    by_class = [np.flatnonzero(y_codes == k) for k in range(int(y_codes.max()) + 1)]
    cap = n / num_clients
    for _ in range(max_tries):
        chunks: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        sizes = np.zeros(num_clients, dtype=np.int64)
        for idx_k in by_class:
            idx_k = rng.permutation(idx_k)
            p = rng.dirichlet(np.full(num_clients, alpha))
            if balance:
                capped = np.where(sizes < cap, p, 0.0)
                # if every client still below the cap drew p == 0 (underflow at tiny alpha),
                # fall back to the uncapped draw rather than dividing by zero
                if capped.sum() > 0:
                    p = capped
            p = p / p.sum()
            cuts = (np.cumsum(p) * idx_k.size).astype(np.int64)[:-1]
            for j, part in enumerate(np.split(idx_k, cuts)):
                chunks[j].append(part)
                sizes[j] += part.size
        if sizes.min() >= min_size:
            return [np.sort(np.concatenate(c)).astype(np.int64) for c in chunks]
    raise ValueError(
        f"could not give every client >= min_size={min_size} examples in max_tries={max_tries} "
        f"attempts (alpha={alpha}, n={n}, num_clients={num_clients}); "
        "increase alpha or max_tries, or lower min_size"
    )


def shard_partition(
    labels: Sequence | np.ndarray,
    num_clients: int,
    shards_per_client: int = 2,
    seed: Seed = 0,
) -> list[np.ndarray]:
    """Pathological non-IID split of McMahan et al. (2017, FedAvg paper).

    Sort examples by label, cut the sorted list into ``num_clients * shards_per_client``
    contiguous shards of (almost) equal size, and give each client ``shards_per_client`` random
    shards. With 10 balanced classes and 2 shards per client most hospitals see only two
    diagnoses -- the setting where naive FedAvg struggles. Ties within a label are broken at
    random, so which examples of a class land in which shard depends on the seed. When ``n`` is
    not divisible by the number of shards, shard sizes differ by at most one.
    """
    y = _as_1d("labels", labels)
    n = y.size
    shards_per_client = _check_int("shards_per_client", shards_per_client, 1)
    num_clients = _check_clients(num_clients, n)
    num_shards = num_clients * shards_per_client
    if num_shards > n:
        raise ValueError(
            f"more shards than samples: num_clients * shards_per_client = {num_shards} "
            f"but only n={n} examples"
        )
    rng = _rng(seed)
    order = rng.permutation(n)
    order = order[np.argsort(y[order], kind="stable")]
    shards = np.array_split(order, num_shards)
    assignment = rng.permutation(num_shards).reshape(num_clients, shards_per_client)
    return [
        np.sort(np.concatenate([shards[s] for s in row])).astype(np.int64) for row in assignment
    ]


def natural_partition(groups: Sequence | np.ndarray) -> list[np.ndarray]:
    """One client per real site: client ``k`` holds the examples with ``groups == sites[k]``.

    ``sites = np.unique(groups)`` (sorted), so e.g. the four Heart Disease hospitals map to
    clients in alphabetical order. No randomness: this is the heterogeneity nature gave us, the
    benchmark the simulated partitioners try to imitate.
    """
    g = _as_1d("groups", groups)
    _, codes = np.unique(g, return_inverse=True)
    return [np.flatnonzero(codes == k).astype(np.int64) for k in range(int(codes.max()) + 1)]


# ---------------------------------------------------------------------------------- diagnostics


def _int_labels(labels: Sequence | np.ndarray) -> np.ndarray:
    y = _as_1d("labels", labels)
    if y.dtype.kind not in "iu":
        raise ValueError(f"labels must be integer class ids 0..K-1, got dtype {y.dtype}")
    if y.min() < 0:
        raise ValueError(f"labels must be >= 0, got minimum {y.min()}")
    return y


def label_counts(
    labels: Sequence | np.ndarray,
    parts: Sequence[np.ndarray],
    num_classes: int | None = None,
) -> np.ndarray:
    """Matrix ``counts[client, class]`` of how many examples of each class every client holds.

    ``labels`` must be integer class ids ``0..K-1``; ``num_classes`` defaults to
    ``labels.max() + 1`` and can be raised so that absent classes still get a (zero) column.
    """
    y = _int_labels(labels)
    k_min = int(y.max()) + 1
    k = k_min if num_classes is None else _check_int("num_classes", num_classes, 1)
    if k < k_min:
        raise ValueError(f"num_classes={k} is smaller than labels.max() + 1 = {k_min}")
    if len(parts) == 0:
        raise ValueError("parts must contain at least one client")
    counts = np.zeros((len(parts), k), dtype=np.int64)
    for i, part in enumerate(parts):
        idx = np.asarray(part, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= y.size):
            raise ValueError(f"client {i} has indices outside [0, {y.size})")
        counts[i] = np.bincount(y[idx], minlength=k)
    return counts


def label_tv_distance(
    labels: Sequence | np.ndarray,
    parts: Sequence[np.ndarray],
    num_classes: int | None = None,
) -> np.ndarray:
    """Per-client total-variation distance between its label mix and the global label mix.

    ``TV = 0.5 * sum_k |p_client(k) - p_global(k)|`` lies in ``[0, 1]``: 0 means the hospital
    looks exactly like the pooled data, values near 1 mean it sees almost disjoint classes.
    A single number to quantify "how non-IID" a partition is. Empty clients get NaN.
    """
    counts = label_counts(labels, parts, num_classes).astype(float)
    y = _int_labels(labels)
    global_p = np.bincount(y, minlength=counts.shape[1]) / y.size
    sizes = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        client_p = counts / sizes
    return 0.5 * np.abs(client_p - global_p).sum(axis=1)


def summarize(
    parts: Sequence[np.ndarray],
    labels: Sequence | np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
) -> pd.DataFrame:
    """Table with one row per client: ``client``, ``n``, and (if ``labels`` are given) one count
    column per class plus ``tv`` (see :func:`label_tv_distance`). Meant for notebook display."""
    import pandas as pd

    if len(parts) == 0:
        raise ValueError("parts must contain at least one client")
    table = pd.DataFrame(
        {"client": np.arange(len(parts)), "n": [int(np.asarray(p).size) for p in parts]}
    )
    if labels is None:
        return table
    counts = label_counts(labels, parts, num_classes)
    names = _class_names(class_names, counts.shape[1])
    for k, name in enumerate(names):
        table[name] = counts[:, k]
    table["tv"] = label_tv_distance(labels, parts, counts.shape[1])
    return table


def _class_names(class_names: Sequence[str] | None, k: int) -> list[str]:
    if class_names is None:
        return [f"class {c}" for c in range(k)]
    if len(class_names) != k:
        raise ValueError(f"class_names has {len(class_names)} entries but there are {k} classes")
    return [str(c) for c in class_names]


def plot_label_counts(
    counts: np.ndarray,
    ax: Axes | None = None,
    class_names: Sequence[str] | None = None,
    client_names: Sequence[str] | None = None,
    kind: str = "bar",
) -> Axes:
    """Draw a ``clients x classes`` count matrix (from :func:`label_counts`).

    ``kind="bar"``: stacked bars, one per client, one colour per class -- shows size *and* label
    skew at once. ``kind="heatmap"``: clients on x, classes on y, colour = count -- clearer when
    there are many clients or classes. Returns the Axes so notebooks can adjust titles.
    """
    counts = np.asarray(counts)
    if counts.ndim != 2 or 0 in counts.shape:
        raise ValueError(
            f"counts must be a non-empty 2-D clients x classes array, got {counts.shape}"
        )
    if (counts < 0).any():
        raise ValueError("counts must be >= 0")
    if kind not in ("bar", "heatmap"):
        raise ValueError(f"kind must be 'bar' or 'heatmap', got {kind!r}")
    n_clients, n_classes = counts.shape
    names = _class_names(class_names, n_classes)
    if client_names is None:
        client_names = [str(i) for i in range(n_clients)]
    elif len(client_names) != n_clients:
        raise ValueError(
            f"client_names has {len(client_names)} entries but there are {n_clients} clients"
        )
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(max(6.0, 0.4 * n_clients), 4.0))
    x = np.arange(n_clients)
    if kind == "bar":
        bottom = np.zeros(n_clients)
        for k, name in enumerate(names):
            ax.bar(x, counts[:, k], bottom=bottom, label=name)
            bottom += counts[:, k]
        ax.set_ylabel("number of examples")
        ax.legend(title="class", fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
        image = ax.imshow(counts.T, aspect="auto", cmap="viridis", origin="lower")
        ax.figure.colorbar(image, ax=ax, label="number of examples")
        ax.set_yticks(np.arange(n_classes), names)
        ax.set_ylabel("class")
    ax.set_xticks(x, [str(c) for c in client_names])
    ax.set_xlabel("client (hospital)")
    return ax
