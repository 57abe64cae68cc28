"""SecureAggregation(FedAvg) gives plain FedAvg's model up to the quantisation bound."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fedlearn as fl
from fedlearn.aggregate import fedavg_delta
from fedlearn.secagg import DistributedGaussian, SecureAggregation
from fedlearn.secagg.costs import client_bytes
from fedlearn.utils import clone_state

from .helpers import blobs

SIZES = [30, 50, 80, 20, 60]
CFG = fl.TrainConfig(steps=5, batch_size=8, lr=0.1)


def make_clients() -> list[fl.Client]:
    return [fl.Client(cid=i, train=blobs(n, seed=i), test=blobs(40, seed=100 + i))
            for i, n in enumerate(SIZES)]


def round_updates(model: torch.nn.Module, clients: list[fl.Client]) -> list[fl.ClientUpdate]:
    state = clone_state(model.state_dict())
    return [c.fit(model, state, CFG, seed=c.cid) for c in clients]


@pytest.mark.parametrize("weighted", [True, False])
def test_one_round_matches_fedavg_within_the_quantisation_bound(weighted: bool) -> None:
    clients = make_clients()
    model = fl.make_model("mlp", in_features=5, hidden=(16,), seed=0)
    updates = round_updates(model, clients)
    strat = SecureAggregation(fl.FedAvg(CFG, weighted=weighted), clip=1.0)
    state = clone_state(model.state_dict())
    strat.start(state, clients)
    outcome = strat.aggregate_round(1, state, updates)
    secure = {k: outcome.state[k] - state[k] for k in state}
    plain = fedavg_delta(updates, weighted=weighted)
    row = outcome.measurements["secure"]
    assert row["included"] == [0, 1, 2, 3, 4] and row["clipped_fraction"] == 0.0
    assert row["weight_sum"] == (sum(SIZES) if weighted else 5)
    bound = float(row["bound"])
    assert bound < 1e-7
    for k in plain:
        err = (secure[k].double() - plain[k].double()).abs()
        # + float32 rounding of the new weights (|w| <= ~1 here)
        assert float(err.max()) <= bound + 2e-7 * (float(state[k].abs().max()) + 1) + 1e-12
    assert bound == pytest.approx(strat.quantization_bound(5, row["weight_sum"], 5))


def test_full_run_equals_plain_fedavg() -> None:
    clients = make_clients()
    runs = {}
    for name, strat in (("plain", fl.FedAvg(CFG)), ("secure", SecureAggregation(fl.FedAvg(CFG)))):
        model = fl.make_model("logreg", in_features=5, seed=0)
        runs[name] = fl.run(model, clients, strat, rounds=4, progress=False, seed=3)
    a, b = runs["plain"].final_state, runs["secure"].final_state
    assert a is not None and b is not None
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)
    assert runs["secure"].strategy == "SecAgg-FedAvg"
    # what each client uploads is the protocol's cost, not the raw floats
    up = sum(v for k, v in client_bytes(5, 13, 32).items() if k.endswith("(up)"))
    assert runs["secure"].rounds[-1]["bytes_up"] == 5 * up


def test_dropouts_after_masked_input_do_not_change_the_model() -> None:
    clients = make_clients()
    model = fl.make_model("logreg", in_features=5, seed=0)
    strat = SecureAggregation(fl.FedAvg(CFG), dropout_rate=0.35, threshold=2, seed=2)
    hist = fl.run(model, clients, strat, rounds=3, progress=False, seed=3)
    log = hist.aggregation_frame("secure")
    assert "aborted" not in log and not any("aborted" in r for r in hist.rounds)
    assert sum(len(d) for d in log["dropped_after_input"]) >= 3
    plain = fl.run(fl.make_model("logreg", in_features=5, seed=0), clients, fl.FedAvg(CFG),
                   rounds=3, progress=False, seed=3)
    for k in plain.final_state or {}:
        torch.testing.assert_close(plain.final_state[k], hist.final_state[k], atol=1e-6, rtol=0)


def test_aborted_rounds_leave_the_model_unchanged() -> None:
    clients = make_clients()
    model = fl.make_model("logreg", in_features=5, seed=0)
    start = clone_state(model.state_dict())
    strat = SecureAggregation(fl.FedAvg(CFG), dropout_rate=0.9, threshold=1.0, seed=0)
    hist = fl.run(model, clients, strat, rounds=2, progress=False)
    assert all("aborted" in row for row in hist.rounds)
    assert hist.aggregation_frame("secure")["aborted"].notna().all()
    assert "every round aborted" in hist.stopped
    for k, v in start.items():
        assert torch.equal(hist.final_state[k], v)


def test_entries_beyond_clip_are_clipped_and_reported() -> None:
    clients = make_clients()
    model = fl.make_model("logreg", in_features=5, seed=0)
    updates = round_updates(model, clients)
    strat = SecureAggregation(fl.FedAvg(CFG), clip=1e-3)
    state = clone_state(model.state_dict())
    strat.start(state, clients)
    outcome = strat.aggregate_round(1, state, updates)
    assert outcome.measurements["secure"]["clipped_fraction"] > 0
    assert all(float((outcome.state[k] - state[k]).abs().max()) <= 1e-3 + 1e-7 for k in state)


def test_distributed_dp_composes_and_needs_unweighted_sums() -> None:
    with pytest.raises(ValueError, match="weighted=False"):
        SecureAggregation(fl.FedAvg(CFG), transform=DistributedGaussian(1.0, 1.0))
    with pytest.raises(ValueError, match="set it on the inner strategy"):
        SecureAggregation(fl.FedAvg(CFG), weighted=False)
    clients = make_clients()
    # no noise and a loose clip: exactly unweighted FedAvg of the (unclipped) updates
    dp0 = DistributedGaussian(clip_norm=100.0, noise_multiplier=0.0)
    strat = SecureAggregation(fl.FedAvg(CFG, weighted=False), transform=dp0)
    plain = fl.FedAvg(CFG, weighted=False)
    finals = [fl.run(fl.make_model("logreg", in_features=5, seed=0), clients, s, rounds=2,
                     progress=False).final_state for s in (strat, plain)]
    for k in finals[0]:
        torch.testing.assert_close(finals[0][k], finals[1][k], atol=1e-6, rtol=0)
    # with noise the aggregate moves, and the transform has accounted for the rounds
    dp = DistributedGaussian(clip_norm=0.5, noise_multiplier=1.0, seed=1)
    noisy = SecureAggregation(fl.FedAvg(CFG, weighted=False), transform=dp)
    h = fl.run(fl.make_model("logreg", in_features=5, seed=0), clients, noisy, rounds=2,
               progress=False)
    assert dp.rounds == {1, 2} and 0 < dp.epsilon() < np.inf
    diff = max(float((h.final_state[k] - finals[1][k]).abs().max()) for k in finals[1])
    assert diff > 1e-3


def test_argument_checks() -> None:
    with pytest.raises(ValueError, match="threshold must be >= 2"):
        SecureAggregation(fl.FedAvg(), threshold=1)
    with pytest.raises(ValueError, match="fraction must be in"):
        SecureAggregation(fl.FedAvg(), threshold=1.5)
    with pytest.raises(ValueError, match="dropout_rate"):
        SecureAggregation(fl.FedAvg(), dropout_rate=1.0)
    with pytest.raises(ValueError, match="clip must be a finite number > 0"):
        SecureAggregation(fl.FedAvg(), clip=-1)
    s = SecureAggregation(fl.FedAvg(), threshold=0.5)
    assert [s.threshold_for(n) for n in (2, 3, 10)] == [2, 2, 5]
