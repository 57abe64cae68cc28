"""Seeded image augmentation inside local training.

A rural clinic with 150 chest X-rays overfits them within a few epochs. Showing the network
slightly moved, rotated, rescaled and re-exposed copies of the same images (*data
augmentation*) is the standard cure, and in federated learning it has to happen where the
images are: inside each hospital's local training.

The core training loop (:func:`fedlearn.local_train`) indexes a fixed tensor dataset and its
:class:`~fedlearn.LocalHook` sees models, not batches, so augmentation plugs in one level up:
an :class:`AugmentedClient` draws a fresh augmented copy of its training images at the start
of every round, from a generator seeded by that round's seed, and trains on the copy. With
one local epoch per round this is exactly per-epoch augmentation; with several local epochs
the epochs of one round share one copy. Every draw is reproducible from the run's seed.

The transforms are batched affine warps (``torch.nn.functional.affine_grid`` /
``grid_sample``) plus intensity jitter, so augmenting a hospital's whole training set costs a
few milliseconds; no per-image Python loop, no torchvision pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from .client import Client, LocalHook, TrainConfig, local_train
from .update import ClientUpdate
from .utils import StateDict, derive_seed, torch_generator

__all__ = ["Augment", "AugmentedClient", "augmented_clients"]


@dataclass(frozen=True)
class Augment:
    """A random geometric and intensity perturbation of a batch of images in [0, 1].

    Each image independently gets a rotation in ``[-rotation, rotation]`` degrees, a zoom in
    ``[1 - scale, 1 + scale]``, a shift of up to ``shift`` pixels along each axis, an optional
    horizontal flip (sensible for ultrasound, *not* for chest X-rays, whose heart is on one
    side), and a contrast factor in ``[1 - contrast, 1 + contrast]`` about the image mean plus
    a brightness offset in ``[-brightness, brightness]``. Borders are filled by repeating the
    edge pixels, and the result is clipped to [0, 1].
    """

    rotation: float = 10.0
    scale: float = 0.1
    shift: float = 2.0
    hflip: bool = False
    brightness: float = 0.1
    contrast: float = 0.1

    def __post_init__(self) -> None:
        for name in ("rotation", "scale", "shift", "brightness", "contrast"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.scale >= 1:
            raise ValueError(f"scale must be < 1 (a zoom factor of 1 - scale > 0), got "
                             f"{self.scale}")

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augmented copy of ``x`` (N, C, H, W); ``x`` itself is not modified."""
        if x.dim() != 4:
            raise ValueError(f"expected images (N, C, H, W), got shape {tuple(x.shape)}")
        n, _, h, w = x.shape
        if n == 0:
            return x.clone()

        def uniform() -> torch.Tensor:  # n draws in [-1, 1]
            return torch.rand(n, generator=generator, dtype=torch.float32) * 2 - 1

        angle = uniform() * math.radians(self.rotation)
        zoom = 1 + uniform() * self.scale
        # affine_grid works in normalised coordinates: the image spans [-1, 1], 2 units wide
        tx, ty = uniform() * 2 * self.shift / w, uniform() * 2 * self.shift / h
        flip = (torch.rand(n, generator=generator) < 0.5 if self.hflip
                else torch.zeros(n, dtype=torch.bool))
        sx = torch.where(flip, -1.0, 1.0)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack([torch.stack([cos * sx, -sin, tx], 1),
                             torch.stack([sin * sx, cos, ty], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border",
                            align_corners=False)
        c = (1 + uniform() * self.contrast).view(-1, 1, 1, 1)
        b = (uniform() * self.brightness).view(-1, 1, 1, 1)
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        return ((out - mean) * c + mean + b).clamp(0.0, 1.0).to(x.dtype)


@dataclass
class AugmentedClient(Client):
    """A hospital that trains on a freshly augmented copy of its images every round.

    The copy is drawn from ``derive_seed(seed, 0xA06)`` where ``seed`` is the round seed that
    :func:`fedlearn.run` hands to :meth:`fit`, so a run is reproducible and two rounds (or two
    hospitals) never share an augmentation. ``train`` itself is never modified: evaluation,
    FedBN's statistics recalibration and DP accounting all see the real images.
    """

    augment: Augment = field(default_factory=Augment)

    def fit(self, model: nn.Module, global_state: StateDict, config: TrainConfig, seed: int,
            hooks: Sequence[LocalHook] = ()) -> ClientUpdate:
        x, y = self.train.tensors[0], self.train.tensors[1]
        xa = self.augment(x, torch_generator(derive_seed(seed, 0xA06)))
        return local_train(model, global_state, TensorDataset(xa, y), config, seed=seed,
                           hooks=hooks, cid=self.cid, loss_fn=self.loss_fn)


def augmented_clients(clients: Sequence[Client], augment: Augment | None = None,
                      ) -> list[AugmentedClient]:
    """Augmenting versions of ``clients`` (same ids, names, data, meta and loss)."""
    aug = augment if augment is not None else Augment()
    return [AugmentedClient(cid=c.cid, train=c.train, test=c.test, name=c.name,
                            meta=dict(c.meta), loss_fn=c.loss_fn, val=c.val, augment=aug)
            for c in clients]
