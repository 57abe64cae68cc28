"""Small synthetic data sets for the core tests (real-data tests live beside them)."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset


def blobs(n: int, d: int = 5, seed: int = 0, shift: float = 0.0) -> TensorDataset:
    """A linearly separable-ish binary task: label = [x . w + shift > 0]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    w = torch.linspace(-1.0, 1.0, d)
    y = ((x @ w + shift + 0.3 * torch.randn(n, generator=g)) > 0).long()
    return TensorDataset(x, y)
