"""Shared helpers of the survival tests: random censored data and the real TCGA-BRCA sites."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest


def random_sites(seed: int, k: int = 3, n: tuple[int, int] = (5, 40),
                 ties: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` sites of (T, E); integer times make ties between and within sites common."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(k):
        m = int(rng.integers(*n))
        t = rng.integers(0, 30, m).astype(float) if ties else rng.exponential(100, m)
        e = (rng.random(m) < 0.6).astype(int)
        out.append((t, e))
    return out


def tcga_or_skip():
    """The real Fed-TCGA-BRCA data (skips unless FEDLEARN_DATA_DIR holds it)."""
    value = os.environ.get("FEDLEARN_DATA_DIR")
    if not value or not (Path(value) / "tcga-brca" / "brca.csv").is_file():
        pytest.skip("set FEDLEARN_DATA_DIR to the folder holding tcga-brca/")
    from fedlearn.data import load_tcga_brca

    return load_tcga_brca(root=value, download=False)


def train_sites(data) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(s.train.tensors[1][:, 1].numpy().astype(float), s.train.tensors[1][:, 0].numpy())
            for s in data.sites]
