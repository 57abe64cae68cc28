"""A small synthetic stand-in for a binary MedMNIST data set (for the case-study tests).

Images are 28x28 in [0, 1]; "disease" images (label ``disease``) carry a brighter blob in the
centre, so a CNN can learn the task in a couple of rounds. Every image also encodes its own
index in pixel (0, 0), which lets a test check exactly which images went where.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import TensorDataset


@dataclass(frozen=True, eq=False)
class FakeMedMNIST:
    """Duck-types what :func:`fedlearn.hospitals.build_consortium` needs: ``flag``, ``split``."""

    flag: str
    train: TensorDataset
    val: TensorDataset
    test: TensorDataset

    def split(self, name: str) -> TensorDataset:
        return getattr(self, name)


def _split(n: int, frac_disease: float, disease: int, offset: int,
           g: torch.Generator) -> TensorDataset:
    sick = torch.rand(n, generator=g) < frac_disease
    x = 0.3 * torch.rand(n, 1, 28, 28, generator=g)
    x[sick, :, 10:18, 10:18] += 0.5
    x[:, 0, 0, 0] = (offset + torch.arange(n)) / 100_000.0  # a unique tag per image
    y = torch.where(sick, disease, 1 - disease).long()
    return TensorDataset(x.clamp(0, 1), y)


def fake_medmnist(sizes: tuple[int, int, int] = (600, 120, 180), frac_disease: float = 0.6,
                  flag: str = "pneumoniamnist", disease: int = 1, seed: int = 0) -> FakeMedMNIST:
    """Train/val/test splits of the given sizes; ``disease`` is the label of sick images."""
    g = torch.Generator().manual_seed(seed)
    offsets = (0, sizes[0], sizes[0] + sizes[1])
    tr, va, te = (_split(n, frac_disease, disease, o, g) for n, o in zip(sizes, offsets,
                                                                         strict=True))
    return FakeMedMNIST(flag, tr, va, te)


def tags(data: TensorDataset) -> set[int]:
    """The image indices encoded by :func:`fake_medmnist` (unscanned images only)."""
    return {int(round(float(v) * 100_000)) for v in data.tensors[0][:, 0, 0, 0]}
