"""Reproduce FLamby's Fed-Heart-Disease benchmark with fedlearn, then tune it honestly.

FLamby (Ogier du Terrail et al., NeurIPS 2022 Datasets & Benchmarks) benchmarks federated
strategies on the four UCI heart-disease hospitals. Its protocol, from the repository:

* ``flamby/datasets/fed_heart_disease/common.py``: batch size 4; single-centre ("Local i")
  and "Pooled" baselines train with Adam, lr 1e-3, for 50 epochs; federated runs do
  ``get_nb_max_rounds(100) = (486 // 4 // 4) * 50 // 100 = 15`` rounds of 100 local steps.
* ``flamby/datasets/fed_heart_disease/model.py``: logistic regression ``Linear(13, 1)`` +
  sigmoid, binary cross-entropy; metric = accuracy at threshold 0.5 on the pooled test set.
* ``flamby/datasets/fed_heart_disease/dataset.py``: every hospital z-scores its features with
  the mean/std of *its own* training rows, but the *pooled* data sets (pooled training and the
  pooled test set on which every method is scored) are z-scored with the statistics of all
  486 training rows. Federated models are therefore trained on per-hospital-normalised inputs
  and tested on pooled-normalised ones; we reproduce that, and also report the same models
  on the union of the hospitals' own (per-hospital-normalised) test sets.
* ``flamby/config_heart_disease.json`` (the per-strategy hyperparameters "used in the
  companion article", commit 88fbe60 of github.com/owkin/FLamby): SGD clients;
  FedAvg lr 1e-3; FedProx lr 1e-3, mu 1e-2; Scaffold lr 1e-3, server lr 1;
  FedAdam lr 1e-2, server lr 1e-2; FedYogi lr 10^-2.5, server lr 1e-2;
  FedAdagrad lr 10^-2.5, server lr 10^-0.5; all FedOpt with beta1 0.9, beta2 0.999,
  tau 1e-8; Cyclic lr 1e-2. Seeds 42-46.

Part 1 runs that protocol (5 seeds) beside FLamby's published pooled-test accuracies.
Part 2 tunes each federated strategy *without looking at the test sets*: every hospital's
training split is cut into 75 % train / 25 % validation (stratified when possible), each
configuration of a small grid is scored by pooled validation accuracy (mean of 3 seeds, ties
broken by validation log-loss), and the winner is retrained on the full training splits and
tested with the 5 seeds. The budget (15 rounds x 100 steps, batch 4) is fixed.
Part 3 repeats the tuning with *federated standardisation*: the hospitals send only their
row count, feature sums and sums of squares (aggregate statistics, no patient row), from which
the server computes the pooled mean/std that the Pooled baseline uses; every hospital then
standardises with those. Train and test inputs then match, as they do for the Pooled model.

Our model is FLamby's exactly: one logit ``z``, returned as the two logits ``(0, z)``, so the
course's softmax cross-entropy equals BCE on ``sigmoid(z)`` and every learning rate means
what it means in FLamby. Cyclic is not run (it is not one of the course's algorithms).

Run (needs the UCI files, e.g. ``FEDLEARN_DATA_DIR=/work/shared/data``)::

    python benchmarks/flamby_heart.py            # ~1.5 h on one busy core; writes results
    python benchmarks/flamby_heart.py --quick    # smoke test: 1 seed, 2 rounds, writes nothing
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import TensorDataset

import fedlearn as fl
from fedlearn.algorithms import FedAdagrad, FedAdam, FedProx, FedYogi, Scaffold
from fedlearn.data.heart import heart_disease_frames, preprocess_heart_site

RESULTS = Path(__file__).resolve().parent / "results"
SEEDS = (42, 43, 44, 45, 46)
TUNE_SEEDS = (0, 1, 2)
BATCH, STEPS, ROUNDS, POOLED_EPOCHS, POOLED_LR = 4, 100, 15, 50, 1e-3
FLAMBY_REPO = "https://github.com/owkin/FLamby/blob/"
FLAMBY_CONFIG = (FLAMBY_REPO + "88fbe60cc361e2a808b0e3817369b93629e5f3fb/"
                 "flamby/config_heart_disease.json")
FLAMBY_COMMON = FLAMBY_REPO + "main/flamby/datasets/fed_heart_disease/common.py"
FLAMBY_DATASET = FLAMBY_REPO + "main/flamby/datasets/fed_heart_disease/dataset.py"
#: Accuracy on the pooled test set published by FLamby (mean over 5 seeds).
FLAMBY_PUBLISHED = {"Pooled": 0.795, "FedAvg": 0.748, "FedProx": 0.748, "SCAFFOLD": 0.748,
                    "FedAdam": 0.779, "FedYogi": 0.779, "FedAdagrad": 0.779, "Cyclic": 0.785}
_OPT = {"beta1": 0.9, "beta2": 0.999, "tau": 1e-8}
#: FLamby's hyperparameters (config_heart_disease.json); lr is the client SGD learning rate.
FLAMBY_HP: dict[str, dict[str, float]] = {
    "FedAvg": {"lr": 1e-3},
    "FedProx": {"lr": 1e-3, "mu": 1e-2},
    "SCAFFOLD": {"lr": 1e-3, "server_lr": 1.0},
    "FedAdam": {"lr": 1e-2, "server_lr": 1e-2, **_OPT},
    "FedYogi": {"lr": 0.003162, "server_lr": 1e-2, **_OPT},
    "FedAdagrad": {"lr": 0.003162, "server_lr": 0.316228, **_OPT},
}
_LRS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
_OPT_GRID = [{"lr": lr, "server_lr": s, **_OPT} for lr in (3e-3, 1e-2, 3e-2)
             for s in (3e-3, 1e-2, 3e-2, 1e-1)]
TUNING_GRID: dict[str, list[dict[str, float]]] = {
    "FedAvg": [{"lr": lr} for lr in _LRS],
    "FedProx": [{"lr": lr, "mu": mu} for lr in (3e-3, 1e-2, 3e-2, 1e-1)
                for mu in (1e-2, 1e-1, 1.0)],
    "SCAFFOLD": [{"lr": lr, "server_lr": 1.0} for lr in _LRS],
    "FedAdam": _OPT_GRID,
    "FedYogi": _OPT_GRID,
    "FedAdagrad": [{"lr": lr, "server_lr": s, **_OPT} for lr in (3e-3, 1e-2, 3e-2)
                   for s in (1e-2, 3e-2, 1e-1, 0.316228)],
}
Scaling = Literal["site", "federated"]


class FlambyLogisticRegression(nn.Module):
    """FLamby's Baseline: ``Linear(13, 1)``; logits ``(0, z)`` make softmax = sigmoid(z)."""

    def __init__(self, in_features: int = 13) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x)
        return torch.cat([torch.zeros_like(z), z], dim=1)


