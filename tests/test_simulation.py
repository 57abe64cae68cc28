import copy

import matplotlib
import pytest
import torch

import fedlearn as fl
from fedlearn import ClientUpdate, InvalidUpdateError

from .helpers import blobs

matplotlib.use("Agg")


def _clients(k=5, with_test=True):
    return [fl.Client(i, blobs(30 + 10 * i, seed=i), blobs(20, seed=100 + i) if with_test else None,
                      name=f"H{i}") for i in range(k)]


def test_run_is_deterministic_and_seed_matters():
    cfg = fl.TrainConfig(epochs=1, batch_size=8, lr=0.2)
    m = fl.make_model("logreg", in_features=5, seed=0)
    a, b, c = copy.deepcopy(m), copy.deepcopy(m), copy.deepcopy(m)
    ha = fl.run(a, _clients(), fl.FedAvg(cfg), rounds=3, fraction=0.6, seed=1, progress=False)
    hb = fl.run(b, _clients(), fl.FedAvg(cfg), rounds=3, fraction=0.6, seed=1, progress=False)
    fl.run(c, _clients(), fl.FedAvg(cfg), rounds=3, fraction=0.6, seed=2, progress=False)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert ha.to_dataframe().equals(hb.to_dataframe())
    assert [r["participants"] for r in ha.rounds] == [r["participants"] for r in hb.rounds]
    assert not torch.equal(a.state_dict()["linear.weight"], c.state_dict()["linear.weight"])


def test_fraction_samples_m_clients_and_history_tables():
    cfg = fl.TrainConfig(epochs=1, batch_size=8, lr=0.2)
    m = fl.make_model("logreg", in_features=5, seed=0)
    h = fl.run(m, _clients(10), fl.FedAvg(cfg), rounds=4, fraction=0.3, eval_every=2,
               progress=False)
    rf = h.rounds_frame()
    assert list(rf["round"]) == [1, 2, 3, 4]
    assert all(len(p) == 3 for p in rf["participants"])
    assert len({tuple(p) for p in rf["participants"]}) > 1  # different clients across rounds
    n_params = fl.num_parameters(m)
    assert (rf["bytes_down"] == 3 * 4 * n_params).all()
    assert (rf["bytes_up"] == 3 * 4 * n_params).all()
    assert h.total_bytes == int((rf["bytes_up"] + rf["bytes_down"]).sum())
    df = h.to_dataframe()
    assert sorted(df["round"].unique()) == [0, 2, 4]
    assert set(df["test_set"]) == {f"H{i}" for i in range(10)} | {"pooled"}
    for col in ("accuracy", "auroc", "sensitivity", "specificity", "balanced_accuracy", "f1"):
        assert col in df.columns
    last = df[(df["round"] == 4) & (df["test_set"] == "pooled")]
    assert h.final("accuracy") == last["accuracy"].item()
    assert len(h.per_client("auroc")) == 11
    ax = h.plot("accuracy", test_sets=None)
    assert ax.get_xlabel() == "communication round"
    ax = h.plot("auroc", x="mb")
    assert "MB" in ax.get_xlabel()


def test_pooled_metrics_are_metrics_on_the_union_of_test_sets():
    clients = _clients(3)
    m = fl.make_model("logreg", in_features=5, seed=0)
    res = fl.evaluate_clients(m, clients)
    x = torch.cat([c.test.tensors[0] for c in clients])
    y = torch.cat([c.test.tensors[1] for c in clients])
    assert res["pooled"] == pytest.approx(fl.evaluate(m, torch.utils.data.TensorDataset(x, y)))
    # one shared test set is scored once, as "pooled"
    shared = blobs(20, seed=7)
    cs = [fl.Client(i, blobs(10, seed=i), shared) for i in range(3)]
    assert list(fl.evaluate_clients(m, cs)) == ["pooled"]


def test_run_learns_and_final_round_is_always_evaluated():
    m = fl.make_model("logreg", in_features=5, seed=0)
    h = fl.run(m, _clients(), fl.FedAvg(fl.TrainConfig(epochs=2, batch_size=8, lr=0.3)),
               rounds=5, eval_every=2, progress=False)
    acc = h.metric("accuracy")
    assert list(acc.index) == [0, 2, 4, 5]
    assert acc.iloc[-1] > 0.8 and acc.iloc[-1] > acc.iloc[0]
    assert h.rounds_to(0.8) is not None
    assert h.rounds_to(1.01) is None
    assert all(torch.equal(h.final_state[k], m.state_dict()[k]) for k in m.state_dict())


class _NaNClient(fl.Client):
    def fit(self, model, global_state, config, seed, hooks=()):
        u = super().fit(model, global_state, config, seed, hooks)
        return ClientUpdate(self.cid, {k: v * float("nan") for k, v in u.delta.items()},
                            u.num_examples)


def test_a_nan_update_stops_the_run_with_a_clear_error():
    clients = _clients(2) + [_NaNClient(7, blobs(10), name="broken")]
    m = fl.make_model("logreg", in_features=5, seed=0)
    before = copy.deepcopy(m.state_dict())
    with pytest.raises(InvalidUpdateError, match="client 7"):
        fl.run(m, clients, fl.FedAvg(), rounds=1, progress=False)
    assert all(torch.equal(before[k], m.state_dict()[k]) for k in before)


def test_stop_reason_ends_run_early_and_is_recorded():
    class TwoRounds(fl.FedAvg):
        def stop_reason(self, rnd):
            return "budget spent" if rnd > 2 else None

    m = fl.make_model("logreg", in_features=5, seed=0)
    h = fl.run(m, _clients(), TwoRounds(), rounds=6, progress=False, eval_every=5)
    assert len(h.rounds) == 2 and "budget spent" in h.stopped
    assert list(h.metric("accuracy").index) == [0, 2]


def test_bad_arguments():
    m = fl.make_model("logreg", in_features=5, seed=0)
    with pytest.raises(ValueError, match="fraction"):
        fl.run(m, _clients(), fl.FedAvg(), rounds=1, fraction=0, progress=False)
    with pytest.raises(ValueError, match="unique"):
        fl.run(m, [fl.Client(0, blobs(5)), fl.Client(0, blobs(5))], fl.FedAvg(), rounds=1,
               progress=False)
    with pytest.raises(ValueError, match="no clients"):
        fl.run(m, [], fl.FedAvg(), rounds=1, progress=False)
    h = fl.run(m, _clients(with_test=False), fl.FedAvg(), rounds=1, progress=False)
    with pytest.raises(ValueError, match="no evaluations"):
        h.metric("accuracy")
