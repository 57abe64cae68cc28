"""DP-SGD written out by hand, for teaching; tested equal to Opacus for the same noise draw.

One DP-SGD step (Abadi et al. 2016, Algorithm 1) on a batch ``B`` drawn by Poisson sampling
with rate ``q`` from ``n`` patients:

1. per-sample gradients ``g_i = grad loss(w; x_i, y_i)``;
2. clip each: ``g_i <- g_i * min(1, C / ||g_i||)``, so one patient moves the sum by <= ``C``;
3. noise the sum: ``G = sum_i g_i + N(0, (sigma C)^2 I)``;
4. divide by the *expected* batch size ``q n`` (not ``|B|``, which would leak) and step:
   ``w <- w - lr * G / (q n)``.

The functions below do exactly that with ``torch.func`` (``vmap`` of ``grad``) and draw the
noise parameter by parameter, in ``model.parameters()`` order, with
``torch.normal(0, sigma C, size)``, which is how Opacus' ``DPOptimizer`` draws it. So with the
same seeded generator, :func:`dp_sgd_step` and one Opacus step give the same weights (test:
``tests/test_privacy_scratch.py``). Real training should use Opacus (:mod:`.dpsgd`), which
also handles sampling, accounting, many layer types and secure randomness.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

__all__ = ["gaussian_mechanism", "per_sample_gradients", "clip_per_sample",
           "noisy_mean_gradient", "dp_sgd_step", "DPStepInfo"]

Grads = dict[str, torch.Tensor]


def gaussian_mechanism(value: torch.Tensor, sensitivity: float, noise_multiplier: float,
                       generator: torch.Generator) -> torch.Tensor:
    """Release ``value + N(0, (noise_multiplier * sensitivity)^2)`` entry-wise.

    ``sensitivity`` is the most ``value`` can change when one record is added or removed
    (its L2 sensitivity); the noise is measured in units of it, which is why clipping
    (bounding the sensitivity) has to come first.
    """
    if not sensitivity > 0:
        raise ValueError(f"sensitivity must be > 0, got {sensitivity}")
    if not noise_multiplier >= 0:
        raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier}")
    std = noise_multiplier * sensitivity
    if std == 0:
        return value.clone()
    return value + torch.normal(0.0, std, size=tuple(value.shape), generator=generator,
                                dtype=value.dtype)


def per_sample_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                         method: Literal["vmap", "loop"] = "vmap") -> Grads:
    """Gradient of the cross-entropy of EACH example, stacked: ``{name: (B, *param.shape)}``.

    ``"loop"`` runs one backward pass per example (slow, obviously right); ``"vmap"``
    vectorises the same function over the batch with ``torch.func`` (fast).
    """
    names = [k for k, p in model.named_parameters() if p.requires_grad]
    if method == "loop":
        out: dict[str, list[torch.Tensor]] = {k: [] for k in names}
        params = dict(model.named_parameters())
        for i in range(len(x)):
            loss = nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1])
            gs = torch.autograd.grad(loss, [params[k] for k in names])
            for k, g in zip(names, gs, strict=True):
                out[k].append(g.detach())
        return {k: torch.stack(v) for k, v in out.items()}
    if method != "vmap":
        raise ValueError(f"method must be 'vmap' or 'loop', got {method!r}")
    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    buffers = {k: b.detach() for k, b in model.named_buffers()}

    def loss_one(p: Grads, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return nn.functional.cross_entropy(logits, yi.unsqueeze(0))

    return dict(vmap(grad(loss_one), in_dims=(None, 0, 0))(params, x, y))


def clip_per_sample(grads: Grads, max_norm: float) -> tuple[Grads, torch.Tensor]:
    """Clip each example's gradient (all parameters together) to L2 norm ``max_norm``.

    Returns the clipped gradients and the per-example norms *before* clipping. The factor is
    ``min(1, C / (norm + 1e-6))`` as in Opacus; the 1e-6 avoids dividing by zero.
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    per_param = [g.reshape(len(g), -1).norm(2, dim=1) for g in grads.values()]
    norms = torch.stack(per_param, dim=1).norm(2, dim=1)
    factor = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    return {k: torch.einsum("i,i...->i...", factor, g) for k, g in grads.items()}, norms


def noisy_mean_gradient(clipped: Grads, noise_multiplier: float, max_norm: float,
                        expected_batch_size: float, generator: torch.Generator | None) -> Grads:
    """``(sum_i g_i + N(0, (sigma C)^2 I)) / expected_batch_size``, noise drawn per parameter."""
    if not expected_batch_size > 0:
        raise ValueError(f"expected_batch_size must be > 0, got {expected_batch_size}")
    std = noise_multiplier * max_norm
    out: Grads = {}
    for k, g in clipped.items():
        s = g.sum(dim=0)
        if std > 0:
            s = s + torch.normal(mean=0, std=std, size=s.shape, generator=generator,
                                 dtype=s.dtype)
        out[k] = s / expected_batch_size
    return out


@dataclass
class DPStepInfo:
    """What one step did: per-example norms before clipping and how many were clipped."""

    norms: torch.Tensor
    num_clipped: int
    grad: Grads


@torch.no_grad()
def _apply(model: nn.Module, g: Grads, lr: float) -> None:
    for k, p in model.named_parameters():
        if k in g:
            p.sub_(lr * g[k])


def dp_sgd_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, lr: float,
                noise_multiplier: float, max_grad_norm: float, expected_batch_size: float,
                generator: torch.Generator | None) -> DPStepInfo:
    """One DP-SGD step with plain SGD, in place on ``model``: steps 1-4 of the module doc."""
    grads = per_sample_gradients(model, x, y)
    clipped, norms = clip_per_sample(grads, max_grad_norm)
    g = noisy_mean_gradient(clipped, noise_multiplier, max_grad_norm, expected_batch_size,
                            generator)
    _apply(model, g, lr)
    return DPStepInfo(norms=norms, num_clipped=int((norms > max_grad_norm).sum()), grad=g)
