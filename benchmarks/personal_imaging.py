"""Personalised FL on imaging hospitals with feature skew, against FedBN, on AUROC.

The case study's six BreastMNIST hospitals (``fedlearn.hospitals.build_consortium``, partition
seed 0), each with its own scanner (``SCANNERS``: reference, low contrast, dark, two gammas,
bright), a small CNN with BatchNorm (width 8, hidden 32), 8 rounds of one local epoch (SGD,
lr 0.05, momentum 0.9, batch 16).

Methods: FedAvg, FedBN (BatchNorm layers local), FineTune, FedPer (last linear layer local),
Ditto. The free hyper-parameter of FineTune (steps) and Ditto (lambda) is chosen on the
hospitals' *validation* splits (``fedlearn.tuning.tune``, validation-size-weighted AUROC);
test sets are read only for the final table. Metric: each hospital's own model's AUROC on its
own test set; mean over hospitals and the worst hospital; mean +- sd over seeds 42-46.

Run (needs the MedMNIST files, e.g. ``FEDLEARN_DATA_DIR=/work/shared/data``)::

    nice python benchmarks/personal_imaging.py          # ~6 min on one busy core
    python benchmarks/personal_imaging.py --quick       # smoke test, writes nothing
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import fedlearn as fl  # noqa: E402
from fedlearn.algorithms import Ditto, FedBN, FedPer, FineTune  # noqa: E402
from fedlearn.evaluation import own_model_scores  # noqa: E402
from fedlearn.hospitals import SCANNERS, build_consortium  # noqa: E402
from fedlearn.tuning import tune  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SEEDS = (42, 43, 44, 45, 46)
ROUNDS = 8
CFG = fl.TrainConfig(epochs=1, batch_size=16, lr=0.05, momentum=0.9)

METHODS: dict[str, tuple[Callable[..., fl.Strategy], dict[str, list[Any]]]] = {
    "FedAvg": (lambda: fl.FedAvg(CFG), {}),
    "FedBN": (lambda: FedBN(CFG), {}),
    "FineTune": (lambda steps: FineTune(CFG, steps=steps), {"steps": [5, 20]}),
    "FedPer": (lambda: FedPer(CFG, head=("head.3.",)), {}),
    "Ditto": (lambda lam: Ditto(CFG, lam=lam), {"lam": [0.01, 0.1, 1.0]}),
}


def cnn(seed: int) -> nn.Module:
    return fl.make_model("cnn", norm="batch", width=8, hidden=32, seed=seed)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 seed, 1 round; write nothing")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    cons = build_consortium(fl.data.load_medmnist("breastmnist", progress=False), alpha=1.0,
                            scanners=SCANNERS, seed=0)
    clients = cons.clients()  # test: own test split; val: own validation split
    seeds = SEEDS[:1] if args.quick else SEEDS
    rounds = 1 if args.quick else ROUNDS
    res: dict[str, Any] = {"hospitals": cons.names, "methods": {},
                           "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                           "protocol": {"rounds": ROUNDS, "config": str(CFG),
                                        "seeds": list(SEEDS), "dataset": "breastmnist",
                                        "n_val": [len(h.val) for h in cons]}}
    for name, (make, space) in METHODS.items():
        params: dict[str, Any] = {}
        if space:
            tuned = tune(make, cnn, clients, space, rounds=rounds, split="val", metric="auroc")
            params = tuned.best.params
        per_seed, per_h = [], []
        for s in seeds:
            strat, model = make(**params), cnn(s)
            fl.run(model, clients, strat, rounds, seed=s, eval_every=0, progress=False)
            auc = own_model_scores(model, clients, strat)["auroc"].to_numpy()
            per_h.append(auc)
            per_seed.append(float(np.nanmean(auc)))
        h = np.mean(per_h, axis=0)
        worst = int(np.nanargmin(h))
        res["methods"][name] = {
            "mean": statistics.fmean(per_seed),
            "sd": statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0,
            "per_seed": per_seed, "per_hospital": h.tolist(), "worst": float(h[worst]),
            "worst_hospital": cons.names[worst], "params": params}
        print(f"{name:8s} {params} {res['methods'][name]['mean']:.3f} {np.round(h, 3)} "
              f"[{time.time() - t0:.0f}s]", flush=True)
    res["seconds"] = round(time.time() - t0, 1)
    md = markdown(res)
    print(md)
    if not args.quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "personal_imaging.json").write_text(json.dumps(res, indent=2) + "\n")
        (RESULTS / "personal_imaging.md").write_text(md)
    return 0


def markdown(res: dict[str, Any]) -> str:
    names = res["hospitals"]
    lines = ["# Personalised FL on BreastMNIST hospitals with scanner skew", "",
             "Each hospital's own model's test AUROC, mean ± sd over seeds "
             f"{res['protocol']['seeds']}; FineTune's steps and Ditto's lambda chosen on the "
             f"hospitals' validation splits ({res['protocol']['n_val']} images). Generated by "
             "`benchmarks/personal_imaging.py`.", "",
             "| method | mean ± sd | worst hospital | " + " | ".join(names) + " | chosen |",
             "|---" * (4 + len(names)) + "|"]
    for m, r in res["methods"].items():
        lines.append(f"| {m} | {r['mean']:.3f} ± {r['sd']:.3f} | {r['worst']:.3f} "
                     f"({r['worst_hospital']}) | "
                     + " | ".join(f"{v:.3f}" for v in r["per_hospital"])
                     + f" | {r['params'] or '—'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
