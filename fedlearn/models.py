"""The three model families the course uses, all small enough to train on a laptop CPU.

* :class:`LogisticRegression` for tabular data (the heart-disease hospitals): convex, so
  federated theory (FedSGD == gradient descent, client drift) can be checked exactly.
* :class:`MLP` for tabular data when a non-convex model is wanted.
* :class:`SmallCNN` for 28x28 MedMNIST images. Its normalisation layer is configurable
  because it matters in federated learning: BatchNorm keeps running statistics that differ
  between hospitals (FedBN keeps them local), GroupNorm has none (a common FL choice).

Every model returns *logits* of shape ``(batch, num_classes)``; losses and metrics apply the
softmax. Binary tasks therefore use two output units, so one code path serves all tasks.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Norm = Literal["none", "batch", "group"]

__all__ = ["LogisticRegression", "MLP", "SmallCNN", "Norm", "make_model", "num_parameters"]


class LogisticRegression(nn.Module):
    """Multinomial logistic regression: one linear layer (softmax lives in the loss)."""

    def __init__(self, in_features: int, num_classes: int = 2) -> None:
        super().__init__()
        self.in_features = in_features
        self.num_classes = num_classes
        self.linear = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


class MLP(nn.Module):
    """A multilayer perceptron with ReLU hidden layers."""

    def __init__(self, in_features: int, num_classes: int = 2,
                 hidden: tuple[int, ...] = (64,), dropout: float = 0.0) -> None:
        super().__init__()
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden sizes must be positive, got {hidden}")
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


def _norm_layer(norm: Norm, channels: int, groups: int) -> nn.Module:
    if norm == "none":
        return nn.Identity()
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        if channels % groups:
            raise ValueError(
                f"GroupNorm needs channels ({channels}) divisible by groups ({groups})")
        return nn.GroupNorm(groups, channels)
    raise ValueError(f"norm must be 'none', 'batch' or 'group', got {norm!r}")


class SmallCNN(nn.Module):
    """Two conv blocks and a two-layer head for 28x28 images with 1 or 3 channels.

    conv(5x5) -> norm -> ReLU -> maxpool(2), twice, then a hidden linear layer: the
    shape of McMahan et al.'s (2017) MNIST CNN, narrowed (``width``) so a round over ten
    hospitals takes seconds on a CPU.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, norm: Norm = "none",
                 width: int = 16, hidden: int = 64, groups: int = 4) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.norm = norm
        c1, c2 = width, 2 * width
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, padding=2), _norm_layer(norm, c1, groups), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2), _norm_layer(norm, c2, groups), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c2 * 7 * 7, hidden), nn.ReLU(),
                                  nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1:] != (self.in_channels, 28, 28):
            raise ValueError(
                f"SmallCNN expects (N, {self.in_channels}, 28, 28), got {tuple(x.shape)}")
        return self.head(self.features(x))


def make_model(name: str, *, seed: int | None = None, **kwargs: object) -> nn.Module:
    """Build a model by name ('logreg', 'mlp', 'cnn'), seeding its initial weights.

    Seeding here rather than globally lets an experiment compare strategies from the
    *same* initial global model, which FedAvg's analysis assumes.
    """
    builders = {"logreg": LogisticRegression, "mlp": MLP, "cnn": SmallCNN}
    if name not in builders:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(builders)}")
    if seed is None:
        return builders[name](**kwargs)  # type: ignore[arg-type]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return builders[name](**kwargs)  # type: ignore[arg-type]


def num_parameters(model: nn.Module) -> int:
    """Trainable scalars: what a client uploads each round (times 4 bytes in float32)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
