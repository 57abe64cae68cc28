"""Harrell's concordance index (C-index), the survival analogue of AUROC.

Of all *comparable* pairs (the one with the shorter time died at that time), the fraction in
which the model gives the patient who died first the higher risk score; 0.5 is chance, 1 is a
perfect ranking. Accuracy is meaningless here: a censored patient has no label, only a lower
bound on their survival time. As FLamby does, the value comes from lifelines'
``concordance_index(T, -risk, E)``: lifelines expects a *predicted survival time*
(higher = lives longer), and a Cox score is a log-hazard (higher = dies sooner), hence the
minus sign. lifelines is imported here, inside the functions, so ``import fedlearn`` never
loads it.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["c_index", "survival_metrics"]


def c_index(risk: np.ndarray, time: np.ndarray, event: np.ndarray) -> float:
    """Harrell's C of ``risk`` scores (higher = shorter survival) against ``(time, event)``."""
    from lifelines.utils import concordance_index

    risk = np.asarray(risk, dtype=np.float64).ravel()
    if not np.all(np.isfinite(risk)):
        return float("nan")  # a diverged model; lifelines would raise
    return float(concordance_index(np.asarray(time, dtype=np.float64).ravel(), -risk,
                                   np.asarray(event).ravel()))


def survival_metrics(scores: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """``{"c_index", "events"}`` of risk scores against ``y = (E, T)``: ``fl.run(evaluate=...)``.

    ``scores`` are a Cox model's raw outputs (log relative hazards), shape (n,) or (n, 1).
    ``events`` is reported beside it because a C-index from 1 death means nothing.
    """
    risk = scores.detach().reshape(-1).double().numpy()
    return {"c_index": c_index(risk, y[:, 1].numpy(), y[:, 0].numpy()),
            "events": float(y[:, 0].sum())}