def make_model(seed: int) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return FlambyLogisticRegression()


# ------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class RawHeart:
    """The four hospitals' unstandardised features (FLamby's 13 columns) and labels."""

    names: list[str]
    x_train: list[np.ndarray]
    y_train: list[np.ndarray]
    x_test: list[np.ndarray]
    y_test: list[np.ndarray]


def load_raw() -> RawHeart:
    """fedlearn's FLamby-exact split, with each hospital's z-scoring undone."""
    names, xtr, ytr, xte, yte = [], [], [], [], []
    for name, frame in heart_disease_frames(progress=False).items():
        s = preprocess_heart_site(frame)
        scale = np.where(s.std > 0, s.std, 1.0)
        names.append(name)
        xtr.append(s.x_train.astype(np.float64) * scale + s.mean)
        xte.append(s.x_test.astype(np.float64) * scale + s.mean)
        ytr.append(s.y_train)
        yte.append(s.y_test)
    return RawHeart(names, xtr, ytr, xte, yte)


def federated_stats(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pooled mean and (unbiased) std from each hospital's (n, sum x, sum x^2) alone."""
    n = sum(len(x) for x in parts)
    s1 = sum(x.sum(axis=0) for x in parts)
    s2 = sum((x ** 2).sum(axis=0) for x in parts)
    mean = s1 / n
    var = (s2 - n * mean ** 2) / (n - 1)
    return mean, np.sqrt(np.maximum(var, 0.0))


def _z(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    return torch.tensor((x - mean) / np.where(std > 1e-12, std, 1.0),
                        dtype=torch.float32)


def make_clients(raw: RawHeart, scaling: Scaling,
                 split: list[tuple[np.ndarray, np.ndarray]] | None = None) -> list[fl.Client]:
    """Hospitals as clients; ``split`` = per-hospital (train, validation) row indices.

    ``scaling='site'``: each hospital z-scores with its own training rows (FLamby's
    federated setting); ``'federated'``: with the pooled statistics from
    :func:`federated_stats`. Statistics never use validation or test rows.
    """
    xtr, ytr, xte, yte = raw.x_train, raw.y_train, raw.x_test, raw.y_test
    if split is not None:  # the validation rows play the role of the test rows
        xte = [x[va] for x, (_, va) in zip(xtr, split, strict=True)]
        yte = [y[va] for y, (_, va) in zip(ytr, split, strict=True)]
        xtr = [x[tr] for x, (tr, _) in zip(xtr, split, strict=True)]
        ytr = [y[tr] for y, (tr, _) in zip(ytr, split, strict=True)]
    pooled = federated_stats(xtr)
    clients = []
    for k, name in enumerate(raw.names):
        mean, std = pooled if scaling == "federated" else (xtr[k].mean(0), xtr[k].std(0, ddof=1))
        clients.append(fl.Client(k, TensorDataset(_z(xtr[k], mean, std), torch.tensor(ytr[k])),
                                 TensorDataset(_z(xte[k], mean, std), torch.tensor(yte[k])),
                                 name=name))
    return clients


def flamby_pooled(raw: RawHeart) -> tuple[TensorDataset, TensorDataset]:
    """FLamby's pooled train and test sets: every row z-scored with pooled train statistics."""
    mean, std = federated_stats(raw.x_train)
    return (TensorDataset(_z(np.concatenate(raw.x_train), mean, std),
                          torch.tensor(np.concatenate(raw.y_train))),
            TensorDataset(_z(np.concatenate(raw.x_test), mean, std),
                          torch.tensor(np.concatenate(raw.y_test))))


def validation_split(raw: RawHeart, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each hospital's training rows cut 75/25 into train/validation (stratified if possible)."""
    out = []
    for y in raw.y_train:
        strat = y if (np.bincount(y, minlength=2) >= 2).all() else None
        tr, va = train_test_split(np.arange(len(y)), test_size=0.25, random_state=seed,
                                  stratify=strat)
        out.append((np.sort(tr), np.sort(va)))
    return out


# ------------------------------------------------------------------------------------- runs


def make_strategy(name: str, hp: dict[str, float]) -> fl.Strategy:
    cfg = fl.TrainConfig(steps=STEPS, batch_size=BATCH, lr=hp["lr"])
    opt = {k: hp[k] for k in ("server_lr", "beta1", "beta2", "tau") if k in hp}
    factories: dict[str, Callable[[], fl.Strategy]] = {
        "FedAvg": lambda: fl.FedAvg(cfg),
        "FedProx": lambda: FedProx(cfg, mu=hp["mu"]),
        "SCAFFOLD": lambda: Scaffold(cfg, server_lr=hp["server_lr"]),
        "FedAdam": lambda: FedAdam(cfg, **opt),
        "FedYogi": lambda: FedYogi(cfg, **opt),
        "FedAdagrad": lambda: FedAdagrad(cfg, **opt),
    }
    return factories[name]()


def run_federated(name: str, hp: dict[str, float], clients: list[fl.Client], seed: int,
                  rounds: int = ROUNDS, flamby_test: TensorDataset | None = None,
                  ) -> dict[str, float]:
    """Accuracy/loss of one federated run on the clients' own test sets ('own') and,
    if given, on FLamby's pooled-normalised test set ('flamby')."""
    model = make_model(seed)
    h = fl.run(model, clients, make_strategy(name, hp), rounds=rounds, eval_every=rounds,
               seed=seed, progress=False)
    out = {"own": h.final("accuracy"), "own_loss": h.final("loss")}
    if flamby_test is not None:
        out["flamby"] = fl.evaluate(model, flamby_test)["accuracy"]
    return out


def run_single_centre(train: TensorDataset, tests: dict[str, TensorDataset], seed: int,
                      epochs: int = POOLED_EPOCHS) -> dict[str, float]:
    """FLamby's Local/Pooled baseline: Adam, lr 1e-3, batch 4, 50 epochs on one data set."""
    model = make_model(seed)
    cfg = fl.TrainConfig(epochs=epochs, batch_size=BATCH, lr=POOLED_LR, optimizer="adam")
    u = fl.local_train(model, {k: v.clone() for k, v in model.state_dict().items()}, train, cfg,
                       seed=seed)
    assert u.metrics["num_steps"] == epochs * math.ceil(len(train) / BATCH)
    return {name: fl.evaluate(model, t)["accuracy"] for name, t in tests.items()}


def summarise(values: list[float]) -> dict[str, Any]:
    return {"values": [round(v, 4) for v in values], "mean": round(statistics.mean(values), 4),
            "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0}


def tune(name: str, val_clients: list[fl.Client], seeds: tuple[int, ...],
         rounds: int) -> dict[str, Any]:
    scores = []
    for hp in TUNING_GRID[name]:
        runs = [run_federated(name, hp, val_clients, s, rounds) for s in seeds]
        scores.append({"hp": hp,
                       "val_accuracy": round(statistics.mean(r["own"] for r in runs), 4),
                       "val_loss": round(statistics.mean(r["own_loss"] for r in runs), 4)})
        print(f"  tune {name} {hp}: val acc {scores[-1]['val_accuracy']:.3f} "
              f"loss {scores[-1]['val_loss']:.3f}", flush=True)
    best = max(scores, key=lambda s: (s["val_accuracy"], -s["val_loss"]))
    return {"grid": scores, "best": best["hp"]}


# ---------------------------------------------------------------------------------- reports


def markdown(res: dict[str, Any]) -> str:
    def cell(d: dict[str, Any] | None) -> str:
        return "—" if d is None else f"{d['mean']:.3f} ± {d['std']:.3f}"

    def hps(d: dict[str, Any] | None) -> str:
        if d is None:
            return ""
        return ", ".join(f"{k}={v:g}" for k, v in d["hp"].items() if k not in _OPT)

    lines = [
        "# FLamby Fed-Heart-Disease with fedlearn",
        "",
        f"Accuracy on FLamby's pooled test set (254 patients, z-scored with the pooled "
        f"training statistics as in FLamby's [dataset.py]({FLAMBY_DATASET})), mean ± sd over "
        f"seeds {list(SEEDS)}. Protocol and hyperparameters from FLamby ([config]"
        f"({FLAMBY_CONFIG}), [common.py]({FLAMBY_COMMON})): logistic regression, batch 4, "
        "15 rounds x 100 local SGD steps; Local/Pooled: Adam lr 1e-3, 50 epochs. "
        "*Own test sets*: the same FLamby-protocol models scored on the union of the "
        "hospitals' test sets, each z-scored with its hospital's own statistics (the inputs "
        "the federated models were trained on). *Tuned*: hyperparameters chosen on "
        "validation splits carved from the training sets (never the test sets), same budget. "
        "*Fed. standardisation*: tuned again with every hospital standardising by pooled "
        "statistics aggregated from per-hospital counts, sums and sums of squares. "
        "Generated by `benchmarks/flamby_heart.py`.",
        "",
        "| method | FLamby (published) | ours, FLamby protocol | same models, own test sets "
        "| ours, tuned | ours, tuned + fed. standardisation | tuned hyperparameters "
        "(tuned / fed. std.) |",
        "|---|---|---|---|---|---|---|",
    ]
    rep = res["reproduction"]
    tuned = res.get("tuned", {})
    fstd = res.get("federated_standardisation", {})
    for method in list(rep) + ["Cyclic"]:
        pub = FLAMBY_PUBLISHED.get(method)
        r = rep.get(method, {})
        lines.append(
            f"| {method} | {'—' if pub is None else f'{pub:.3f}'} | {cell(r.get('flamby'))} | "
            f"{cell(r.get('own'))} | {cell((tuned.get(method) or {}).get('flamby'))} | "
            f"{cell((fstd.get(method) or {}).get('flamby'))} | "
            f"{' / '.join(x for x in (hps(tuned.get(method)), hps(fstd.get(method))) if x)} |")
    lines += ["", res["verdict"], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 seed, 2 rounds; write nothing")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-tune", action="store_true", help="only reproduce FLamby's protocol")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    seeds = SEEDS[:1] if args.quick else SEEDS
    tune_seeds = TUNE_SEEDS[:1] if args.quick else TUNE_SEEDS
    rounds = 2 if args.quick else ROUNDS
    epochs = 1 if args.quick else POOLED_EPOCHS
    raw = load_raw()
    site_clients = make_clients(raw, "site")
    reference = fl.clients_from_sites(fl.data.load_heart_disease(progress=False))
    for a, b in zip(site_clients, reference, strict=True):  # same data as the course loader
        assert torch.allclose(a.train.tensors[0], b.train.tensors[0], atol=1e-5)
    pooled_train, flamby_test = flamby_pooled(raw)
    own_test = TensorDataset(torch.cat([c.test.tensors[0] for c in site_clients]),
                             torch.cat([c.test.tensors[1] for c in site_clients]))
    tests = {"flamby": flamby_test, "own": own_test}

    rep: dict[str, Any] = {}
    for c in site_clients:
        runs = [run_single_centre(c.train, tests, s, epochs) for s in seeds]
        rep[f"Local {c.cid} ({c.name})"] = {k: summarise([r[k] for r in runs]) for k in tests}
    runs = [run_single_centre(pooled_train, {"flamby": flamby_test}, s, epochs) for s in seeds]
    rep["Pooled"] = {"flamby": summarise([r["flamby"] for r in runs])}
    for name, hp in FLAMBY_HP.items():
        runs = [run_federated(name, hp, site_clients, s, rounds, flamby_test) for s in seeds]
        rep[name] = {"flamby": summarise([r["flamby"] for r in runs]),
                     "own": summarise([r["own"] for r in runs]), "hp": hp}
        print(f"{name:10s} FLamby protocol: {rep[name]['flamby']['mean']:.3f}", flush=True)
    res: dict[str, Any] = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(), "torch": torch.__version__,
        "protocol": {"batch_size": BATCH, "local_steps": STEPS, "rounds": ROUNDS,
                     "pooled_epochs": POOLED_EPOCHS, "pooled_lr": POOLED_LR,
                     "seeds": list(SEEDS), "tune_seeds": list(TUNE_SEEDS),
                     "flamby_config": FLAMBY_CONFIG, "flamby_common": FLAMBY_COMMON,
                     "flamby_dataset": FLAMBY_DATASET},
        "flamby_published": FLAMBY_PUBLISHED, "reproduction": rep,
    }
    if args.no_tune:
        res["verdict"] = "Tuning skipped (--no-tune)."
    else:
        split = validation_split(raw)
        res["tuning"] = {}
        for key, scaling in (("tuned", "site"), ("federated_standardisation", "federated")):
            val_clients = make_clients(raw, scaling, split)
            clients = site_clients if scaling == "site" else make_clients(raw, "federated")
            res[key], res["tuning"][key] = {}, {}
            for name in FLAMBY_HP:
                tuned = tune(name, val_clients, tune_seeds, rounds)
                res["tuning"][key][name] = tuned
                runs = [run_federated(name, tuned["best"], clients, s, rounds, flamby_test)
                        for s in seeds]
                res[key][name] = {"flamby": summarise([r["flamby"] for r in runs]),
                                  "own": summarise([r["own"] for r in runs]),
                                  "hp": tuned["best"]}
                print(f"{name:10s} {key} {tuned['best']}: "
                      f"{res[key][name]['flamby']['mean']:.3f}", flush=True)
        cands = {(k, m): res[k][m]["flamby"]["mean"]
                 for k in ("tuned", "federated_standardisation") for m in res[k]}
        (best_key, best), b = max(cands.items(), key=lambda kv: kv[1])
        p = rep["Pooled"]["flamby"]["mean"]
        label = best + (" with federated standardisation"
                        if best_key == "federated_standardisation" else "")
        res["best_federated"] = {"method": best, "variant": best_key, "accuracy": b}
        res["verdict"] = (
            f"Best federated strategy after tuning: **{label}**, {b:.3f} vs Pooled {p:.3f} "
            f"(ours) and {FLAMBY_PUBLISHED['Pooled']:.3f} (FLamby): "
            + ("it reaches the pooled model's accuracy." if b >= p - 1e-9 else
               f"{p - b:.3f} below our pooled model."))
    res["seconds"] = round(time.time() - t0, 1)
    print(markdown(res))
    if not args.quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "flamby_heart.json").write_text(json.dumps(res, indent=2) + "\n")
        (RESULTS / "flamby_heart.md").write_text(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
