"""The case study's full sweep behind notebook 07 (too slow for the notebook: about 2 hours).

Six simulated hospitals (``fedlearn.hospitals.build_consortium``: quantity skew, Dirichlet label
skew alpha = 1, partition seed 0, PneumoniaMNIST's training images first cut to fixed per-class
counts, ``fedlearn.hospitals.CASE_STUDY_TRAIN_COUNTS``, so the hospitals are the same on the
official file and on the course's offline copy; each hospital's val/test patients dealt out
like its training patients, the test sets together = the official MedMNIST test split) on
PneumoniaMNIST and BreastMNIST. Every method uses the recipe of ``fedlearn.study.RECIPES``
(SmallCNN with BatchNorm, Adam, class-weighted loss, seeded augmentation):

1. ``tune`` (seed 0, *validation* AUROC only): FedProx mu in {0.01, 0.1}, FedAdam server
   learning rate in {1e-3, 3e-3, 1e-2};
2. ``main``: local / pooled / FedAvg / FedProx / FedBN / FedAdam x seeds, label-skew hospitals
   (FedAdam = ``fedlearn.study.FedAdamBN``: Adam on the weights, BatchNorm statistics averaged);
3. ``private``: the federated method with the best mean pooled *validation* AUROC, wrapped in
   secure aggregation, and in client-level DP (DP-FedAvg, clip norm 1) at ``--epsilon``. DP
   noise on BatchNorm running variances makes them negative (NaN outputs), so the DP runs use
   the GroupNorm variant of the model, and that variant also runs without DP for reference;
   then image-level DP: FedAvg with DP-SGD at every hospital at ``--epsilon`` per image
   (``fedlearn.study.run_image_dp``), its threshold chosen from Laplace-noised validation
   histograms at epsilon 1 (``fedlearn.privacy.dp_threshold``); and the same FedAvg with the
   DP-SGD runs' recipe but no clipping or noise, to separate DP's cost from the recipe's;
4. ``feature``: the base methods again with feature skew (each hospital's scanner, a fixed
   intensity transform, ``fedlearn.hospitals.SCANNERS``);
5. ``longer``: on BreastMNIST, where federation fell short of pooling, pooled / FedAvg / FedBN
   with twice the rounds (120), to see whether more optimisation closes the gap.

Every run stores its per-hospital and pooled metrics on the validation and test sets; the
summary compares the pooled test metrics with MedMNIST v2's centralised ResNet-18 (28x28).
Results are written after every run and a rerun skips what is stored (``--out`` required for
that), so an interrupted sweep resumes.

Run (needs the data, e.g. ``FEDLEARN_DATA_DIR=/work/shared/data``)::

    python benchmarks/case_study.py --quick                    # smoke test, writes nothing
    python benchmarks/case_study.py --out benchmarks/results/case_study.json
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import sys
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

import fedlearn as fl  # noqa: E402
from fedlearn import study  # noqa: E402
from fedlearn.calibration import reliability  # noqa: E402
from fedlearn.hospitals import (  # noqa: E402
    CASE_STUDY_TRAIN_COUNTS,
    CLASS_NAMES,
    SCANNERS,
    Consortium,
    build_consortium,
)
from fedlearn.privacy import DPFedAvg  # noqa: E402
from fedlearn.report import (  # noqa: E402
    POOLED,
    classification_report_frame,
    markdown_table,
)
from fedlearn.secagg import SecureAggregation  # noqa: E402

#: MedMNIST v2 (Yang et al., Scientific Data 2023), Table 3: ResNet-18 (28), test split.
MEDMNIST_V2 = {"pneumoniamnist": {"auroc": 0.944, "accuracy": 0.854},
               "breastmnist": {"auroc": 0.901, "accuracy": 0.863}}
ALPHA = 1.0
PARTITION_SEED = 0
DELTA = 1e-5
THRESHOLD_EPSILON = 1.0  # the DP-SGD runs' operating point, from noisy validation histograms
TUNE = {"FedProx": [{"mu": 0.01}, {"mu": 0.1}],
        "FedAdam": [{"server_lr": 1e-3}, {"server_lr": 3e-3}, {"server_lr": 1e-2}]}
FEDERATED = ("FedAvg", "FedProx", "FedBN", "FedAdam")
#: ``longer``: twice the rounds (and so twice every method's epochs) where federation fell
#: short of pooling, to ask whether the gap is optimisation (more rounds close it) or data.
LONGER = {"breastmnist": 120}
LONGER_METHODS = ("pooled", "FedAvg", "FedBN")
REPORT_METRICS = ("auroc", "accuracy", "sensitivity", "specificity", "ece")


def consortium(flag: str, variant: str, root: str | None) -> Consortium:
    data = fl.data.load_medmnist(flag, root=root, progress=False)
    scanners = SCANNERS if variant == "feature" else None
    return build_consortium(data, alpha=ALPHA, seed=PARTITION_SEED, scanners=scanners,
                            train_class_counts=CASE_STUDY_TRAIN_COUNTS[flag])


def run_record(res: study.StudyRun, phase: str, flag: str, variant: str,
               options: dict[str, float], keep_details: bool) -> dict[str, Any]:
    """Everything stored about one run (metrics tables as nested dicts)."""
    rec: dict[str, Any] = {"phase": phase, "dataset": flag, "variant": variant,
                           "method": res.method, "seed": res.seed, "options": options,
                           "seconds": round(res.seconds, 1),
                           "val": res.table("val").round(4).to_dict(orient="index"),
                           "test": res.table("test").round(4).to_dict(orient="index")}
    info = {k: v for k, v in res.info.items() if k not in ("states", "aggregation")}
    strategy = res.strategy
    measured = res.info.get("aggregation", [])
    if isinstance(strategy, DPFedAvg):
        # the un-noised mean update norm is no longer measured: it is not a DP release
        info.update(epsilon=strategy.epsilon(), delta=strategy.delta,
                    noise_multiplier=strategy.noise_multiplier,
                    final_clip_norm=strategy.clip_norm,
                    noise_std_on_mean=strategy.noise_multiplier * strategy.clip_norm
                    / strategy.expected_clients)
    if isinstance(strategy, SecureAggregation):
        log = [m["secure"] for m in measured if "secure" in m]
        info.update(aborted_rounds=sum("aborted" in r for r in log),
                    max_clipped_fraction=max(float(r.get("clipped_fraction", 0)) for r in log),
                    bytes_per_client_per_round=float(np.mean([r["bytes_per_client"] for r in log
                                                              if "bytes_per_client" in r])))
    rec["info"] = info
    if keep_details:  # reliability diagram and classification report of the pooled test set
        y = np.concatenate([yp[0] for yp in res.test.values()])
        p = np.concatenate([yp[1] for yp in res.test.values()])
        rec["reliability"] = reliability(y, p, n_bins=10).to_dict()
        names = CLASS_NAMES[flag]
        rec["classification_report"] = classification_report_frame(
            y, p, names).round(4).to_dict(orient="index")
    return rec


class Store:
    """The results file: loaded at start, rewritten after every run."""

    def __init__(self, path: Path | None, meta: dict[str, Any]) -> None:
        self.path = path
        self.data: dict[str, Any] = {"meta": meta, "runs": []}
        if path is not None and path.exists():
            old = json.loads(path.read_text())
            self.data["runs"] = old.get("runs", [])
            self.data["choices"] = old.get("choices", {})  # a partial rerun keeps the others'
            self.data["meta"]["started"] = old.get("meta", {}).get("started",
                                                                   meta.get("started"))

    def key(self, phase: str, flag: str, variant: str, method: str, seed: int,
            options: dict[str, float]) -> str:
        return json.dumps([phase, flag, variant, method, seed, options], sort_keys=True)

    def has(self, key: str) -> bool:
        return any(r.get("key") == key for r in self.data["runs"])

    def add(self, key: str, record: dict[str, Any]) -> None:
        self.data["runs"].append({"key": key, **record})
        self.save()

    def save(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, indent=1, default=float))
            tmp.replace(self.path)


def runs_frame(runs: list[dict[str, Any]], split: str = "test") -> pd.DataFrame:
    """One row per run and test set (hospital or pooled)."""
    rows = []
    for r in runs:
        for ts, m in r[split].items():
            rows.append({"phase": r["phase"], "dataset": r["dataset"], "variant": r["variant"],
                         "method": r["method"], "seed": r["seed"],
                         "options": json.dumps(r["options"], sort_keys=True), "test_set": ts,
                         **m})
    return pd.DataFrame(rows)


def best_options(runs: list[dict[str, Any]], flag: str) -> dict[str, dict[str, float]]:
    """Per tuned method, the options with the highest pooled validation AUROC (seed 0)."""
    out: dict[str, dict[str, float]] = {}
    for method in TUNE:
        cands = [r for r in runs if r["phase"] == "tune" and r["dataset"] == flag
                 and r["method"] == method]
        if cands:
            best = max(cands, key=lambda r: r["val"][POOLED]["auroc"])
            out[method] = best["options"]
    return out


def best_federated(runs: list[dict[str, Any]], flag: str) -> str:
    """The federated method with the best mean pooled validation AUROC over the seeds."""
    df = runs_frame([r for r in runs if r["phase"] == "main" and r["dataset"] == flag
                     and r["variant"] == "label" and r["method"] in FEDERATED], "val")
    if df.empty:
        raise SystemExit(f"no 'main' runs of {flag} stored yet: run the main phase first")
    df = df[df["test_set"] == POOLED]
    return str(df.groupby("method")["auroc"].mean().idxmax())


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and std over seeds of the pooled test metrics, and the worst hospitals."""
    df = runs_frame([r for r in runs if r["phase"] != "tune"])
    if df.empty:
        return {}
    out: dict[str, Any] = {}
    for (flag, variant, method), g in df.groupby(["dataset", "variant", "method"], sort=False):
        pooled = g[g["test_set"] == POOLED]
        hosp = g[g["test_set"] != POOLED]
        scored = hosp.dropna(subset=["auroc"])  # a diverged run has NaN metrics
        worst_per_seed = scored.loc[scored.groupby("seed")["auroc"].idxmin()]
        row: dict[str, Any] = {"seeds": sorted(int(s) for s in pooled["seed"])}
        for m in REPORT_METRICS:
            row[m] = float(pooled[m].mean())
            row[f"{m}_std"] = float(pooled[m].std(ddof=0))
        row["worst_hospital_auroc"] = float(worst_per_seed["auroc"].mean())
        row["worst_hospital_auroc_std"] = float(worst_per_seed["auroc"].std(ddof=0))
        row["worst_hospital"] = (Counter(worst_per_seed["test_set"]).most_common(1)[0][0]
                                 if len(worst_per_seed) else None)
        row["per_hospital_auroc"] = hosp.groupby("test_set")["auroc"].mean().round(4).to_dict()
        ref = MEDMNIST_V2[flag]
        row["vs_medmnist"] = {m: round(row[m] - ref[m], 4) for m in ref}
        out.setdefault(flag, {}).setdefault(variant, {})[method] = row
    return out


