"""Accuracy band on real data: FedAvg on the four heart-disease hospitals.

FLamby (du Terrail et al., 2022) reports 0.748 pooled-test accuracy for FedAvg on
Fed-Heart-Disease (logistic regression, batch 4, 15 rounds of 100 local steps, SGD at lr 1e-3,
test features standardised with pooled statistics). Here each hospital standardises with its
own training statistics, as a real hospital would, and the clients use Adam at lr 1e-3 (plain
SGD at 1e-3 converges more slowly in 15 rounds). The issue asks for at least 0.72 on the pooled
test sets, mean over 3 seeds; benchmarks/flamby_heart.py reproduces FLamby's exact protocol.
"""

import numpy as np
import pytest

import fedlearn as fl


@pytest.mark.realdata
def test_fedavg_heart_disease_reaches_flamby_band(real_data_dir):
    sites = fl.data.load_heart_disease(root=real_data_dir)
    cfg = fl.TrainConfig(steps=100, batch_size=4, lr=1e-3, optimizer="adam")
    accs, aucs = [], []
    for seed in range(3):
        model = fl.make_model("logreg", in_features=13, seed=seed)
        h = fl.run(model, fl.clients_from_sites(sites), fl.FedAvg(cfg), rounds=15, seed=seed,
                   eval_every=15, progress=False)
        accs.append(h.final("accuracy"))
        aucs.append(h.final("auroc"))
        assert set(h.per_client("accuracy").index) == {s.name for s in sites} | {"pooled"}
    assert np.mean(accs) >= 0.72, accs
    assert np.mean(aucs) >= 0.75, aucs  # and it ranks patients well, not just by prevalence
