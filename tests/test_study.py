"""Tests for fedlearn.study: every method of the case study on a small synthetic consortium."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from opacus.validators import ModuleValidator

import fedlearn as fl
from fedlearn import study
from fedlearn.aggregators import CompositionError
from fedlearn.algorithms import FedAdam, FedBN, FedProx
from fedlearn.augment import Augment
from fedlearn.hospitals import HOSPITALS, build_consortium
from fedlearn.privacy import DPFedAvg
from fedlearn.report import metrics_table
from fedlearn.secagg import SecureAggregation

from .casestudy_data import fake_medmnist

RECIPE = study.Recipe(rounds=3, config=fl.TrainConfig(epochs=1, batch_size=32, lr=3e-3,
                                                      optimizer="adam"),
                      model_kwargs={"norm": "batch", "width": 4, "hidden": 8})


@pytest.fixture(scope="module")
def consortium():
    torch.set_num_threads(1)
    return build_consortium(fake_medmnist(), HOSPITALS[:4], alpha=1.0, seed=0)


def test_recipe_builds_the_same_start_for_every_method():
    a, b = RECIPE.build_model(1), RECIPE.build_model(1)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert RECIPE.scaled(7).rounds == 7 and RECIPE.scaled(7).config == RECIPE.config
    assert set(study.RECIPES) == {"pneumoniamnist", "breastmnist"}


def test_make_strategy():
    cfg = RECIPE.config
    assert type(study.make_strategy("FedAvg", cfg)) is fl.FedAvg
    assert study.make_strategy("FedProx", cfg, mu=0.5).mu == 0.5
    assert isinstance(study.make_strategy("FedBN", cfg), FedBN)
    assert study.make_strategy("FedAdam", cfg, server_lr=0.02).server_lr == 0.02
    assert isinstance(study.make_strategy("FedProx", cfg), FedProx)
    assert isinstance(study.make_strategy("FedAdam", cfg), FedAdam)
    with pytest.raises(ValueError, match="unknown"):
        study.make_strategy("FedMagic", cfg)


@pytest.mark.parametrize("method", study.BASE_METHODS)
def test_every_method_scores_every_hospital(consortium, method):
    res = study.run_method(method, consortium, RECIPE, seed=0)
    assert res.method == method and res.seed == 0
    assert list(res.test) == consortium.names and list(res.val) == consortium.names
    for name, h in zip(consortium.names, consortium, strict=True):
        y, p = res.test[name]
        assert np.array_equal(y, h.test.tensors[1].numpy())
        assert p.shape == (len(h.test), 2) and np.allclose(p.sum(1), 1.0, atol=1e-5)
    table = res.table("test")
    assert table.loc["pooled", "n"] == sum(len(h.test) for h in consortium)
    assert (res.model is None) == (method == "local")
    with pytest.raises(ValueError, match="split"):
        res.table("train")


def test_the_task_is_learned(consortium):
    res = study.run_method("pooled", consortium, RECIPE.scaled(4), seed=0)
    assert res.table("test").loc["pooled", "auroc"] > 0.9


def test_local_models_are_each_hospitals_own(consortium):
    res = study.run_local(consortium, RECIPE.scaled(1), seed=0)
    states = res.info["states"]
    assert list(states) == consortium.names
    w = [s["head.3.weight"] for s in states.values()]
    assert not torch.allclose(w[0], w[1])
    # hospital k's predictions come from hospital k's model
    model = RECIPE.build_model(0)
    model.load_state_dict(states[consortium.names[1]])
    p = fl.predict_proba(model, consortium[1].test.tensors[0]).numpy()
    assert np.allclose(res.test[consortium.names[1]][1], p, atol=1e-6)


def test_local_subset(consortium):
    names = consortium.names[2:]
    res = study.run_local(consortium, RECIPE.scaled(1), seed=0, only=names)
    assert list(res.test) == names and list(res.info["states"]) == names
    with pytest.raises(ValueError, match="unknown hospital"):
        study.run_local(consortium, RECIPE.scaled(1), seed=0, only=["Nowhere"])


def test_global_methods_give_one_model_personalised_ones_do_not(consortium):
    avg = study.run_method("FedAvg", consortium, RECIPE.scaled(2), seed=0)
    p = fl.predict_proba(avg.model, consortium[0].test.tensors[0]).numpy()
    assert np.allclose(avg.test[consortium.names[0]][1], p, atol=1e-6)
    bn = study.run_method("FedBN", consortium, RECIPE.scaled(2), seed=0)
    p = fl.predict_proba(bn.model, consortium[0].test.tensors[0]).numpy()
    assert not np.allclose(bn.test[consortium.names[0]][1], p, atol=1e-4), \
        "FedBN hospitals use their own BatchNorm layers"


def test_personal_state_fn_looks_through_wrappers():
    state = fl.make_model("cnn", seed=0, width=4, hidden=8, norm="batch").state_dict()
    assert study.personal_state_fn(fl.FedAvg(), state) is None
    assert study.personal_state_fn(None, state) is None
    assert study.personal_state_fn(SecureAggregation(FedBN()), state) is not None


def test_secure_aggregation_changes_nothing_but_the_server_view(consortium):
    # one round: the aggregate differs from FedAvg's only by the fixed-point rounding (a later
    # round of local Adam could amplify even that: Adam's step is about lr * sign(gradient))
    cfg = replace(RECIPE.config, class_weights=consortium.class_weights())
    r = RECIPE.scaled(1)
    plain = study.run_federated(consortium, r, fl.FedAvg(cfg), seed=0)
    secure = study.run_federated(
        consortium, r, study.with_secure_aggregation(fl.FedAvg(cfg), seed=0), seed=0)
    assert secure.method == "SecAgg-FedAvg"
    a, b = plain.model.state_dict(), secure.model.state_dict()
    assert max(float((a[k].double() - b[k].double()).abs().max()) for k in a) < 1e-6
    for name in consortium.names:
        assert np.allclose(plain.test[name][1], secure.test[name][1], atol=1e-5)
    log = [m["secure"] for m in secure.info["aggregation"]]
    assert log and all("aborted" not in row and row["clipped_fraction"] == 0.0 for row in log)


def test_client_dp_spends_the_stated_budget(consortium):
    # DP never noises BatchNorm statistics: the BN recipe is refused before training, and the
    # study's DP runs use GroupNorm (as benchmarks/case_study.py does)
    bn = DPFedAvg.for_budget(fl.FedAvg(RECIPE.config), epsilon=4.0, delta=1e-5, rounds=2)
    with pytest.raises(CompositionError, match="BatchNorm running statistics"):
        study.run_federated(consortium, RECIPE.scaled(2), bn, seed=0)
    r = GN.scaled(2)
    dp = DPFedAvg.for_budget(fl.FedAvg(r.config), epsilon=4.0, delta=1e-5, rounds=r.rounds)
    res = study.run_federated(consortium, r, dp, seed=0, tuned="clip norm from update norms")
    assert 3.6 <= res.strategy.epsilon() <= 4.0
    assert res.strategy.noise_multiplier > 0 and not res.strategy.weighted
    summary = res.ledger.summary()
    assert np.allclose(summary["epsilon"], res.strategy.epsilon())
    flagged = {r.quantity for r in res.ledger.unaccounted()}
    assert flagged == {"recipe chosen on validation", "test metrics of the final model"}
    with pytest.raises(ValueError, match="epsilon"):
        DPFedAvg.for_budget(fl.FedAvg(), epsilon=math.inf, delta=1e-5, rounds=10)


def test_augmentation_is_used_when_the_recipe_asks(consortium):
    plain = study.run_method("FedAvg", consortium, RECIPE.scaled(1), seed=0)
    aug = study.run_method("FedAvg", consortium,
                           study.Recipe(1, RECIPE.config, RECIPE.model_kwargs, Augment()), seed=0)
    name = consortium.names[0]
    assert not np.allclose(plain.test[name][1], aug.test[name][1])


def test_fedadam_bn_steps_weights_with_adam_and_averages_statistics():
    model = fl.make_model("cnn", seed=0, width=4, hidden=8, norm="batch")
    bufs = study.buffer_keys(model)
    assert bufs and all(("running" in k) for k in bufs), "num_batches_tracked is an integer"
    state = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    delta = {k: 0.1 * torch.randn(v.shape, generator=g) for k, v in state.items()
             if torch.is_floating_point(v)}
    ours = study.FedAdamBN(buffers=bufs, server_lr=0.01)
    plain = FedAdam(server_lr=0.01)
    ours.initialize(state, [])
    plain.initialize(state, [])
    for rnd in (1, 2):  # two rounds: the moments must only see the weights
        a = ours.server_update(rnd, state, delta)
        b = plain.server_update(rnd, state, delta)
    for k in state:
        if k in bufs:
            assert torch.allclose(a[k], state[k] + delta[k]), k
        else:
            assert torch.equal(a[k], b[k]), k
    assert set(ours.m) == set(delta) - set(bufs)
    assert study.make_strategy("FedAdam", RECIPE.config, bufs).buffers == frozenset(bufs)


GN = replace(RECIPE, model_kwargs={"norm": "group", "width": 4, "hidden": 8})


def test_image_dp_spends_the_budget_at_every_hospital_and_picks_a_threshold(consortium):
    plain = study.run_image_dp(consortium, GN.scaled(2), seed=0, epsilon=8.0,
                               threshold_epsilon=None)
    trained = plain.info["epsilon_per_hospital"]
    assert set(trained) == set(consortium.names)
    assert all(7.0 <= e <= 8.0 for e in trained.values())  # calibrated per hospital size
    assert plain.threshold == 0.5 and "threshold" not in plain.info
    res = study.run_image_dp(consortium, GN.scaled(2), seed=0, epsilon=8.0)
    spent = res.info["epsilon_per_hospital"]
    # the threshold's Laplace release (epsilon 1) adds to each hospital's total
    for name in consortium.names:
        assert spent[name] == pytest.approx(trained[name] + 1.0, abs=1e-3)
    assert res.info["epsilon"] == max(spent.values())
    assert 0.0 < res.threshold < 1.0 and res.info["threshold"] == res.threshold
    assert res.table().equals(metrics_table(res.test, res.threshold))
    assert res.table(threshold=0.5).equals(metrics_table(res.test, 0.5))
    assert res.table()["auroc"]["pooled"] > 0.7  # the blob task survives epsilon = 8
    for name in consortium.names:  # the threshold step is post-processing: same model
        assert np.allclose(plain.test[name][1], res.test[name][1])
    # the ledger: image-level totals equal each hospital's accountant; what no epsilon covers
    summary = res.ledger.summary()
    for name in consortium.names:
        assert summary.loc[(name, "image"), "epsilon"] == pytest.approx(spent[name], abs=1e-3)
    assert {r.quantity for r in res.ledger.unaccounted()} == {
        "training label counts (class weights)", "recipe chosen on validation",
        "test metrics of the final model"}
    assert "train_loss" not in res.ledger.frame()["quantity"].tolist()


def test_image_dp_refuses_batchnorm_and_bad_budgets(consortium):
    with pytest.raises(ValueError, match="BatchNorm"):
        study.run_image_dp(consortium, RECIPE.scaled(1), seed=0, epsilon=8.0)
    with pytest.raises(ValueError, match="epsilon"):
        study.run_image_dp(consortium, GN.scaled(1), seed=0, epsilon=math.inf)


def test_dp_recipes_are_opacus_compatible():
    for r in study.DP_RECIPES.values():
        assert r.model_kwargs["norm"] == "group" and r.augment is None
        assert ModuleValidator.validate(r.build_model(0), strict=False) == []
