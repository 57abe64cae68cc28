"""LiRA against the DP-SGD models of notebook 05 (its shadow models do not fit the notebook).

Notebook 05 attacks an overfitted MLP with LiRA (Carlini et al. 2022) and its DP-SGD versions
only with the loss threshold, which is the weakest attack. Here every model is attacked with
LiRA as well, the attacker's 16 shadow models trained with *the target's own recipe* (DP-SGD
at the same epsilon: the standard threat model, the attacker knows the training algorithm).

Set-up (as ``benchmarks/privacy_utility.py``'s ``mia`` experiment): Cleveland's 303 patients, a
random half are members (split seed 100 + seed); MLP(128); DP-SGD through Opacus, 40 epochs,
batch 16, Adam lr 0.01, C = 1, delta = 1e-5, at each epsilon; ``inf`` is the same recipe
without clipping or noise; ``overfit`` is full-batch Adam for 300 steps (the notebook's target).

For each model: LiRA's AUC and its TPR at FPR <= 1 % (the number that matters for privacy,
Carlini et al.), with a 95 % Wilson interval, beside the largest TPR any attack may reach at
that FPR against an (epsilon, delta)-DP model, e^eps FPR + delta; and the loss attack's AUC.

Run (needs the real data, e.g. ``FEDLEARN_DATA_DIR=/work/shared/data``)::

    python benchmarks/lira_dp.py --quick                                  # smoke test
    python benchmarks/lira_dp.py --out benchmarks/results/lira_dp.json    # about 10 minutes
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
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from privacy_utility import (  # noqa: E402  (benchmarks/ is a folder of scripts)
    DELTA,
    INF,
    cleveland_population,
    split,
    train_dp,
    train_overfit,
)

import fedlearn as fl  # noqa: E402
from fedlearn import privacy as dp  # noqa: E402
from fedlearn.intervals import wilson_interval  # noqa: E402

SETTINGS: list[tuple[str, float]] = [("overfit", INF), ("DP-SGD recipe", INF),
                                     ("DP-SGD recipe", 64.0), ("DP-SGD recipe", 8.0),
                                     ("DP-SGD recipe", 1.0)]
SEEDS = [0, 1, 2]
N_SHADOW = 16
MAX_FPR = 0.01


def attack(setting: str, eps: float, seed: int, n_shadow: int) -> dict[str, Any]:
    pop = cleveland_population()
    mask = np.random.default_rng(100 + seed).random(len(pop)) < 0.5
    members, non = split(pop, mask)
    if setting == "overfit":
        def recipe(data, s):  # noqa: ANN001, ANN202
            return train_overfit(data, s)
    else:
        def recipe(data, s):  # noqa: ANN001, ANN202
            return train_dp(data, eps, s)
    t0 = time.time()
    target = recipe(members, seed)
    lira = dp.lira_attack(target, pop, mask, recipe, n_shadow=n_shadow, seed=seed)
    tpr, fpr, k, j = lira.tpr_at_fpr(MAX_FPR)
    lo, hi = wilson_interval(k, len(lira.member_scores))
    ceiling = min(1.0, math.exp(eps) * fpr + DELTA) if math.isfinite(eps) else 1.0
    return {"setting": setting, "epsilon": eps, "seed": seed, "n_shadow": n_shadow,
            "lira_auc": lira.auc, "lira_tpr_at_1pct_fpr": tpr, "fpr": fpr,
            "members_found": k, "members": int(len(lira.member_scores)),
            "outsiders_accused": j, "outsiders": int(len(lira.nonmember_scores)),
            "tpr_wilson95": [lo, hi], "dp_ceiling_at_fpr": ceiling,
            "loss_auc": dp.loss_threshold_attack(target, members, non).auc,
            "test_accuracy": fl.evaluate(target, non)["accuracy"],
            "seconds": round(time.time() - t0, 1)}


def summarise(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | epsilon | seeds | LiRA AUC | LiRA TPR at FPR <= 1 % | DP ceiling there "
             "| loss-attack AUC | test accuracy |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for setting, eps in SETTINGS:
        group = [r for r in rows if r["setting"] == setting and r["epsilon"] == eps]
        if not group:
            continue

        def cell(key: str, group: list[dict[str, Any]] = group) -> str:
            vals = [float(r[key]) for r in group]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            return f"{statistics.mean(vals):.3f} +- {sd:.3f}"

        label = "inf (no DP)" if math.isinf(eps) else f"{eps:g}"
        lines.append(f"| {setting} | {label} | {len(group)} | {cell('lira_auc')} | "
                     f"{cell('lira_tpr_at_1pct_fpr')} | {cell('dp_ceiling_at_fpr')} | "
                     f"{cell('loss_auc')} | {cell('test_accuracy')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 seed, 2 settings, 4 shadows")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = SETTINGS[:1] + SETTINGS[-1:] if args.quick else SETTINGS
    seeds, n_shadow = (SEEDS[:1], 4) if args.quick else (SEEDS, N_SHADOW)
    started = time.time()
    rows = []
    for setting, eps in settings:
        for seed in seeds:
            rows.append(attack(setting, eps, seed, n_shadow))
            r = rows[-1]
            print(f"{setting} eps={eps:g} seed {seed}: LiRA AUC {r['lira_auc']:.3f}, TPR@1%FPR "
                  f"{r['lira_tpr_at_1pct_fpr']:.3f} ({r['seconds']:.0f} s)", flush=True)
    table = summarise(rows)
    print(table)
    if args.out is not None and not args.quick:
        meta = {"date": dt.datetime.now().isoformat(timespec="seconds"), "delta": DELTA,
                "python": platform.python_version(), "torch": torch.__version__,
                "n_shadow": N_SHADOW, "max_fpr": MAX_FPR, "seeds": SEEDS,
                "seconds": round(time.time() - started, 1)}
        clean = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                  for k, v in r.items()} for r in rows]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"meta": meta, "rows": clean}, indent=1))
        args.out.with_suffix(".md").write_text(
            "# LiRA against notebook 05's models (benchmarks/lira_dp.py)\n\n"
            f"Cleveland, 16 shadow models per target with the target's recipe, delta = {DELTA:g}; "
            "mean +- std over seeds 0-2. The DP ceiling is e^eps FPR + delta at the FPR "
            "reached.\n\n" + table)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
