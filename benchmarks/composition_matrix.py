"""The composition matrix in numbers: every algorithm under every aggregator, noise off and on.

The tests (``tests/test_aggregators_matrix.py``, ``tests/test_aggregators_noise.py``) assert
the bounds; this script prints what was measured, for the README and for reviewers:

* noise off: per cell, the largest weight difference from the reference run over 3 rounds,
  next to the codec's quantisation bound (summed over the rounds) from its formula;
* noise on: the measured std of (aggregated sum - clear sum) over 10^5 coordinates, next to
  the std the accountant assumes, for central DP and for distributed DP with hospitals
  dropping out.

Run: ``python benchmarks/composition_matrix.py`` (about a minute); writes
``benchmarks/results/composition_matrix.md``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import fedlearn as fl  # noqa: E402
from fedlearn.compression import Compressed, TopK  # noqa: E402
from fedlearn.privacy import DPFedAvg  # noqa: E402
from fedlearn.secagg import DistributedGaussian, SecureAggregation  # noqa: E402
from tests.test_aggregators_matrix import ALGORITHMS, CLIP, max_diff, run  # noqa: E402
from tests.test_aggregators_noise import (  # noqa: E402
    N,
    central_dp_noise,
    clear_sum,
    hospitals,
    zero_updates,
)

COLUMNS = {
    "Secure": (lambda a: SecureAggregation(ALGORITHMS[a](True), clip=CLIP, threshold=2),
               lambda a: ALGORITHMS[a](True)),
    "CentralDP (z=0)": (lambda a: DPFedAvg(ALGORITHMS[a](True), noise_multiplier=0.0,
                                           clip_norm=1e12),
                        lambda a: ALGORITHMS[a](True)),
    "DistributedDP > Secure (z=0)": (
        lambda a: SecureAggregation(ALGORITHMS[a](False), clip=CLIP, threshold=2,
                                    transform=DistributedGaussian(1e12, 0.0)),
        lambda a: ALGORITHMS[a](False)),
    "TopK+EF > Secure": (
        lambda a: Compressed(SecureAggregation(ALGORITHMS[a](True), clip=CLIP, threshold=2),
                             TopK(fraction=0.3)),
        lambda a: Compressed(ALGORITHMS[a](True), TopK(fraction=0.3))),
}


def cell(alg: str, column: str) -> str:
    make, ref = COLUMNS[column]
    hw, sw, _, _ = run(alg, make(alg))
    _, sr, _, _ = run(alg, ref(alg))
    diff = max(max_diff(a, b) for a, b in zip(sw, sr, strict=True))
    try:
        bound = float(hw.aggregation_frame("secure")["bound"].sum())
    except KeyError:
        bound = 0.0
    # float32 resolution of the weights: a mean that differs at all moves a weight by >= 1 ulp
    ulp = max(float(np.spacing(np.float32(v.abs().max()))) for v in sr[-1].values()
              if v.is_floating_point())
    return f"{diff:.1e} / {bound:.1e} / {ulp:.0e}"


def noise_rows() -> list[str]:
    rows = []
    k = 6
    for weighted in (False, True):
        _, noise, assumed = central_dp_noise(weighted)
        rows.append(f"| CentralDP, 6 of 6, {'weighted' if weighted else 'unweighted'} | "
                    f"{float(noise.std()):.4f} | {assumed:.4f} |")
    for reported in (3, 4, 5, 6):
        ddp = DistributedGaussian(clip_norm=1.0, noise_multiplier=1.0, seed=2)
        strat = SecureAggregation(fl.FedAvg(weighted=False), transform=ddp, threshold=2 / 3,
                                  clip=8.0, bits=40)
        strat.start({"w": torch.zeros(N)}, hospitals(k))
        ups = zero_updates(k)[:reported]
        out = strat.aggregate_round(1, {"w": torch.zeros(N)}, ups, instructed=k)
        if out.aborted:
            rows.append(f"| DistributedDP > Secure, {reported} of 6 report (t = 4) | "
                        f"aborted, nothing released, epsilon {ddp.epsilon():g} | 1.0000 |")
            continue
        noise = out.state["w"].double() * reported - clear_sum(ups, [1.0] * reported)
        rows.append(f"| DistributedDP > Secure, {reported} of 6 report (t = 4) | "
                    f"{float(noise.std()):.4f} (expected {math.sqrt(reported / 4):.4f}) | "
                    "1.0000 |")
    return rows


def main() -> None:
    cols = list(COLUMNS)
    lines = ["# Composition matrix (measured by benchmarks/composition_matrix.py)", "",
             "Noise off: largest weight difference from the reference run over 3 rounds / the",
             "secure codec's quantisation bound on the mean, summed over the rounds (0 where no",
             "codec is involved; CentralDP is required to be bit-identical) / the float32",
             "spacing (ulp) of the largest weight: once two means differ at all, the stored",
             "float32 weights differ by at least about one ulp, so the differences are the bound",
             "plus a few ulps. The tests allow the bound plus 1e-5 of the round's update.", "",
             "| algorithm | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for alg in ALGORITHMS:
        lines.append(f"| {alg} | " + " | ".join(cell(alg, c) for c in cols) + " |")
    lines += ["", "Noise on (10^5 coordinates, z C = 1.3 x 0.7 central, 1.0 distributed):", "",
              "| mechanism | measured std of the noise on the sum | std the accountant assumes |",
              "|---|---|---|", *noise_rows(), ""]
    out = ROOT / "benchmarks" / "results" / "composition_matrix.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
