"""Validation data inside each hospital: a hold-out split, or stratified k-fold.

Model selection must never read a test set. Each hospital therefore carves its validation
data out of its *own training data*; nothing moves between hospitals. Two ways:

* :func:`with_validation`: a stratified hold-out (``Client.val``), enough when hospitals are
  large;
* :func:`kfold`: stratified k-fold cross-validation inside every hospital, for small ones
  (Switzerland's 30 heart patients leave 6 in a 20 % hold-out; 5 folds use all 30, 6 at a
  time, and average the noise away).

Stratified means each fold keeps the hospital's class balance; a class with fewer members
than folds cannot be spread over every fold, so that hospital falls back to a shuffled,
unstratified split (said in the fold's ``meta``). Every split takes a seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from torch.utils.data import TensorDataset

from .client import Client
from .errors import ConfigError

__all__ = ["with_validation", "kfold"]


def _subset(data: TensorDataset, idx: np.ndarray) -> TensorDataset:
    ix = torch.as_tensor(np.asarray(idx, dtype=np.int64))
    return TensorDataset(*(t[ix] for t in data.tensors))


def _labels(c: Client) -> np.ndarray:
    return c.train.tensors[1].numpy()


def with_validation(clients: Sequence[Client], fraction: float = 0.2, seed: int = 0
                    ) -> list[Client]:
    """New clients whose ``val`` is a stratified ``fraction`` of their training data.

    ``train`` keeps the rest; ``test`` is passed along untouched (never read here).
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"fraction must be in (0, 1), got {fraction!r}; e.g. fraction=0.2")
    out = []
    for c in clients:
        y = _labels(c)
        n_val = int(round(fraction * len(y)))
        if n_val < 1 or n_val >= len(y):
            raise ConfigError(f"{c.name}: fraction={fraction} of {len(y)} training examples "
                              f"leaves {n_val} for validation; use kfold(...) for so small "
                              "a hospital")
        counts = np.bincount(y) if y.size else np.zeros(0)
        strat = y if (counts[counts > 0] >= 2).all() and n_val >= len(counts[counts > 0]) \
            else None
        tr, va = train_test_split(np.arange(len(y)), test_size=n_val, random_state=seed,
                                  stratify=strat)
        out.append(Client(cid=c.cid, train=_subset(c.train, np.sort(tr)), test=c.test,
                          name=c.name, meta={**c.meta, "stratified": strat is not None},
                          loss_fn=c.loss_fn, val=_subset(c.train, np.sort(va))))
    return out


def kfold(clients: Sequence[Client], k: int = 5, seed: int = 0) -> list[list[Client]]:
    """``k`` federations, fold ``f`` holding out the ``f``-th fold of *every* hospital.

    ``folds[f][i]`` is hospital ``i`` training on its other folds with ``val`` = its fold
    ``f``; ``test`` is None, so nothing downstream can score a test set by accident.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ConfigError(f"k must be an integer >= 2 (folds per hospital), got {k!r}")
    per_client = []
    for c in clients:
        y = _labels(c)
        if len(y) < k:
            raise ConfigError(f"{c.name} has {len(y)} training examples, fewer than k={k} "
                              "folds; use a smaller k")
        counts = np.bincount(y)
        stratified = bool((counts[counts > 0] >= k).all())
        splitter = (StratifiedKFold(k, shuffle=True, random_state=seed) if stratified
                    else KFold(k, shuffle=True, random_state=seed))
        per_client.append((c, stratified, list(splitter.split(np.zeros(len(y)), y))))
    folds: list[list[Client]] = []
    for f in range(k):
        fold = []
        for c, stratified, splits in per_client:
            tr, va = splits[f]
            fold.append(Client(cid=c.cid, train=_subset(c.train, tr), test=None, name=c.name,
                               meta={**c.meta, "fold": f, "stratified": stratified},
                               loss_fn=c.loss_fn, val=_subset(c.train, va)))
        folds.append(fold)
    return folds
