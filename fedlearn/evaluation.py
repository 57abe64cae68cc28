"""Evaluation done right for personalised models: each hospital's own model, own data.

A personalised method gives every hospital a different model, so "the accuracy" is not one
number. :func:`own_model_scores` scores each hospital's *own* model
(``strategy.personal_state``) on *its own* split and reports every hospital, their unweighted
mean (each hospital counts once: the mean the personalisation literature and FLamby's
per-client tables report) and the worst hospital (the one a fair federation must not fail).
A pooled score alone would hide a small hospital behind a large one.

Every number here is computed at a hospital and released to whoever runs the evaluation:
per-hospital scores on a few dozen patients are a release too (say what protects them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import pandas as pd
from torch import nn

from .client import Client, predict_proba
from .errors import ConfigError
from .metrics import classification_metrics
from .strategy import Strategy
from .utils import StateDict

__all__ = ["own_model_scores", "summary"]

Split = Literal["val", "test", "train"]


def own_model_scores(model: nn.Module, clients: Sequence[Client], strategy: Strategy,
                     global_state: StateDict | None = None, split: Split = "test",
                     threshold: float = 0.5) -> pd.DataFrame:
    """One row per hospital: its own model's metrics on its own ``split``, and ``n``.

    ``model`` is scratch space (its weights are restored afterwards); ``global_state``
    defaults to ``model``'s current weights (after ``fl.run``: the final global model).
    """
    if split not in ("val", "test", "train"):
        raise ConfigError(f"split must be 'val', 'test' or 'train', got {split!r}")
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    state = global_state if global_state is not None else saved
    rows = []
    try:
        for c in clients:
            data = getattr(c, split)
            if data is None:
                raise ConfigError(f"{c.name} has no {split!r} split; give it one (e.g. "
                                  "fedlearn.splits.with_validation for 'val')")
            x, y = data.tensors[0], data.tensors[1]
            model.load_state_dict(strategy.personal_state(c.cid, state))
            m = classification_metrics(y, predict_proba(model, x), threshold)
            rows.append({"hospital": c.name, "n": len(y), **m})
    finally:
        model.load_state_dict(saved)
    return pd.DataFrame(rows)


def summary(scores: pd.DataFrame, metric: str = "accuracy") -> dict[str, float | str]:
    """Mean over hospitals (each once), size-weighted mean, and the worst hospital."""
    if metric not in scores:
        raise ConfigError(f"metric {metric!r} is not a column; choose one of "
                          f"{[c for c in scores.columns if c not in ('hospital', 'n')]}")
    vals = scores[metric].astype(float)
    ok = vals.notna()
    if not ok.any():
        return {"mean": math.nan, "weighted": math.nan, "worst": math.nan, "worst_hospital": ""}
    worst = int(vals[ok].idxmin())
    w = scores.loc[ok, "n"].astype(float)
    return {"mean": float(vals[ok].mean()),
            "weighted": float((vals[ok] * w).sum() / w.sum()),
            "worst": float(vals[worst]), "worst_hospital": str(scores.loc[worst, "hospital"])}


