"""Aggregation rules as small pure functions over named tensors.

These functions know nothing about clients, rounds or networks (the same split Flower
makes in its ``aggregate.py``): they take deltas and weights and return a delta. That makes
each rule easy to test against its defining equation and easy to reuse inside privacy and
security wrappers.

FedAvg's weights come from the federated objective

    F(w) = sum_k (n_k / n) F_k(w),   n = sum_k n_k,

whose gradient is the sample-weighted mean of the clients' gradients; averaging deltas
with weights n_k / n is therefore the unbiased choice. The unweighted mean (1/K each)
minimises a different objective, sum_k F_k(w) / K, which over-counts small hospitals.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .update import ClientUpdate, validate_updates
from .utils import StateDict

__all__ = ["weighted_mean", "fedavg_delta", "apply_delta"]


def weighted_mean(tensors: Sequence[StateDict], weights: Sequence[float]) -> StateDict:
    """``sum_i w_i x_i / sum_i w_i`` key by key.

    Accumulates in float64 so that the order of clients does not change the result
    beyond float32 rounding of the final value.
    """
    if len(tensors) != len(weights):
        raise ValueError(f"{len(tensors)} tensors but {len(weights)} weights")
    if not tensors:
        raise ValueError("nothing to average")
    w = torch.tensor([float(x) for x in weights], dtype=torch.float64)
    if not torch.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"weights must be finite and non-negative, got {list(weights)}")
    total = float(w.sum())
    if total <= 0:
        raise ValueError("weights sum to zero: no client trained on any example")
    out: StateDict = {}
    for k, ref in tensors[0].items():
        acc = torch.zeros(ref.shape, dtype=torch.float64)
        for t, wi in zip(tensors, w, strict=True):
            acc += float(wi) * t[k].double()
        out[k] = (acc / total).to(ref.dtype)
    return out


def fedavg_delta(updates: Sequence[ClientUpdate], weighted: bool = True) -> StateDict:
    """Mean of the client deltas, weighted by ``num_examples`` (or uniformly).

    Raises:
        InvalidUpdateError: an update has NaN/inf values or mismatched keys/shapes.
    """
    validate_updates(list(updates))
    weights = [u.num_examples for u in updates] if weighted else [1.0] * len(updates)
    return weighted_mean([u.delta for u in updates], weights)


def apply_delta(state: StateDict, delta: StateDict, lr: float = 1.0) -> StateDict:
    """New global state ``state + lr * delta`` (``lr`` is the server learning rate).

    Entries absent from ``delta`` (integer buffers) are copied unchanged.
    """
    out: StateDict = {}
    for k, v in state.items():
        out[k] = (v + lr * delta[k].to(v.dtype)) if k in delta else v.clone()
    return out
