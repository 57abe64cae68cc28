"""Sample-level DP hospitals: Opacus training, a ledger that persists across rounds."""

from __future__ import annotations

import pytest
import torch

import fedlearn as fl
from fedlearn.privacy import DPClient, calibrate_clients, dp_clients_from, dp_local_train
from fedlearn.privacy.accounting import rdp_epsilon
from fedlearn.privacy.dpsgd import dp_sample_rate, dp_steps_per_round, make_engine

from .helpers import blobs

CFG = fl.TrainConfig(steps=5, batch_size=8, lr=0.1)


def _hospitals(sizes=(60, 40, 24)) -> list[fl.Client]:
    return [fl.Client(cid=i, train=blobs(n, seed=i), test=blobs(30, seed=10 + i))
            for i, n in enumerate(sizes)]


def test_sample_rate_and_steps_follow_opacus_conventions():
    assert dp_sample_rate(60, 8) == pytest.approx(1 / 8)  # ceil(60/8) = 8 batches
    assert dp_sample_rate(5, 8) == 1.0 and dp_sample_rate(50, None) == 1.0
    assert dp_steps_per_round(60, CFG) == 5
    assert dp_steps_per_round(60, fl.TrainConfig(epochs=2, batch_size=8)) == 16


def test_epsilon_grows_over_rounds_and_matches_the_accountant_for_all_steps():
    client = dp_clients_from(_hospitals()[:1], noise_multiplier=1.2, delta=1e-5)[0]
    model = fl.make_model("logreg", in_features=5, seed=0)
    state = model.state_dict()
    eps = [client.epsilon()]
    for r in range(1, 4):
        upd = client.fit(model, state, CFG, seed=r)
        eps.append(client.epsilon())
        assert upd.metrics["epsilon"] == pytest.approx(eps[-1])
        assert upd.metrics["num_steps"] == 5
    assert eps[0] == 0.0 and eps[1] < eps[2] < eps[3]
    q = dp_sample_rate(60, 8)
    # the ledger is cumulative: 3 rounds x 5 steps, not 3 fresh budgets of 5 steps
    assert eps[3] == pytest.approx(rdp_epsilon(1.2, q, 15, 1e-5), rel=1e-6)
    assert eps[3] > eps[1] * 1.2
    assert client.rounds == 3
    assert client.epsilon_after(2, CFG) == pytest.approx(rdp_epsilon(1.2, q, 25, 1e-5), rel=1e-6)


def test_hospitals_not_sampled_spend_nothing():
    clients = dp_clients_from(_hospitals(), noise_multiplier=1.0)
    model = fl.make_model("logreg", in_features=5, seed=0)
    hist = fl.run(model, clients, fl.FedAvg(CFG), rounds=4, fraction=0.34, seed=1,
                  eval_every=0, progress=False)
    taken = [cid for row in hist.rounds for cid in row["participants"]]
    for c in clients:
        assert c.rounds == taken.count(c.cid)
        expected = rdp_epsilon(1.0, c.sample_rate(CFG), 5 * c.rounds, 1e-5) if c.rounds else 0.0
        assert c.epsilon() == pytest.approx(expected, rel=1e-6)
    assert len({c.rounds for c in clients}) > 1  # the draw did differ between hospitals


