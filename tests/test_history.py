"""Tests for fedlearn.history.round_train_loss: NaN from clients that took no step."""

from __future__ import annotations

import math

import torch

from fedlearn.history import round_train_loss
from fedlearn.update import ClientUpdate


def _u(cid: int, n: int, loss: float, steps: float) -> ClientUpdate:
    return ClientUpdate(cid, {"w": torch.zeros(1)}, n,
                        {"train_loss": loss, "num_steps": steps})


def test_round_train_loss_weights_by_examples_and_skips_idle_clients():
    assert round_train_loss([_u(0, 10, 1.0, 5), _u(1, 30, 2.0, 5)]) == 1.75
    # a client that took no step reports NaN and is left out, not counted as loss 0
    assert round_train_loss([_u(0, 10, 1.0, 5), _u(1, 30, math.nan, 0)]) == 1.0
    assert math.isnan(round_train_loss([_u(1, 30, math.nan, 0)]))
    assert math.isnan(round_train_loss([]))
    # a client that trained and diverged is kept: that must show
    assert math.isnan(round_train_loss([_u(0, 10, 1.0, 5), _u(1, 30, math.nan, 3)]))
