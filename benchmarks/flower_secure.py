"""Time cost of TLS + SuperNode authentication against ``--insecure`` (issue 18).

The same experiment (the two first UCI heart hospitals, logistic regression, FedAvg, 1 round,
no federated evaluation) through ``run_flower`` twice per repetition, insecure then secure,
alternating, on loopback. Measured: wall seconds from starting the SuperLink to every process
stopped (the secure run also creates a CA, a server certificate and two keys and registers
the keys). Both runs must give the same final weights. Run: ``nice python
benchmarks/flower_secure.py`` (a few minutes); writes ``benchmarks/results/flower_secure.json``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

import fedlearn as fl  # noqa: E402
from fedlearn.flower import run_flower  # noqa: E402
from fedlearn.flower.__main__ import make_clients  # noqa: E402
from fedlearn.flower.config import ModelSpec  # noqa: E402
from fedlearn.flower.runner import max_abs_diff  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def main(reps: int = 2) -> None:
    torch.set_num_threads(1)
    clients, kw = make_clients("heart", 2)
    spec = ModelSpec("logreg", kw, seed=0)
    cfg = fl.TrainConfig(steps=10, batch_size=8, lr=0.05)
    rows = []
    for rep in range(reps):
        states = {}
        for secure in (False, True):
            t0 = time.perf_counter()
            res = run_flower(clients, fl.FedAvg(cfg), 1, spec, port=None, evaluate="none",
                             secure=secure)
            rows.append({"rep": rep, "secure": secure, "seconds": time.perf_counter() - t0,
                         "network_bytes": res.network_bytes})
            states[secure] = res.final_state
            print(rows[-1], flush=True)
        assert max_abs_diff(states[False], states[True]) == 0.0
    ins = [r["seconds"] for r in rows if not r["secure"]]
    sec = [r["seconds"] for r in rows if r["secure"]]
    out = {"runs": rows, "insecure_mean_s": sum(ins) / len(ins),
           "secure_mean_s": sum(sec) / len(sec),
           "ratio_secure_over_insecure": (sum(sec) / len(sec)) / (sum(ins) / len(ins)),
           "same_final_weights": True,
           "note": "2-core machine shared with other jobs: wall times are upper bounds"}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "flower_secure.json").write_text(json.dumps(out, indent=2))
    print(json.dumps({k: v for k, v in out.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
