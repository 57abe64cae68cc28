"""Validation splits inside each hospital: hold-out and stratified k-fold."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

import fedlearn as fl
from fedlearn.errors import ConfigError
from fedlearn.splits import kfold, with_validation


def hospital(cid: int, n_pos: int, n_neg: int) -> fl.Client:
    y = torch.tensor([1] * n_pos + [0] * n_neg)
    x = torch.arange(len(y), dtype=torch.float32)[:, None]  # x identifies the row
    return fl.Client(cid=cid, train=TensorDataset(x, y))


def rows(d: TensorDataset) -> set[int]:
    return {int(v) for v in d.tensors[0][:, 0]}


def test_holdout_is_disjoint_complete_and_stratified() -> None:
    (c,) = with_validation([hospital(0, 30, 10)], fraction=0.25, seed=3)
    assert rows(c.train).isdisjoint(rows(c.val)) and rows(c.train) | rows(c.val) == set(range(40))
    assert len(c.val) == 10 and int(c.val.tensors[1].sum()) in (7, 8)  # 3:1 kept (7.5)
    assert c.meta["stratified"]


def test_kfold_covers_every_row_once_and_keeps_the_balance() -> None:
    folds = kfold([hospital(0, 20, 10), hospital(1, 29, 1)], k=5, seed=0)
    assert len(folds) == 5
    for i in (0, 1):
        vals = [rows(f[i].val) for f in folds]
        assert set().union(*vals) == set(range(30)) and sum(map(len, vals)) == 30
        for f in folds:
            assert rows(f[i].train).isdisjoint(rows(f[i].val)) and f[i].test is None
    assert all(int(f[0].val.tensors[1].sum()) == 4 for f in folds)  # 2:1 in every fold
    assert folds[0][0].meta["stratified"] and not folds[0][1].meta["stratified"]  # 1 negative
    np.testing.assert_array_equal(  # seeded: the same folds again
        folds[2][0].val.tensors[0], kfold([hospital(0, 20, 10)], k=5, seed=0)[2][0].val.tensors[0])


def test_split_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="fewer than k=5"):
        kfold([hospital(0, 2, 1)], k=5)
    with pytest.raises(ConfigError, match="k must be an integer >= 2"):
        kfold([hospital(0, 2, 1)], k=1)
    with pytest.raises(ConfigError, match="fraction"):
        with_validation([hospital(0, 5, 5)], fraction=1.0)
    with pytest.raises(ConfigError, match="val must be a TensorDataset"):
        fl.Client(cid=0, train=hospital(0, 3, 3).train, val=[1, 2])
