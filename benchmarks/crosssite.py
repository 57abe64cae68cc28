"""Leave-one-hospital-out on the PneumoniaMNIST hospitals of ``robustness.py`` (notebook 11).

For each of the 8 hospitals and 3 seeds: FedAvg of the other 7 (15 rounds, the same model and
configuration as ``robustness.py``), scored on the held-out hospital's test set, next to the
federation of all 8 (:func:`fedlearn.crosssite.leave_one_out`). AUROC on test sets; no choice
is made on them. Run: ``nice python benchmarks/crosssite.py`` (a few minutes); writes
``benchmarks/results/crosssite_loo.csv``.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from robustness import ROUNDS, config, consortium, model  # noqa: E402

import fedlearn as fl  # noqa: E402
from fedlearn.crosssite import leave_one_out  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    torch.set_num_threads(1)
    cons = consortium()
    cfg = config(cons)
    frames = []
    for seed in range(3):
        df = leave_one_out(model(seed), cons.clients("test"), lambda: fl.FedAvg(cfg),
                           rounds=ROUNDS, seed=seed)
        df["seed"] = seed
        frames.append(df.reset_index())
        print(df.round(3).to_string(), flush=True)
    RESULTS.mkdir(exist_ok=True)
    pd.concat(frames).to_csv(RESULTS / "crosssite_loo.csv", index=False)


if __name__ == "__main__":
    main()
