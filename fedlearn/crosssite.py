"""Cross-site evaluation: does a model trained here work there?

A pooled test score hides the hospital the model fails. Three views, after NVFlare's
cross-site validation (every site's model scored on every site's data):

* :func:`cross_site_matrix` - rows are models (each hospital's local-only model and the
  global one), columns are hospitals' test sets. A local model's row shows how far it
  travels; the global row should be good *everywhere*, not only on average.
* :func:`leave_one_out` - train the federation without hospital ``k``, score on ``k``: what
  a new hospital joining the consortium would get on day one, before contributing data.
* :func:`fairness` - worst site, best site, spread (best - worst) and standard deviation of a
  per-site score: the numbers a consortium must report next to the mean.

What leaves a hospital: to fill the matrix, each local *model* is sent to every other
hospital (as NVFlare does) and each hospital returns only a score per model. A local model is
a release of a model trained on one hospital's patients alone, with no protection here
(it can be attacked by membership inference, notebook 05): in a real study, send local models
only under the same agreement as the data, or under DP.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from torch import nn
from torch.utils.data import TensorDataset

from .client import Client, TrainConfig
from .errors import ConfigError
from .metrics import METRIC_NAMES, evaluate
from .simulation import run
from .strategy import FedAvg, Strategy

__all__ = ["cross_site_matrix", "local_models", "leave_one_out", "fairness", "plot_matrix"]


def _check_metric(metric: str) -> None:
    if metric not in METRIC_NAMES:
        raise ConfigError(f"metric={metric!r} is not one of {list(METRIC_NAMES)}")


def cross_site_matrix(models: Mapping[str, nn.Module], test_sets: Mapping[str, TensorDataset],
                      metric: str = "auroc", threshold: float = 0.5) -> pd.DataFrame:
    """``metric`` of every model (rows) on every test set (columns)."""
    _check_metric(metric)
    if not models or not test_sets:
        raise ConfigError("cross_site_matrix needs at least one model and one test set, got "
                          f"{len(models)} model(s) and {len(test_sets)} test set(s)")
    rows = {name: {site: evaluate(m, data, threshold)[metric] for site, data in test_sets.items()}
            for name, m in models.items()}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name, out.columns.name = "model", "test set"
    return out


def local_models(model: nn.Module, clients: Sequence[Client], config: TrainConfig,
                 rounds: int, *, seed: int = 0) -> dict[str, nn.Module]:
    """Each hospital's model trained on its own data only (``rounds`` x ``config``), from the
    same initial weights as the federation: the "go it alone" baseline."""
    out = {}
    for c in clients:
        m = copy.deepcopy(model)
        run(m, [c], FedAvg(config), rounds=rounds, eval_every=0, seed=seed, progress=False)
        out[c.name] = m
    return out


def leave_one_out(model: nn.Module, clients: Sequence[Client],
                  make_strategy: Callable[[], Strategy], rounds: int, *, seed: int = 0,
                  metric: str = "auroc") -> pd.DataFrame:
    """For each hospital ``k``: federate the others, score on ``k``'s test set.

    Returns one row per hospital: ``held_out`` (the model that never saw ``k``) and
    ``included`` (the federation of everyone, ``k`` included), and ``gain`` = included -
    held_out, what ``k``'s own data bought it.
    """
    _check_metric(metric)
    if len(clients) < 2:
        raise ConfigError(f"leave_one_out needs >= 2 hospitals, got {len(clients)}")
    full = copy.deepcopy(model)
    run(full, clients, make_strategy(), rounds=rounds, eval_every=0, seed=seed, progress=False)
    rows = []
    for k, c in enumerate(clients):
        if c.test is None:
            raise ConfigError(f"{c.name} has no test set to be scored on")
        m = copy.deepcopy(model)
        others = [x for i, x in enumerate(clients) if i != k]
        run(m, others, make_strategy(), rounds=rounds, eval_every=0, seed=seed, progress=False)
        held, inc = evaluate(m, c.test)[metric], evaluate(full, c.test)[metric]
        rows.append({"hospital": c.name, "held_out": held, "included": inc,
                     "gain": inc - held})
    return pd.DataFrame(rows).set_index("hospital")


def fairness(scores: Mapping[str, float] | pd.Series) -> dict[str, float | str]:
    """Worst, best, mean, spread (best - worst) and std (ddof 0) of per-site scores."""
    s = pd.Series(scores, dtype=float)
    if s.empty or s.isna().all():
        raise ConfigError("fairness needs at least one finite per-site score")
    v = s.dropna().to_numpy()
    return {"worst": float(v.min()), "worst_site": str(s.idxmin()), "best": float(v.max()),
            "mean": float(v.mean()), "spread": float(v.max() - v.min()),
            "std": float(np.std(v))}


def plot_matrix(matrix: pd.DataFrame, ax=None, *, metric: str = "AUROC",  # noqa: ANN001
                vmin: float = 0.5, vmax: float = 1.0):  # noqa: ANN201
    """The matrix as an annotated heatmap (rows: models, columns: test sets)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(1.2 * matrix.shape[1] + 3, 0.5 * matrix.shape[0] + 2))
    im = ax.imshow(matrix.to_numpy(dtype=float), vmin=vmin, vmax=vmax, cmap="viridis")
    ax.set_xticks(range(matrix.shape[1]), matrix.columns, rotation=35, ha="right")
    ax.set_yticks(range(matrix.shape[0]), matrix.index)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            val = float(matrix.iat[i, j])
            ax.text(j, i, f"{val:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if val < (vmin + vmax) / 2 else "black")
    ax.set_xlabel("test set (hospital)")
    ax.set_ylabel("model (trained on)")
    ax.figure.colorbar(im, ax=ax, label=metric)
    return ax
