"""Gradient inversion: rebuild a patient's image from one hospital's FedSGD update.

"Federated learning never shares data" is not a privacy guarantee: an update is a function of
the data, and for one example it can often be inverted. Deep Leakage from Gradients (Zhu, Liu
and Han 2019) optimises a dummy image until *its* gradient matches the observed one; Inverting
Gradients (Geiping, Bauermeister, Droege and Moeller 2020) matches the gradient's *direction*
(cosine distance, so the unknown learning rate cancels) and adds a total-variation prior that
favours natural, piecewise-smooth images:

    x* = argmin_x  1 - cos(grad_w L(f_w(x), y), g_observed) + alpha TV(x).

The label comes first, for free: for one example, the gradient of the last layer's bias is
``softmax(logits) - onehot(y)``, negative only at the true class (iDLG, Zhao, Mopuri and Bilen
2020). The server knows the model ``w`` it sent, so it has everything the attack needs.

The same attack on the *sum* of many hospitals' updates (secure aggregation) or on an update
drowned in DP noise reconstructs no particular patient; :func:`best_psnr` measures that by
comparing the reconstruction with every candidate image and keeping the best match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from skimage.metrics import structural_similarity
from torch import nn

from ..utils import StateDict

__all__ = ["model_gradient", "update_to_gradient", "infer_label", "total_variation",
           "InversionResult", "invert_gradients", "psnr", "ssim", "best_psnr"]


def _params(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(k, p) for k, p in model.named_parameters() if p.requires_grad]


def model_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """The mean cross-entropy gradient on ``(x, y)``, one tensor per trainable parameter."""
    loss = nn.functional.cross_entropy(model(x), y)
    return [g.detach() for g in torch.autograd.grad(loss, [p for _, p in _params(model)])]


def update_to_gradient(delta: StateDict, model: nn.Module, lr: float = 1.0) -> list[torch.Tensor]:
    """The gradient a FedSGD update encodes: ``delta = -lr * grad``, so ``grad = -delta / lr``.

    Only the direction matters to the cosine loss, so ``lr`` may be left at 1.
    """
    missing = [k for k, _ in _params(model) if k not in delta]
    if missing:
        raise KeyError(f"update has no entry for parameters {missing}")
    return [-delta[k].detach().float() / lr for k, _ in _params(model)]


def infer_label(gradient: Sequence[torch.Tensor]) -> int:
    """iDLG: the class whose last-layer bias gradient is most negative.

    Exact for a single example with cross-entropy (the bias gradient is ``p - onehot(y)``);
    for a sum over many examples it only names the majority-ish class.
    """
    last_bias = gradient[-1]
    if last_bias.dim() != 1:
        raise ValueError("expected the last parameter to be the output layer's bias")
    return int(torch.argmin(last_bias))


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels (anisotropic TV)."""
    return ((x[..., 1:, :] - x[..., :-1, :]).abs().mean()
            + (x[..., :, 1:] - x[..., :, :-1]).abs().mean())


@dataclass
class InversionResult:
    """A reconstructed image in [0, 1] (shape (1, C, H, W)), its label and the loss curve."""

    image: torch.Tensor
    label: int
    losses: list[float] = field(default_factory=list)


def invert_gradients(model: nn.Module, target: Sequence[torch.Tensor], *, label: int | None = None,
                     shape: tuple[int, ...] = (1, 1, 28, 28), steps: int = 300, lr: float = 0.1,
                     tv_weight: float = 0.01, seed: int = 0,
                     num_threads: int | None = 1) -> InversionResult:
    """Geiping et al.'s attack: find the image whose gradient points like ``target``.

    Args:
        model: the global model the update was computed on (the server sent it).
        target: the observed gradient (or update; only its direction matters).
        label: the example's class; inferred from ``target`` (iDLG) if ``None``.
        shape: the image batch shape to reconstruct (one image here).
        steps: Adam steps; the learning rate drops 10x at 60% and 85% of them.
        lr: Adam's step size on the image logits.
        tv_weight: alpha, the weight of the total-variation prior.
        seed: seeds the random starting image.
        num_threads: torch threads while attacking (restored afterwards). One image through a
            small CNN is too little work to split: extra threads only add synchronisation,
            which on a busy machine made the attack 30x slower. ``None`` leaves it alone.
    """
    y = torch.tensor([infer_label(target) if label is None else label])
    params = [p for _, p in _params(model)]
    tgt = [t.detach() for t in target]
    tnorm = torch.sqrt(sum((t ** 2).sum() for t in tgt))
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(shape, generator=gen).requires_grad_(True)  # image = sigmoid(z) in (0, 1)
    opt = torch.optim.Adam([z], lr=lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(0.6 * steps), int(0.85 * steps)], 0.1)
    losses: list[float] = []
    was_training = model.training
    threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    model.eval()
    try:
        _optimise(model, params, tgt, tnorm, z, y, shape, opt, sched, steps, tv_weight, losses)
    finally:
        model.train(was_training)
        torch.set_num_threads(threads)
    return InversionResult(torch.sigmoid(z).detach(), int(y), losses)


def _optimise(model: nn.Module, params: list[nn.Parameter], tgt: list[torch.Tensor],
              tnorm: torch.Tensor, z: torch.Tensor, y: torch.Tensor, shape: tuple[int, ...],
              opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
              steps: int, tv_weight: float, losses: list[float]) -> None:
    """The attack's inner loop: Adam on the image logits ``z``."""
    for _ in range(steps):
        opt.zero_grad()
        x = torch.sigmoid(z)
        loss = nn.functional.cross_entropy(model(x), y.expand(shape[0]))
        grads = torch.autograd.grad(loss, params, create_graph=True)
        dot = sum((g * t).sum() for g, t in zip(grads, tgt, strict=True))
        gnorm = torch.sqrt(sum((g ** 2).sum() for g in grads))
        objective = 1 - dot / (gnorm * tnorm + 1e-12) + tv_weight * total_variation(x)
        objective.backward()
        opt.step()
        sched.step()
        losses.append(float(objective.detach()))


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(range^2 / MSE)`` (higher = closer)."""
    mse = float(((a.detach().double() - b.detach().double()) ** 2).mean())
    return float("inf") if mse == 0 else 10.0 * float(np.log10(data_range ** 2 / mse))


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> float:
    """Structural similarity of two single-channel images (scikit-image; 1 = identical)."""
    x = a.detach().double().squeeze().numpy()
    y = b.detach().double().squeeze().numpy()
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"expected two single-channel images, got {a.shape} and {b.shape}")
    return float(structural_similarity(x, y, data_range=data_range))


def best_psnr(recon: torch.Tensor, candidates: torch.Tensor) -> tuple[int, float]:
    """Index and PSNR of the candidate image the reconstruction resembles most."""
    scores = [psnr(recon.reshape(c.shape), c) for c in candidates]
    i = int(np.argmax(scores))
    return i, scores[i]
