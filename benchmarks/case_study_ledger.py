"""The release ledger of the case study's image-level DP run (notebook 07 prints it).

Re-runs exactly one run of ``benchmarks/case_study.py``'s private phase: FedAvg with DP-SGD
at every PneumoniaMNIST hospital (``fedlearn.study.run_image_dp``, ``DP_RECIPES``, epsilon 8
per image over the recipe's 20 rounds, delta 1e-5, threshold from Laplace-noised validation
histograms at epsilon 1), seed 0, label-skew hospitals. It checks that the re-run reproduces
the stored run's pooled test AUROC, so the ledger is the ledger *of that run*, and writes

* ``results/case_study_ledger.json``: the folded ledger, the per-hospital summary and the
  summary text, plus what the run measured;
* ``results/case_study_ledger.md``: the same as tables, for the closing note and the README.

About 70 s on the 2-core reference machine.

    FEDLEARN_DATA_DIR=... python benchmarks/case_study_ledger.py
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import fedlearn as fl  # noqa: E402
from fedlearn import study  # noqa: E402
from fedlearn.hospitals import CASE_STUDY_TRAIN_COUNTS, build_consortium  # noqa: E402
from fedlearn.report import POOLED, markdown_table  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FLAG, SEED, EPSILON, DELTA, THRESHOLD_EPSILON = "pneumoniamnist", 0, 8.0, 1e-5, 1.0


def main() -> None:
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    data = fl.data.load_medmnist(FLAG, progress=False)
    cons = build_consortium(data, alpha=1.0, seed=0,
                            train_class_counts=CASE_STUDY_TRAIN_COUNTS[FLAG])
    res = study.run_image_dp(cons, study.DP_RECIPES[FLAG], SEED, EPSILON, delta=DELTA,
                             threshold_epsilon=THRESHOLD_EPSILON)
    auroc = float(res.table().loc[POOLED, "auroc"])
    stored = json.loads((RESULTS / "case_study.json").read_text())
    ref = next(r for r in stored["runs"] if r["phase"] == "private" and r["dataset"] == FLAG
               and r["seed"] == SEED and "DP-SGD (eps=" in r["method"])
    ref_auroc = float(ref["test"][POOLED]["auroc"])
    ledger = res.ledger
    assert ledger is not None
    compact = ledger.compact()
    summary = ledger.summary().reset_index()
    out = {
        "run": {"dataset": FLAG, "seed": SEED, "epsilon_training": EPSILON, "delta": DELTA,
                "threshold_epsilon": THRESHOLD_EPSILON, "rounds": res.info["rounds_run"],
                "pooled_test_auroc": round(auroc, 4),
                "stored_run_pooled_test_auroc": round(ref_auroc, 4),
                "seconds": round(time.perf_counter() - t0, 1),
                "releases": len(ledger), "unaccounted": len(ledger.unaccounted())},
        "compact": json.loads(compact.to_json(orient="records")),
        "summary": json.loads(summary.to_json(orient="records")),
        "text": ledger.text(),
    }
    (RESULTS / "case_study_ledger.json").write_text(json.dumps(out, indent=1) + "\n")
    md = ["# Release ledger of the case study's image-level DP run", "",
          f"PneumoniaMNIST, six hospitals, seed {SEED}, FedAvg + DP-SGD at epsilon "
          f"{EPSILON:g} per image over {res.info['rounds_run']} rounds (delta {DELTA:g}), "
          f"threshold from noised validation histograms at epsilon {THRESHOLD_EPSILON:g}. "
          f"Pooled test AUROC {auroc:.3f} (stored run: {ref_auroc:.3f}).", "",
          "## Per hospital", "",
          markdown_table(summary.assign(delta=summary["delta"].map("{:.0e}".format))
                         .set_index("hospital")), "",
          "## Every kind of release", "",
          markdown_table(compact.drop(columns=["note"]).set_index("quantity")), "",
          "## Summary", "", "```", ledger.text(), "```", ""]
    (RESULTS / "case_study_ledger.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
