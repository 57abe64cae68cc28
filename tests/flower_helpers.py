"""What the Flower tests share: the three hospitals, their model and config, a by-hand replay of
the round loop (the reference a real deployment must equal), and the no-leftover check."""

from __future__ import annotations

import torch

import fedlearn as fl
from fedlearn.flower import ModelSpec
from fedlearn.flower.federation import live_processes
from fedlearn.utils import derive_seed

from .helpers import blobs

SPEC = ModelSpec("logreg", {"in_features": 5}, seed=0)
CONFIG = fl.TrainConfig(steps=5, batch_size=8, lr=0.1)


def _clients() -> list[fl.Client]:
    """Three hospitals of unequal size (60, 40, 20) with their own test sets."""
    data, test = blobs(120, d=5, seed=1), blobs(60, d=5, seed=2)
    parts = fl.partition.size_partition(120, [60, 40, 20], seed=0)
    test_parts = fl.partition.size_partition(60, [30, 20, 10], seed=0)
    return fl.clients_from_partition(data, parts, test=test, test_parts=test_parts)


def _replay(clients: list[fl.Client], strategy: fl.Strategy,
            participants: list[list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    """fedlearn.run's round loop by hand, with a given set of hospitals in each round."""
    model = SPEC.build()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for rnd, who in enumerate(participants, start=1):
        ups = [clients[k].fit(model, state, CONFIG, seed=derive_seed(seed, rnd, k))
               for k in who]
        state = strategy.aggregate(rnd, state, ups)
    return state


def _assert_no_leftovers(groups: list[int]) -> None:
    assert groups, "no process was recorded"
    assert live_processes(groups) == []
