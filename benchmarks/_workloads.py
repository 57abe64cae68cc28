"""The workloads of ``bench_frameworks.py``: same model, data, steps and seeds for every framework.

Imported by the benchmark's child processes and by Flower's ClientApp/ServerApp processes, so
it imports only torch and numpy at module level: each framework then pays for its own imports.

* ``cnn``: SmallCNN on PneumoniaMNIST (the real offline file), 10 IID hospitals, 3 rounds,
  E=1, B=32, lr 0.05, clinical metrics (scikit-learn) on the test split after every round;
* ``logreg200``: logistic regression 784 -> 10 on MNIST-shaped synthetic data, 200 clients of
  60 examples, all taking part, 3 rounds, E=1, B=10, lr 0.05;
* ``lr1000``: the same with 1,000 clients, all taking part (the 1,000-participant round);
* ``flute``: FLUTE's published CPU shape: 1,000 clients, 10 per round, 100 rounds, B=10, E=1.

Synthetic data: there is no MNIST offline, and the time of a round does not depend on the
pixels, so each class gets a random mean image and examples are that mean plus noise, clipped
to [0, 1] (seeded; learnable, so the final accuracy shows that every framework learned).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class Workload:
    name: str
    model: str  # "cnn" or "logreg"
    num_clients: int
    per_round: int  # clients sampled per round
    rounds: int
    batch_size: int
    lr: float
    eval_every_round: bool
    description: str


WORKLOADS = {
    "cnn": Workload("cnn", "cnn", 10, 10, 3, 32, 0.05, True,
                    "SmallCNN, PneumoniaMNIST, 10 hospitals, 3 rounds, clinical metrics every "
                    "round"),
    "logreg200": Workload("logreg200", "logreg", 200, 200, 3, 10, 0.05, False,
                          "logistic regression 784->10, 200 clients x 60, 3 rounds"),
    "lr1000": Workload("lr1000", "logreg", 1000, 1000, 3, 10, 0.05, False,
                       "logistic regression 784->10, 1,000 clients x 60, all participate, "
                       "3 rounds"),
    "flute": Workload("flute", "logreg", 1000, 10, 100, 10, 0.05, False,
                      "FLUTE shape: LR 784->10, 1,000 clients x 60, 10 per round, 100 rounds"),
}
SEED = 0
EXAMPLES_PER_CLIENT = 60
SYNTH_TEST = 10_000


def make_model(w: Workload) -> torch.nn.Module:
    """The same initial weights everywhere (a seeded torch init, no fedlearn needed)."""
    torch.manual_seed(SEED)
    if w.model == "cnn":
        from fedlearn.models import SmallCNN  # torch-only module: the architecture, not the loop

        return SmallCNN(in_channels=1, num_classes=2)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))


def _medmnist_file() -> Path:
    root = Path(os.environ.get("FEDLEARN_DATA_DIR", "/work/shared/data"))
    for p in (root / "medmnist" / "pneumoniamnist.npz", root / "pneumoniamnist.npz"):
        if p.exists():
            return p
    raise FileNotFoundError(f"pneumoniamnist.npz not found under {root}; set FEDLEARN_DATA_DIR")


@cache
def client_data(name: str) -> tuple[list[tuple[torch.Tensor, torch.Tensor]],
                                    tuple[torch.Tensor, torch.Tensor]]:
    """Every client's (x, y) and the test set, built the same way in every process."""
    w = WORKLOADS[name]
    rng = np.random.default_rng(SEED)
    if w.model == "cnn":
        with np.load(_medmnist_file()) as f:
            xtr, ytr = f["train_images"], f["train_labels"]
            xte, yte = f["test_images"], f["test_labels"]

        def tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            return (torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1),
                    torch.from_numpy(y.reshape(-1).astype(np.int64)))

        x, y = tensors(xtr, ytr)
        parts = np.array_split(rng.permutation(len(x)), w.num_clients)
        clients = [(x[torch.from_numpy(p)], y[torch.from_numpy(p)]) for p in parts]
        return clients, tensors(xte, yte)
    means = (0.5 + 0.05 * rng.standard_normal(size=(10, 784))).astype(np.float32)
    n = w.num_clients * EXAMPLES_PER_CLIENT

    def synth(m: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = rng.integers(0, 10, size=m)
        xs = np.clip(means[labels] + rng.normal(0, 0.3, size=(m, 784)).astype(np.float32), 0, 1)
        return torch.from_numpy(xs.astype(np.float32)), torch.from_numpy(labels.astype(np.int64))

    x, y = synth(n)
    clients = [(x[i * EXAMPLES_PER_CLIENT:(i + 1) * EXAMPLES_PER_CLIENT].clone(),
                y[i * EXAMPLES_PER_CLIENT:(i + 1) * EXAMPLES_PER_CLIENT].clone())
               for i in range(w.num_clients)]
    return clients, synth(SYNTH_TEST)


def clinical_metrics(model: torch.nn.Module, test: tuple[torch.Tensor, torch.Tensor],
                     ) -> dict[str, float]:
    """What a tutorial computes with scikit-learn: accuracy, AUROC (binary), balanced accuracy,
    sensitivity, specificity, F1 and the log loss. Used by the plain loop and by Flower."""
    from sklearn import metrics as skm

    model.eval()
    with torch.no_grad():
        proba = torch.cat([torch.softmax(model(xb), 1) for xb in test[0].split(2048)]).numpy()
    model.train()
    y = test[1].numpy()
    pred = proba.argmax(1)
    out = {"accuracy": float(skm.accuracy_score(y, pred)),
           "balanced_accuracy": float(skm.balanced_accuracy_score(y, pred)),
           "loss": float(skm.log_loss(y, proba, labels=list(range(proba.shape[1]))))}
    if proba.shape[1] == 2:
        tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
        out.update(auroc=float(skm.roc_auc_score(y, proba[:, 1])),
                   sensitivity=float(tp / max(tp + fn, 1)),
                   specificity=float(tn / max(tn + fp, 1)),
                   f1=float(skm.f1_score(y, pred, zero_division=0)))
    return out
