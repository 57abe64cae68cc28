"""Privacy-utility sweeps behind notebook 05, over several seeds (too slow for the notebook).

Five experiments, each a grid of target epsilons (``inf`` = no DP) x seeds, delta = 1e-5:

* ``heart_sample``: sample-level DP (each hospital runs DP-SGD through Opacus, noise calibrated
  so that *its* epsilon after all 15 rounds equals the target) on the four heart-disease
  hospitals; logistic regression, 15 rounds x 10 steps, Poisson batches of expected size 16,
  SGD lr 0.1, clip C = 1. The notebook runs this configuration live with one seed.
* ``heart_flamby``: the same with FLamby's Fed-Heart-Disease DP protocol (batch 4, 15 rounds
  x 100 local steps, SGD lr 1e-3, C = 1), to set our numbers beside FLamby's (FedAvg 0.7125
  without DP, 0.7015 at epsilon 1, 0.606 at epsilon 0.1; mean of the hospitals' accuracies).
  One difference on purpose: FLamby calls ``make_private_with_epsilon(epochs=nrounds)`` while
  each round runs 100 steps, so its noise is calibrated for fewer steps than are taken; here
  the noise covers all 1,500 steps, so each hospital's epsilon really is the target.
* ``pneumonia_sample``: sample-level DP on PneumoniaMNIST, 1,200 training images (random
  subsample) split IID over 3 clinics; SmallCNN (width 4, GroupNorm), 10 rounds x 10 steps,
  batch 64, SGD lr 0.1 momentum 0.5; scored on the official 624-image test split (AUROC).
* ``heart_client``: client-level DP-FedAvg (McMahan et al. 2018). ``4 hospitals``: the real
  federation, every hospital every round (q = 1), 15 rounds; ``120 clinics``: the pooled
  training patients split IID into 120 small clinics, q = 0.25, 40 rounds, C = 0.5. Same
  epsilon, very different noise on the mean (z C / m).
* ``mia``: membership inference on Cleveland (303 patients; a random half are members).
  MLP(128) trained with DP-SGD (40 epochs, batch 16, Adam lr 0.01, C = 1) at each epsilon;
  ``inf`` is the same recipe without noise or clipping; ``overfit`` is full-batch Adam for
  300 steps (what the attack is tested against). Loss-threshold attack AUC; LiRA (16 shadow
  models) on the overfitted model.

Run (needs the real data, e.g. ``FEDLEARN_DATA_DIR=/work/shared/data``)::

    python benchmarks/privacy_utility.py --quick                     # smoke test, writes nothing
    python benchmarks/privacy_utility.py --out benchmarks/results/privacy_utility.json

``--only heart_sample mia`` restricts the experiments; results are written only with ``--out``
(JSON with every run, plus a Markdown table of mean +- std beside it).
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
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

import fedlearn as fl
from fedlearn import privacy as dp
from fedlearn.privacy.dpsgd import dp_sample_rate, dp_steps_per_round

DELTA = 1e-5
INF = math.inf

HEART_CFG = fl.TrainConfig(steps=10, batch_size=16, lr=0.1)
HEART_ROUNDS = 15
FLAMBY_CFG = fl.TrainConfig(steps=100, batch_size=4, lr=1e-3)
FLAMBY_ROUNDS = 15
PNEU_CFG = fl.TrainConfig(steps=10, batch_size=64, lr=0.1, momentum=0.5)
PNEU_ROUNDS = 10
PNEU_MODEL = dict(in_channels=1, width=4, hidden=16, norm="group")
CLIENT_CFG_4 = fl.TrainConfig(steps=10, batch_size=16, lr=0.1)
CLIENT_CFG_MANY = fl.TrainConfig(steps=4, batch_size=None, lr=0.3)
MIA_OVERFIT = fl.TrainConfig(steps=300, batch_size=None, lr=0.01, optimizer="adam")
MIA_DP = fl.TrainConfig(epochs=40, batch_size=16, lr=0.01, optimizer="adam")


def _eps_label(e: float) -> str:
    return "inf" if math.isinf(e) else f"{e:g}"


def sample_level_run(clients: list[fl.Client], model: torch.nn.Module, cfg: fl.TrainConfig,
                     rounds: int, epsilon: float, seed: int) -> dict[str, float]:
    """FedAvg over hospitals that each run DP-SGD calibrated to ``epsilon`` over ``rounds``."""
    if math.isinf(epsilon):
        run_clients: list[fl.Client] = list(clients)
    else:
        sigmas = dp.calibrate_clients(clients, epsilon, DELTA, cfg, rounds)
        run_clients = list(dp.dp_clients_from(clients, sigmas, max_grad_norm=1.0, delta=DELTA))
    h = fl.run(model, run_clients, fl.FedAvg(cfg), rounds=rounds, seed=seed, eval_every=rounds,
               progress=False)
    per = h.per_client("accuracy")
    out = {"accuracy": h.final("accuracy"), "auroc": h.final("auroc"),
           "balanced_accuracy": h.final("balanced_accuracy"),
           "mean_hospital_accuracy": float(per.drop("pooled").mean()) if len(per) > 1 else math.nan}
    spent = [c.epsilon() for c in run_clients if isinstance(c, dp.DPClient)]
    out["max_epsilon_spent"] = max(spent) if spent else INF
    return out


def heart_clients() -> list[fl.Client]:
    return fl.clients_from_sites(fl.data.load_heart_disease())


def heart_sample_level(setting: str, cfg: fl.TrainConfig, rounds: int, seeds: list[int],
                       epsilons: list[float]) -> list[dict[str, Any]]:
    """Sample-level DP on the four heart hospitals, one logistic regression per seed."""
    rows = []
    for seed in seeds:
        for eps in epsilons:
            model = fl.make_model("logreg", in_features=13, seed=seed)
            rows.append({"setting": setting, "epsilon": eps, "seed": seed,
                         **sample_level_run(heart_clients(), model, cfg, rounds, eps, seed)})
    return rows


def exp_heart_sample(seeds: list[int], epsilons: list[float], quick: bool) -> list[dict[str, Any]]:
    return heart_sample_level("heart hospitals", HEART_CFG, 2 if quick else HEART_ROUNDS, seeds,
                              epsilons)


def exp_heart_flamby(seeds: list[int], epsilons: list[float], quick: bool) -> list[dict[str, Any]]:
    return heart_sample_level("FLamby protocol", FLAMBY_CFG, 1 if quick else FLAMBY_ROUNDS,
                              seeds, epsilons)


def pneumonia_clients(n_train: int = 1200) -> list[fl.Client]:
    ds = fl.data.load_medmnist("pneumoniamnist", progress=False)
    x, y = ds.train.tensors
    idx = torch.as_tensor(np.random.default_rng(0).permutation(len(x))[:n_train])
    train = TensorDataset(x[idx], y[idx])
    parts = fl.partition.iid_partition(len(train), 3, seed=0)
    return fl.clients_from_partition(train, parts, test=ds.test,
                                     names=["clinic A", "clinic B", "clinic C"])


def exp_pneumonia_sample(seeds: list[int], epsilons: list[float],
                         quick: bool) -> list[dict[str, Any]]:
    rows = []
    rounds = 1 if quick else PNEU_ROUNDS
    clients = pneumonia_clients(300 if quick else 1200)
    for seed in seeds:
        for eps in epsilons:
            model = fl.make_model("cnn", seed=seed, **PNEU_MODEL)
            rows.append({"setting": "PneumoniaMNIST 3 clinics", "epsilon": eps, "seed": seed,
                         **sample_level_run(clients, model, PNEU_CFG, rounds, eps, seed)})
    return rows


def many_clinics(k: int = 120) -> list[fl.Client]:
    sites = fl.data.load_heart_disease()
    train = TensorDataset(torch.cat([s.train.tensors[0] for s in sites]),
                          torch.cat([s.train.tensors[1] for s in sites]))
    test = TensorDataset(torch.cat([s.test.tensors[0] for s in sites]),
                         torch.cat([s.test.tensors[1] for s in sites]))
    return fl.clients_from_partition(train, fl.partition.iid_partition(len(train), k, seed=0),
                                     test=test)


def client_level_run(clients: list[fl.Client], cfg: fl.TrainConfig, rounds: int, q: float,
                     clip: float, epsilon: float, seed: int) -> dict[str, float]:
    model = fl.make_model("logreg", in_features=13, seed=seed)
    if math.isinf(epsilon):
        strategy: fl.Strategy = fl.FedAvg(cfg)
        fraction, z = q, 0.0
    else:
        z = dp.calibrate_noise(epsilon, DELTA, q, rounds)
        strategy = dp.DPFedAvg(fl.FedAvg(cfg, weighted=False), noise_multiplier=z,
                               clip_norm=clip, client_rate=q, delta=DELTA, seed=seed)
        fraction = 1.0
    h = fl.run(model, clients, strategy, rounds=rounds, fraction=fraction, seed=seed,
               eval_every=rounds, progress=False)
    spent = strategy.epsilon() if isinstance(strategy, dp.DPFedAvg) else INF
    return {"accuracy": h.final("accuracy"), "auroc": h.final("auroc"),
            "noise_multiplier": z, "noise_std_on_mean": z * clip / (q * len(clients)),
            "epsilon_spent": spent}


def exp_heart_client(seeds: list[int], epsilons: list[float], quick: bool) -> list[dict[str, Any]]:
    rows = []
    four = heart_clients()
    many = many_clinics(120)
    for seed in seeds:
        for eps in epsilons:
            rows.append({"setting": "4 hospitals", "epsilon": eps, "seed": seed,
                         **client_level_run(four, CLIENT_CFG_4, 2 if quick else 15, 1.0, 1.0,
                                            eps, seed)})
            rows.append({"setting": "120 clinics", "epsilon": eps, "seed": seed,
                         **client_level_run(many, CLIENT_CFG_MANY, 2 if quick else 40, 0.25, 0.5,
                                            eps, seed)})
    return rows


def cleveland_population() -> TensorDataset:
    site = fl.data.load_heart_disease()[0]
    return TensorDataset(torch.cat([site.train.tensors[0], site.test.tensors[0]]),
                         torch.cat([site.train.tensors[1], site.test.tensors[1]]))


def split(pop: TensorDataset, mask: np.ndarray) -> tuple[TensorDataset, TensorDataset]:
    x, y = pop.tensors
    m = torch.as_tensor(mask)
    return TensorDataset(x[m], y[m]), TensorDataset(x[~m], y[~m])


def train_overfit(data: TensorDataset, seed: int,
                  cfg: fl.TrainConfig = MIA_OVERFIT) -> torch.nn.Module:
    """The non-private recipe under attack: a wide MLP trained to fit every patient."""
    model = fl.make_model("mlp", in_features=data.tensors[0].shape[1], hidden=(128,), seed=seed)
    fl.local_train(model, model.state_dict(), data, cfg, seed=seed)
    return model


def train_dp(data: TensorDataset, epsilon: float, seed: int,
             cfg: fl.TrainConfig = MIA_DP) -> torch.nn.Module:
    """Same MLP, DP-SGD through Opacus, noise calibrated to ``epsilon`` (inf: plain training)."""
    model = fl.make_model("mlp", in_features=data.tensors[0].shape[1], hidden=(128,), seed=seed)
    if math.isinf(epsilon):
        fl.local_train(model, model.state_dict(), data, cfg, seed=seed)
        return model
    sigma = dp.calibrate_noise(epsilon, DELTA, dp_sample_rate(len(data), cfg.batch_size),
                               dp_steps_per_round(len(data), cfg))
    dp.dp_local_train(model, model.state_dict(), data, cfg, engine=dp.make_engine(),
                      noise_multiplier=sigma, max_grad_norm=1.0, seed=seed)
    return model


def exp_mia(seeds: list[int], epsilons: list[float], quick: bool) -> list[dict[str, Any]]:
    rows = []
    pop = cleveland_population()
    for seed in seeds:
        mask = np.random.default_rng(100 + seed).random(len(pop)) < 0.5
        members, non = split(pop, mask)
        target = train_overfit(members, seed)
        lira = dp.lira_attack(target, pop, mask, train_overfit, n_shadow=4 if quick else 16,
                              seed=seed)
        rows.append({"setting": "overfit (full batch)", "epsilon": INF, "seed": seed,
                     "loss_auc": dp.loss_threshold_attack(target, members, non).auc,
                     "lira_auc": lira.auc, "test_accuracy": fl.evaluate(target, non)["accuracy"],
                     "train_accuracy": fl.evaluate(target, members)["accuracy"]})
        for eps in epsilons:
            model = train_dp(members, eps, seed)
            rows.append({"setting": "DP-SGD recipe", "epsilon": eps, "seed": seed,
                         "loss_auc": dp.loss_threshold_attack(model, members, non).auc,
                         "test_accuracy": fl.evaluate(model, non)["accuracy"],
                         "train_accuracy": fl.evaluate(model, members)["accuracy"]})
    return rows


EXPERIMENTS: dict[str, tuple[Callable[..., list[dict[str, Any]]], list[float], list[int]]] = {
    "heart_sample": (exp_heart_sample, [0.1, 0.3, 1.0, 3.0, 10.0, INF], [0, 1, 2, 3, 4]),
    "heart_flamby": (exp_heart_flamby, [0.1, 1.0, INF], [0, 1, 2]),
    "pneumonia_sample": (exp_pneumonia_sample, [0.3, 1.0, 3.0, 10.0, INF], [0, 1, 2]),
    "heart_client": (exp_heart_client, [1.0, 3.0, 10.0, INF], [0, 1, 2]),
    "mia": (exp_mia, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0, INF], [0, 1, 2, 3, 4]),
}


def summarise(rows: list[dict[str, Any]]) -> str:
    """A Markdown table: mean +- std over seeds per (experiment, setting, epsilon)."""
    lines = []
    keys = sorted({(r["experiment"], r["setting"]) for r in rows}, key=str)
    for exp, setting in keys:
        sel = [r for r in rows if r["experiment"] == exp and r["setting"] == setting]
        metrics = [k for k in sel[0] if k not in ("experiment", "setting", "epsilon", "seed",
                                                   "seconds")]
        lines += [f"\n### {exp}: {setting}\n", "| epsilon | seeds | " + " | ".join(metrics) + " |",
                  "|---:|---:|" + "---:|" * len(metrics)]
        for eps in sorted({r["epsilon"] for r in sel}):
            group = [r for r in sel if r["epsilon"] == eps]
            cells = []
            for m in metrics:
                vals = [float(r[m]) for r in group
                        if r.get(m) is not None and not math.isnan(float(r[m]))]
                if not vals or any(math.isinf(v) for v in vals):
                    cells.append("inf" if vals else "")
                    continue
                sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
                cells.append(f"{statistics.mean(vals):.3f} +- {sd:.3f}")
            lines.append(f"| {_eps_label(eps)} | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", choices=sorted(EXPERIMENTS), default=None)
    ap.add_argument("--quick", action="store_true", help="1 seed, 2 epsilons, tiny runs")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    started = time.time()
    for name in args.only or list(EXPERIMENTS):
        fn, epsilons, seeds = EXPERIMENTS[name]
        if args.quick:
            epsilons, seeds = [epsilons[0], INF], seeds[:1]
        t0 = time.time()
        new = fn(seeds, epsilons, args.quick)
        for r in new:
            r["experiment"] = name
        rows += new
        print(f"{name}: {len(new)} runs in {time.time() - t0:.0f} s", flush=True)
    if args.out is not None and not args.quick:
        meta = {"date": dt.datetime.now().isoformat(timespec="seconds"), "delta": DELTA,
                "python": platform.python_version(), "torch": torch.__version__,
                "argv": sys.argv[1:], "seconds": round(time.time() - started, 1),
                "configs": {k: repr(v) for k, v in globals().items()
                            if k.endswith(("_CFG", "_ROUNDS", "_MODEL", "_CFG_4", "_CFG_MANY"))
                            or k.startswith("MIA_")}}
        clean = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                  for k, v in r.items()} for r in rows]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"meta": meta, "rows": clean}, indent=1))
    table = summarise(rows)
    print(table)
    if args.out is not None and not args.quick:
        args.out.with_suffix(".md").write_text(
            "# Privacy-utility sweeps (benchmarks/privacy_utility.py)\n\n"
            f"delta = {DELTA:g}; epsilon = inf means no DP. Mean +- std over seeds.\n" + table)
        print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
