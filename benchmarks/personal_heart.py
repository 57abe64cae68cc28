"""One model per hospital on Fed-Heart-Disease: personalised FL against FENDA-FL's .812.

Metric (FL4Health's and FLamby's per-client tables): the mean over the 4 hospitals of the
accuracy of *each hospital's own model* on *its own* test set (FLamby's split, each hospital
z-scored with its own training statistics: ``fedlearn.data.load_heart_disease``).

Anchors: FL4Health ``research/flamby/fed_heart_disease`` (5 runs, hyper-parameters chosen on
validation): FENDA .812 +- .005, PerFCL .772, FedPer .706; FLamby's global models on the mean
of client tests: FedAvg .685, FedAdagrad/FedYogi .731.

Protocol (no test set is read before the hyper-parameters are fixed):

1. Tuning: stratified 3-fold cross-validation *inside every hospital's training data*
   (``fedlearn.splits.kfold``); each configuration of a small grid is scored by the
   validation-size-weighted accuracy of the hospitals' own models (``fedlearn.tuning.tune``,
   which refuses test data), with early stopping on rounds (patience 3); the recipe is the
   best configuration and the median of its best rounds.
2. Test: the recipe retrained on the full training splits with seeds 42-46; each hospital's
   own model scored on its own test set.
3. Uncertainty: mean +- sd over the 5 seeds, and a paired bootstrap (2000 resamples of the
   test patients within each hospital, the same resample for every method and seed) of the
   difference in the 4-hospital mean against our FedAvg and against the constant .812 (the
   anchor's own +-.005 is not included).

Budget: at most 10 rounds x 25 local SGD steps, batch 8 (hospitals send 10 updates).
Models: logistic regression (FedAvg, FineTune, Ditto, APFL, Local = Ditto with lambda = 0);
an MLP 13-8-2 (FedPer, FedRep: the last layer is the head); FENDA-FL's two 13-8 extractors.

Run (needs the UCI files, e.g. ``FEDLEARN_DATA_DIR=/work/shared/data``)::

    nice python benchmarks/personal_heart.py           # ~20 min on one busy core
    python benchmarks/personal_heart.py --quick        # smoke test, writes nothing
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
from fedlearn.algorithms import APFL, Ditto, FedPer, FedRep, FendaFL, FendaNet, FineTune  # noqa: E402
from fedlearn.client import predict_proba  # noqa: E402
from fedlearn.tuning import tune  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SEEDS = (42, 43, 44, 45, 46)
ROUNDS, STEPS, BATCH = 10, 25, 8
FOLDS, PATIENCE = 3, 3
ANCHORS = {"FENDA (FL4Health)": 0.812, "PerFCL (FL4Health)": 0.772,
           "FedPer (FL4Health)": 0.706, "FedAdagrad/FedYogi (FLamby)": 0.731,
           "FedAvg (FLamby)": 0.685}
TARGET = 0.812
#: Said in every table, because the grid was changed once after a run had been scored on test.
NOTE = ("History: a first run used learning rates up to 0.1 only; validation chose the top "
        "value for every method, so the grid was widened to 0.3 (a validation-driven change, "
        "but made after that run's test scores had been printed: FedPer .813, FedRep .814, "
        "FENDA-FL .806, Ditto .798, FedAvg .718, i.e. the same picture). The method chosen on "
        "validation among the personalised ones was Ditto both times.")


def cfg(lr: float) -> fl.TrainConfig:
    return fl.TrainConfig(steps=STEPS, batch_size=BATCH, lr=lr)


def logreg(seed: int) -> nn.Module:
    return fl.make_model("logreg", in_features=13, seed=seed)


def mlp(seed: int) -> nn.Module:
    return fl.make_model("mlp", in_features=13, hidden=(8,), seed=seed)


def fenda(seed: int) -> nn.Module:
    return FendaNet(13, hidden=8, seed=seed)


# name -> (strategy factory, model factory, grid)
METHODS: dict[str, tuple[Callable[..., fl.Strategy], Callable[[int], nn.Module],
                         dict[str, list[Any]]]] = {
    "Local": (lambda lr: Ditto(cfg(lr), lam=0.0), logreg, {"lr": [0.01, 0.03, 0.1, 0.3]}),
    "FedAvg": (lambda lr: fl.FedAvg(cfg(lr)), logreg, {"lr": [0.01, 0.03, 0.1, 0.3]}),
    "FineTune": (lambda lr, steps: FineTune(cfg(lr), steps=steps), logreg,
                 {"lr": [0.03, 0.1, 0.3], "steps": [10, 50]}),
    "Ditto": (lambda lr, lam: Ditto(cfg(lr), lam=lam), logreg,
              {"lr": [0.1, 0.3], "lam": [0.01, 0.1, 1.0]}),
    "APFL": (lambda lr: APFL(cfg(lr), alpha=0.5, learn_alpha=True, alpha_lr=0.05), logreg,
             {"lr": [0.03, 0.1, 0.3]}),
    "FedPer": (lambda lr: FedPer(cfg(lr), head=("net.2.",)), mlp, {"lr": [0.03, 0.1, 0.3]}),
    "FedRep": (lambda lr: FedRep(cfg(lr), head=("net.2.",), head_steps=10), mlp,
               {"lr": [0.03, 0.1, 0.3]}),
    "FENDA-FL": (lambda lr: FendaFL(cfg(lr)), fenda, {"lr": [0.03, 0.1, 0.3]}),
}


def correct(make: Callable[[], fl.Strategy], make_model: Callable[[int], nn.Module],
            clients: list[fl.Client], rounds: int, seed: int) -> list[np.ndarray]:
    """Per hospital, whether its own model classifies each of its test patients correctly."""
    strategy = make()
    model = make_model(seed)
    fl.run(model, clients, strategy, rounds, seed=seed, eval_every=0, progress=False)
    out = []
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for c in clients:
        model.load_state_dict(strategy.personal_state(c.cid, state))
        p = predict_proba(model, c.test.tensors[0]).argmax(1)
        out.append((p == c.test.tensors[1]).numpy())
    return out


def mean_per_hospital(hits: list[np.ndarray]) -> float:
    return float(np.mean([h.mean() for h in hits]))


def bootstrap(runs: dict[str, list[list[np.ndarray]]], n_boot: int = 2000, seed: int = 0
              ) -> dict[str, dict[str, list[float]]]:
    """95 % paired-bootstrap intervals of (method - FedAvg) and (method - .812)."""
    rng = np.random.default_rng(seed)
    sizes = [len(h) for h in runs["FedAvg"][0]]
    stats: dict[str, list[float]] = {m: [] for m in runs}
    for _ in range(n_boot):
        idx = [rng.integers(0, n, n) for n in sizes]
        for m, seeds in runs.items():
            stats[m].append(float(np.mean([np.mean([h[i].mean() for h, i in zip(hits, idx,
                                                                                  strict=True)])
                                           for hits in seeds])))
    out = {}
    base = np.array(stats["FedAvg"])
    for m, s in stats.items():
        a = np.array(s)
        out[m] = {"vs_fedavg": [float(np.percentile(a - base, q)) for q in (2.5, 97.5)],
                  "vs_812": [float(np.percentile(a - TARGET, q)) for q in (2.5, 97.5)]}
    return out


def markdown(res: dict[str, Any]) -> str:
    names = res["hospitals"]
    lines = ["# One model per hospital on Fed-Heart-Disease", "",
             "Mean over the 4 hospitals of each hospital's own model's accuracy on its own test "
             f"set (FLamby split), seeds {list(SEEDS)}, hyper-parameters chosen by {FOLDS}-fold "
             "cross-validation inside each hospital's training data (never on test). 95 % "
             "paired-bootstrap intervals of the difference. Generated by "
             "`benchmarks/personal_heart.py`.", "",
             "| method | mean ± sd | worst hospital | " + " | ".join(names)
             + " | Δ vs our FedAvg [95 % CI] | Δ vs .812 [95 % CI] | recipe (val acc) |",
             "|---" * (6 + len(names)) + "|"]
    for m, r in res["methods"].items():
        b = res["bootstrap"][m]
        lines.append(
            f"| {m} | {r['mean']:.3f} ± {r['sd']:.3f} | {r['worst']:.3f} ({r['worst_hospital']}) | "
            + " | ".join(f"{v:.3f}" for v in r["per_hospital"])
            + f" | {r['mean'] - res['methods']['FedAvg']['mean']:+.3f} "
              f"[{b['vs_fedavg'][0]:+.3f}, {b['vs_fedavg'][1]:+.3f}]"
            + f" | {r['mean'] - TARGET:+.3f} [{b['vs_812'][0]:+.3f}, {b['vs_812'][1]:+.3f}]"
            + f" | {r['params']}, {r['rounds']} rounds ({r['val_score']:.3f}) |")
    lines += ["", "Anchors (published, mean of per-client test accuracies): "
              + ", ".join(f"{k} {v:.3f}" for k, v in ANCHORS.items()) + ".", "",
              res["verdict"], "", NOTE, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 methods, 1 seed; write nothing")
    ap.add_argument("--markdown", action="store_true", help="rewrite the .md from the .json")
    args = ap.parse_args(argv)
    if args.markdown:
        res = json.loads((RESULTS / "personal_heart.json").read_text())
        (RESULTS / "personal_heart.md").write_text(markdown(res))
        return 0
    torch.set_num_threads(1)
    t0 = time.time()
    clients = fl.clients_from_sites(fl.data.load_heart_disease(progress=False))
    methods = {k: METHODS[k] for k in ("FedAvg", "Ditto")} if args.quick else METHODS
    seeds = SEEDS[:1] if args.quick else SEEDS
    rounds = 2 if args.quick else ROUNDS
    res: dict[str, Any] = {"hospitals": [c.name for c in clients], "methods": {},
                           "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                           "protocol": {"rounds": ROUNDS, "steps": STEPS, "batch": BATCH,
                                        "folds": FOLDS, "patience": PATIENCE,
                                        "seeds": list(SEEDS)}, "anchors": ANCHORS}
    runs: dict[str, list[list[np.ndarray]]] = {}
    for name, (make, make_model, space) in methods.items():
        tuned = tune(make, make_model, clients, space, rounds=rounds, split="cv", k=FOLDS,
                     patience=PATIENCE)
        best = tuned.best
        r_best = max(1, best.best_round)
        runs[name] = [correct(lambda p=best.params, f=make: f(**p), make_model, clients, r_best, s)
                      for s in seeds]
        per_seed = [mean_per_hospital(h) for h in runs[name]]
        per_h = [float(np.mean([hits[i].mean() for hits in runs[name]]))
                 for i in range(len(clients))]
        worst = int(np.argmin(per_h))
        res["methods"][name] = {
            "mean": statistics.fmean(per_seed),
            "sd": statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0,
            "per_seed": per_seed, "per_hospital": per_h, "worst": per_h[worst],
            "worst_hospital": clients[worst].name, "params": best.params, "rounds": r_best,
            "val_score": best.score, "grid": tuned.frame().to_dict("records")}
        print(f"{name:9s} {best.params} r={r_best} val={best.score:.3f} "
              f"test={res['methods'][name]['mean']:.3f} {np.round(per_h, 3)} "
              f"[{time.time() - t0:.0f}s]", flush=True)
    res["bootstrap"] = bootstrap(runs)
    best_m = max((m for m in res["methods"] if m not in ("FedAvg", "Local")),
                 key=lambda m: res["methods"][m]["val_score"])  # chosen on validation
    b = res["methods"][best_m]["mean"]
    res["best"] = best_m
    res["verdict"] = (
        f"Personalised method with the best cross-validation score (chosen before its test "
        f"score is read): "
        f"**{best_m}**, {b:.3f}, "
        + ("at or above FENDA-FL's .812." if b >= TARGET else
           f"{TARGET - b:.3f} below FENDA-FL's .812 (about {(TARGET - b) / 0.0156:.1f} Swiss "
           "test patients' worth of the 4-hospital mean)."))
    res["seconds"] = round(time.time() - t0, 1)
    print(markdown(res))
    if not args.quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "personal_heart.json").write_text(json.dumps(res, indent=2) + "\n")
        (RESULTS / "personal_heart.md").write_text(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
