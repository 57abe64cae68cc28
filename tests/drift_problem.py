"""A two-hospital logistic regression where local steps drift (shared by algorithm tests).

The hospitals' features and label rates differ, so each one's optimum is far from the
optimum of the pooled objective; weight decay makes every objective strictly convex, so
that optimum is unique and can be found to high precision with L-BFGS.
"""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

import fedlearn as fl

WEIGHT_DECAY = 0.1


def drift_clients() -> list[fl.Client]:
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(40, 3, generator=g) + torch.tensor([2.0, 0.0, 0.0])
    y0 = (torch.rand(40, generator=g) < 0.8).long()
    x1 = torch.randn(60, 3, generator=g) - torch.tensor([0.0, 2.0, 0.0])
    y1 = (torch.rand(60, generator=g) < 0.3).long()
    return [fl.Client(0, TensorDataset(x0, y0)), fl.Client(1, TensorDataset(x1, y1))]


def flat_params(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def pooled_optimum(clients: list[fl.Client], weight_decay: float = WEIGHT_DECAY) -> torch.Tensor:
    """argmin of sum_i (n_i/n) F_i(w) + wd/2 ||w||^2: FedAvg's objective, solved centrally."""
    x = torch.cat([c.train.tensors[0] for c in clients])
    y = torch.cat([c.train.tensors[1] for c in clients])
    model = fl.make_model("logreg", in_features=x.shape[1], seed=0).double()
    opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=500, tolerance_grad=1e-14,
                            tolerance_change=1e-16, history_size=50,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x.double()), y)
        loss = loss + weight_decay / 2 * sum((p ** 2).sum() for p in model.parameters())
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    return flat_params(model).float()