def write_markdown(path: Path, data: dict[str, Any]) -> None:
    """A Markdown summary beside the JSON."""
    summary = data.get("summary", {})
    lines = ["# Case study: federated pneumonia and breast-cancer classification", "",
             f"Generated by `benchmarks/case_study.py` on {data['meta'].get('finished', '?')} "
             f"({len(data['runs'])} runs). Pooled = the official MedMNIST test split (all six "
             "hospitals' test sets together); mean +- std over seeds, threshold 0.5 "
             "(DP-SGD rows: the threshold the hospitals chose privately on validation). "
             "`worst AUROC` = the lowest per-hospital test AUROC, averaged over seeds.", ""]
    for flag, variants in summary.items():
        ref = MEDMNIST_V2[flag]
        lines += [f"## {flag}", "",
                  f"MedMNIST v2 ResNet-18 (28), centralised: AUROC {ref['auroc']:.3f}, "
                  f"accuracy {ref['accuracy']:.3f}.", ""]
        for variant, methods in variants.items():
            rows = {}
            for method, r in methods.items():
                rows[method] = {**{m: f"{r[m]:.3f} +- {r[m + '_std']:.3f}"
                                   for m in REPORT_METRICS},
                                "worst AUROC": f"{r['worst_hospital_auroc']:.3f}",
                                "worst hospital": r["worst_hospital"],
                                "AUROC vs MedMNIST": f"{r['vs_medmnist']['auroc']:+.3f}",
                                "acc vs MedMNIST": f"{r['vs_medmnist']['accuracy']:+.3f}"}
            skew = "label + quantity skew" if variant == "label" else "label + quantity + " \
                "feature skew (scanners)"
            lines += [f"### {skew}", "",
                      markdown_table(pd.DataFrame(rows).T.rename_axis("method")), ""]
            per = pd.DataFrame({m: r["per_hospital_auroc"] for m, r in methods.items()})
            per = per.rename_axis("hospital")
            lines += ["Per-hospital test AUROC (mean over seeds):", "", markdown_table(per), ""]
        for key in ("best_options", "best_federated"):
            if key in data.get("choices", {}).get(flag, {}):
                lines.append(f"* {key.replace('_', ' ')}: {data['choices'][flag][key]}")
        lines.append("")
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["pneumoniamnist", "breastmnist"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epsilon", type=float, default=8.0)
    ap.add_argument("--phases", nargs="+",
                    default=["tune", "main", "private", "feature", "longer"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="2 rounds, 1 seed, nothing written")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.seeds, args.out = args.seeds[:1], None
    meta = {"started": dt.datetime.now().isoformat(timespec="seconds"),
            "python": sys.version.split()[0], "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "alpha": ALPHA, "partition_seed": PARTITION_SEED, "epsilon": args.epsilon,
            "delta": DELTA, "seeds": args.seeds, "medmnist_v2": MEDMNIST_V2,
            "recipes": {f: repr(r) for f, r in study.RECIPES.items()}}
    store = Store(args.out, meta)
    store.data.setdefault("choices", {})

    def do(phase: str, flag: str, variant: str, method: str, seed: int,
           options: dict[str, float], make: Any) -> None:
        key = store.key(phase, flag, variant, method, seed, options)
        if store.has(key):
            return
        res = make()
        rec = run_record(res, phase, flag, variant, options, keep_details=seed == args.seeds[0])
        store.add(key, rec)
        pooled = rec["test"][POOLED]
        print(f"[{dt.datetime.now():%H:%M:%S}] {phase:8s} {flag:15s} {variant:8s} "
              f"{res.method:18s} seed {seed} {options or ''}: val AUROC "
              f"{rec['val'][POOLED]['auroc']:.3f} | test AUROC {pooled['auroc']:.3f} "
              f"acc {pooled['accuracy']:.3f} ({res.seconds:.0f} s)", flush=True)

    cache: dict[tuple[str, str], Consortium] = {}

    def hospitals(flag: str, variant: str) -> Consortium:
        if (flag, variant) not in cache:
            cache[flag, variant] = consortium(flag, variant, args.data_root)
        return cache[flag, variant]

    def recipe_for(flag: str, dp: bool = False) -> study.Recipe:
        r = (study.DP_RECIPES if dp else study.RECIPES)[flag]
        return r.scaled(2) if args.quick else r

    def options_for(flag: str) -> dict[str, dict[str, float]]:
        opts = best_options(store.data["runs"], flag)
        store.data["choices"].setdefault(flag, {})["best_options"] = opts
        return opts

    def tune(flag: str) -> None:
        for method, grid in TUNE.items():
            for opts in grid:
                do("tune", flag, "label", method, args.seeds[0], opts,
                   lambda m=method, o=opts: study.run_method(m, hospitals(flag, "label"),
                                                             recipe_for(flag), args.seeds[0], **o))

    def base(flag: str, phase: str, variant: str) -> None:
        opts = options_for(flag)
        for seed in args.seeds:
            for method in study.BASE_METHODS:
                o = opts.get(method, {})
                do(phase, flag, variant, method, seed, o,
                   lambda m=method, s=seed, o=o: study.run_method(
                       m, hospitals(flag, variant), recipe_for(flag), s, **o))

    def private(flag: str) -> None:
        best = best_federated(store.data["runs"], flag)
        store.data["choices"].setdefault(flag, {})["best_federated"] = best
        o = options_for(flag).get(best, {})
        label, recipe = hospitals(flag, "label"), recipe_for(flag)
        cfg = dataclasses.replace(recipe.config, class_weights=label.class_weights())
        bufs = study.buffer_keys(recipe.build_model(0))
        # DP noise of std ~ z C / K on a BatchNorm running variance drives it negative (NaN
        # outputs), so the DP runs use the GroupNorm variant of the model, which has no
        # statistics; the same model without DP separates the architecture's effect from DP's.
        gn = dataclasses.replace(recipe, model_kwargs={**recipe.model_kwargs, "norm": "group"})
        for seed in args.seeds:
            do("private", flag, "label", f"{best} + SecAgg", seed, o,
               lambda s=seed: study.run_federated(
                   label, recipe, study.with_secure_aggregation(
                       study.make_strategy(best, cfg, bufs, **o), seed=s), s,
                   name=f"{best} + SecAgg"))
            do("private", flag, "label", f"{best} (GroupNorm)", seed, o,
               lambda s=seed: study.run_federated(
                   label, gn, study.make_strategy(best, cfg, **o), s,
                   name=f"{best} (GroupNorm)"))
            do("private", flag, "label", f"{best} (GroupNorm) + DP (eps={args.epsilon:g})",
               seed, o,
               lambda s=seed: study.run_federated(
                   label, gn, DPFedAvg.for_budget(
                       study.make_strategy(best, cfg, **o), epsilon=args.epsilon,
                       delta=DELTA, rounds=gn.rounds, seed=s), s,
                   name=f"{best} (GroupNorm) + DP (eps={args.epsilon:g})"))
            # the DP-SGD runs' recipe (batch, lr, no augmentation, GroupNorm) WITHOUT clipping
            # or noise: separates what DP costs from what the recipe change costs
            dp_recipe = recipe_for(flag, dp=True)
            dp_cfg = dataclasses.replace(dp_recipe.config, class_weights=label.class_weights())
            do("private", flag, "label", "FedAvg (GroupNorm), DP-SGD recipe without DP", seed, {},
               lambda s=seed, r=dp_recipe, c=dp_cfg: study.run_federated(
                   label, r, study.make_strategy("FedAvg", c), s,
                   name="FedAvg (GroupNorm), DP-SGD recipe without DP"))
            # image-level DP: DP-SGD at every hospital (FedAvg: DPClient refuses FedProx's
            # local term, which would act outside the clipped, noised gradient)
            dp_name = f"FedAvg (GroupNorm) + DP-SGD (eps={args.epsilon:g} per image)"
            do("private", flag, "label", dp_name, seed, {},
               lambda s=seed, n=dp_name: study.run_image_dp(
                   label, recipe_for(flag, dp=True), s, args.epsilon, delta=DELTA,
                   threshold_epsilon=THRESHOLD_EPSILON, name=n))

    def longer(flag: str) -> None:
        if flag not in LONGER:
            return
        opts = options_for(flag)
        rounds = 2 if args.quick else LONGER[flag]
        recipe = study.RECIPES[flag].scaled(rounds)
        for seed in args.seeds:
            for method in LONGER_METHODS:
                o, name = opts.get(method, {}), f"{method} ({rounds} rounds)"
                do("longer", flag, "label", name, seed, o,
                   lambda m=method, s=seed, o=o, n=name: dataclasses.replace(
                       study.run_method(m, hospitals(flag, "label"), recipe, s, **o), method=n))

    # phase by phase over both data sets, so the headline results exist first
    for phase in ("tune", "main", "private", "feature", "longer"):
        if phase not in args.phases:
            continue
        for flag in args.datasets:
            if phase == "tune":
                tune(flag)
            elif phase == "main":
                base(flag, "main", "label")
            elif phase == "private":
                private(flag)
            elif phase == "feature":
                base(flag, "feature", "feature")
            else:
                longer(flag)
        store.save()
    store.data["summary"] = summarize(store.data["runs"])
    store.data["meta"]["finished"] = dt.datetime.now().isoformat(timespec="seconds")
    store.save()
    if args.out is not None:
        write_markdown(args.out.with_suffix(".md"), store.data)
    for flag, variants in store.data["summary"].items():
        for variant, methods in variants.items():
            print(f"\n{flag} / {variant}")
            print(pd.DataFrame(methods).T[["auroc", "accuracy", "sensitivity", "specificity",
                                           "ece", "worst_hospital_auroc",
                                           "worst_hospital"]].to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