def test_dp_training_is_reproducible_and_the_seed_matters():
    data = blobs(40, seed=0)
    model = fl.make_model("mlp", in_features=5, hidden=(8,), seed=0)
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def run(seed: int) -> dict[str, torch.Tensor]:
        return dp_local_train(model, state, data, CFG, engine=make_engine(), noise_multiplier=1.0,
                              max_grad_norm=1.0, seed=seed).delta

    a, b, c = run(3), run(3), run(4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert not any(hasattr(p, "grad_sample") for p in model.parameters())  # hooks removed


def test_noise_dominates_with_a_huge_multiplier_and_vanishes_without():
    data = blobs(64, seed=0)
    model = fl.make_model("logreg", in_features=5, seed=0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = fl.TrainConfig(steps=1, batch_size=64, lr=1.0)

    def norm(sigma: float, seed: int) -> float:
        d = dp_local_train(model, state, data, cfg, engine=make_engine(), noise_multiplier=sigma,
                           max_grad_norm=0.1, seed=seed, poisson_sampling=False).delta
        return float(torch.sqrt(sum((v ** 2).sum() for v in d.values())))

    # sigma = 0: one step moves at most lr * C (clipped mean), whatever the data
    assert norm(0.0, 1) <= 0.1 + 1e-6
    # sigma = 100: noise std per entry = lr * sigma * C / B = 0.156; 12 entries -> norm ~ 0.54
    assert 0.3 < norm(100.0, 1) < 0.9


def test_local_hooks_and_batchnorm_are_refused():
    client = dp_clients_from(_hospitals()[:1], noise_multiplier=1.0)[0]
    model = fl.make_model("logreg", in_features=5, seed=0)
    with pytest.raises(ValueError, match="hooks"):
        client.fit(model, model.state_dict(), CFG, seed=0, hooks=(fl.LocalHook(),))
    img = fl.Client(cid=0, train=torch.utils.data.TensorDataset(
        torch.randn(8, 1, 28, 28), torch.randint(0, 2, (8,))))
    bn_client = dp_clients_from([img], noise_multiplier=1.0)[0]
    cnn = fl.make_model("cnn", norm="batch", width=4, hidden=8, seed=0)
    with pytest.raises(Exception, match="BatchNorm"):
        bn_client.fit(cnn, cnn.state_dict(), CFG, seed=0)


def test_calibrated_hospitals_end_the_planned_run_at_the_target():
    hospitals = _hospitals()
    sigmas = calibrate_clients(hospitals, target_epsilon=2.0, delta=1e-5, config=CFG, rounds=6)
    assert sigmas[2] > sigmas[0]  # the smallest hospital is sampled at a higher rate
    clients = dp_clients_from(hospitals, sigmas)
    model = fl.make_model("logreg", in_features=5, seed=0)
    fl.run(model, clients, fl.FedAvg(CFG), rounds=6, eval_every=0, progress=False)
    for c in clients:
        assert 1.8 <= c.epsilon() <= 2.0


def test_dp_client_validates_its_parameters():
    with pytest.raises(ValueError, match="noise_multiplier"):
        DPClient(cid=0, train=blobs(10), noise_multiplier=-1.0)
    with pytest.raises(ValueError, match="delta"):
        DPClient(cid=0, train=blobs(10), delta=0.0)
    with pytest.raises(ValueError, match="2 noise multipliers for 3 clients"):
        dp_clients_from(_hospitals(), [1.0, 2.0])


@pytest.mark.parametrize("mode", ["ghost"])
@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_fast_per_sample_modes_give_the_same_clipped_noisy_step_and_epsilon(mode, model_name):
    """Reference: Opacus' hooks mode (per-sample gradients stored, clipped, summed, noised).
    Ghost clipping only computes the norms and backpropagates the clip-weighted loss; with the
    same seed the noise draws are the same, so the weights must agree to float rounding.
    Tiny hospitals with B=2 make Poisson sampling draw empty batches; C=0.3 makes clipping bind;
    class weights check that the per-example loss is the same."""
    from .helpers import blobs

    if model_name == "cnn":
        g = torch.Generator().manual_seed(0)
        data = torch.utils.data.TensorDataset(torch.rand(12, 1, 28, 28, generator=g),
                                              torch.randint(0, 2, (12,), generator=g))
        model = fl.make_model("cnn", seed=0, in_channels=1, num_classes=2)
    else:
        data = blobs(7, seed=3)
        model = fl.make_model("mlp", in_features=5, seed=0)
    cfg = fl.TrainConfig(steps=6, batch_size=2, lr=0.2, class_weights=(1.0, 3.0))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    out, eps = {}, {}
    for m in ("hooks", mode):
        engine = make_engine()
        out[m] = dp_local_train(model, state, data, cfg, engine=engine, noise_multiplier=0.7,
                                max_grad_norm=0.3, seed=11, grad_sample_mode=m)
        eps[m] = engine.accountant.get_epsilon(1e-5)
    ref, got = out["hooks"], out[mode]
    for k in ref.delta:
        assert torch.allclose(got.delta[k], ref.delta[k], atol=1e-6), k
    assert got.metrics["train_loss"] == pytest.approx(ref.metrics["train_loss"], rel=1e-5)
    assert got.metrics["num_steps"] == ref.metrics["num_steps"] == 6
    assert eps[mode] == eps["hooks"] > 0
    assert max(float(v.abs().max()) for v in ref.delta.values()) > 0


def test_grad_sample_mode_is_checked_and_reaches_the_client():
    with pytest.raises(ValueError, match="grad_sample_mode must be one of.*'fast'"):
        dp_clients_from(_hospitals()[:1], noise_multiplier=1.0, grad_sample_mode="fast")
    (c,) = dp_clients_from(_hospitals()[:1], noise_multiplier=1.0, grad_sample_mode="ghost")
    model = fl.make_model("logreg", in_features=5, seed=0)
    upd = c.fit(model, model.state_dict(), CFG, seed=0)
    assert upd.metrics["num_steps"] == 5 and c.epsilon() > 0
