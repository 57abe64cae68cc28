"""Personalised methods: limits, what is sent, where the state lives, clear errors."""

from __future__ import annotations

import math

import pytest
import torch

import fedlearn as fl
from fedlearn.algorithms import APFL, Ditto, FedPer, FedRep, FendaFL, FendaNet, FineTune
from fedlearn.errors import ConfigError
from fedlearn.secagg import SecureAggregation
from fedlearn.utils import state_nbytes

from .helpers import blobs

SIZES = [24, 40, 16, 32]
CFG = fl.TrainConfig(steps=6, batch_size=8, lr=0.1)
FULL = fl.TrainConfig(steps=4, batch_size=None, lr=0.1)  # full batch: order-free
ROUNDS = 2
HEAD = ("net.2.",)


def clients() -> list[fl.Client]:
    return [fl.Client(cid=i, train=blobs(n, seed=i, shift=0.5 * i), test=blobs(30, seed=50 + i))
            for i, n in enumerate(SIZES)]


def mlp() -> torch.nn.Module:
    return fl.make_model("mlp", in_features=5, hidden=(6,), seed=0)


def run(strategy: fl.Strategy, cl: list[fl.Client] | None = None, model=None,
        rounds: int = ROUNDS) -> tuple[fl.History, list[fl.Client], list[dict]]:
    cl = cl if cl is not None else clients()
    states: list[dict] = []
    hist = fl.run(model if model is not None else mlp(), cl, strategy, rounds=rounds, seed=1,
                  progress=False,
                  callback=lambda r, m, h: states.append({k: v.clone()
                                                          for k, v in m.state_dict().items()}))
    return hist, cl, states


def evals(h: fl.History) -> list[float]:
    df = h.to_dataframe()
    return list(df["accuracy"]) + list(df["loss"])


def max_diff(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def local_model(c: fl.Client, steps: int, cfg: fl.TrainConfig = FULL) -> dict:
    """Plain local training from the initial model: the limit of Ditto(0) and APFL(1)."""
    m = mlp()
    fl.local_train(m, mlp().state_dict(), c.train, fl.TrainConfig(
        steps=steps, batch_size=cfg.batch_size, lr=cfg.lr), seed=0)
    return m.state_dict()


# ------------------------------------------------------------------ limits
def test_finetune_with_zero_steps_is_fedavg() -> None:
    ref, _, sr = run(fl.FedAvg(CFG))
    got, _, sg = run(FineTune(CFG, steps=0))
    assert evals(got) == evals(ref)
    assert max_diff(sg[-1], sr[-1]) == 0


def test_finetune_moves_each_hospital_and_trains_fedavg() -> None:
    ref, _, sr = run(fl.FedAvg(CFG))
    got, cl, sg = run(FineTune(CFG, steps=20))
    assert max_diff(sg[-1], sr[-1]) == 0  # the global model is FedAvg's
    assert evals(got) != evals(ref)  # the hospitals use their fine-tuned models
    assert set(cl[0].personal) == {"FineTune"}


def test_fedper_with_an_empty_head_is_fedavg() -> None:
    ref, _, sr = run(fl.FedAvg(CFG))
    got, _, sg = run(FedPer(CFG, head=()))
    assert evals(got) == evals(ref) and max_diff(sg[-1], sr[-1]) == 0
    assert [r["bytes_up"] for r in got.rounds] == [r["bytes_up"] for r in ref.rounds]


def test_ditto_with_lambda_zero_is_local_training() -> None:
    _, cl, _ = run(Ditto(CFG, lam=0.0, personal=FULL))
    for c in cl:
        v = cl[c.cid].personal["Ditto"]
        assert max_diff(v, local_model(c, ROUNDS * FULL.steps)) < 1e-5, c.cid


def test_ditto_with_a_huge_lambda_is_the_global_model_and_stays_stable() -> None:
    # eta * lambda = 1e7: a gradient penalty would diverge; the proximal step pins v to w
    _, cl, states = run(Ditto(CFG, lam=1e8, personal=FULL))
    received = states[-2]  # the global model the hospitals received in the last round
    for c in cl:
        v = c.personal["Ditto"]
        assert all(torch.isfinite(t).all() for t in v.values())
        assert max_diff(v, received) < 1e-5
    _, cl_mid, _ = run(Ditto(CFG, lam=1.0, personal=FULL))
    assert max_diff(cl_mid[0].personal["Ditto"], received) > 1e-3  # moderate lambda: between


def test_apfl_alpha_zero_is_fedavg_and_alpha_one_is_local() -> None:
    ref, _, _ = run(fl.FedAvg(CFG))
    got, _, _ = run(APFL(CFG, alpha=0.0, personal=FULL))
    assert evals(got) == evals(ref)
    _, cl, states = run(APFL(CFG, alpha=1.0, personal=FULL))
    for c in cl:
        v = c.personal["APFL"]["v"]
        assert max_diff(v, local_model(c, ROUNDS * FULL.steps)) < 1e-5, c.cid


def test_apfl_learns_alpha_inside_the_unit_interval() -> None:
    _, cl, _ = run(APFL(CFG, alpha=0.5, learn_alpha=True, alpha_lr=0.5, personal=CFG),
                   rounds=3)
    alphas = [c.personal["APFL"]["alpha"] for c in cl]
    assert all(0.0 <= a <= 1.0 for a in alphas)
    assert any(abs(a - 0.5) > 1e-3 for a in alphas)  # it moved


# ------------------------------------------------------------------ what is sent, where state lives
class Recorder(fl.StrategyWrapper):
    """Records the keys and bytes of every contribution the inner strategy asks to be summed."""

    def __init__(self, inner: fl.Strategy) -> None:
        super().__init__(inner)
        self.sent: list[tuple[set[str], int]] = []

    def contribution(self, rnd, update):  # noqa: ANN001, ANN201
        c = self.inner.contribution(rnd, update)
        self.sent.append((set(c.vectors["delta"]), state_nbytes(c.vectors["delta"])))
        return c


@pytest.mark.parametrize("make", [
    lambda: FedPer(CFG, head=HEAD), lambda: FedRep(CFG, head=HEAD, head_steps=3)])
def test_head_keys_are_never_sent_nor_downloaded(make) -> None:  # noqa: ANN001
    rec = Recorder(make())
    hist, cl, _ = run(rec)
    m = mlp()
    body = {k: v for k, v in m.state_dict().items() if not k.startswith("net.2.")}
    assert all(keys == set(body) for keys, _ in rec.sent)  # head absent, not zeroed
    assert all(r["bytes_up"] == 4 * state_nbytes(body) for r in hist.rounds)
    assert all(r["bytes_down"] == 4 * state_nbytes(body) for r in hist.rounds)
    # under secure aggregation the masked vector is the body only: fewer bytes than FedAvg's
    sec = run(SecureAggregation(make(), clip=20.0, threshold=2))[0].rounds[0]["bytes_up"]
    sec_avg = run(SecureAggregation(fl.FedAvg(CFG), clip=20.0, threshold=2))[0]
    assert sec < sec_avg.rounds[0]["bytes_up"]


def test_personal_state_lives_with_the_hospital() -> None:
    strat = FedPer(CFG, head=HEAD)
    hist, cl, states = run(strat)
    tensors = [v for v in vars(strat).values() if isinstance(v, torch.Tensor | dict)
               and any(isinstance(t, torch.Tensor) for t in (v.values() if isinstance(v, dict)
                                                              else [v]))]
    assert tensors == []  # the strategy object holds no model entries
    assert max_diff(cl[1].personal["FedPer"], cl[2].personal["FedPer"]) > 1e-4  # own heads
    own = strat.personal_state(0, states[-1])
    assert max_diff({k: own[k] for k in cl[0].personal["FedPer"]}, cl[0].personal["FedPer"]) == 0
    cl[0].personal.clear()  # the hospital forgets: the server cannot rebuild its head
    assert max_diff(strat.personal_state(0, states[-1]), states[-1]) == 0


def test_a_new_run_starts_every_hospital_afresh() -> None:
    cl = clients()
    run(Ditto(CFG, lam=0.0), cl)
    first = cl[0].personal["Ditto"]
    run(Ditto(CFG, lam=0.0), cl)
    assert max_diff(cl[0].personal["Ditto"], first) == 0  # not trained on top of the old one


def test_fedrep_schedule_freezes_the_body_then_the_head() -> None:
    m = mlp()
    init = {k: v.clone() for k, v in m.state_dict().items()}
    head_only = FedRep(fl.TrainConfig(steps=0, batch_size=8, lr=0.1), head=HEAD, head_steps=5)
    _, cl, states = run(head_only, model=m, rounds=1)
    assert max_diff(states[-1], init) == 0  # body never moved (nor did the server's head)
    assert max_diff(cl[0].personal["FedRep"], {k: init[k] for k in cl[0].personal["FedRep"]}) > 0
    body_only = FedRep(CFG, head=HEAD, head_steps=0)
    _, cl, states = run(body_only, model=mlp(), rounds=1)
    assert max_diff(cl[0].personal["FedRep"], {k: init[k] for k in cl[0].personal["FedRep"]}) == 0
    assert max_diff(states[-1], init) > 0


def test_fenda_shares_the_global_extractor_only() -> None:
    rec = Recorder(FendaFL(CFG))
    _, cl, states = run(rec, model=FendaNet(5, hidden=4, seed=0))
    assert all(all(k.startswith("global_extractor.") for k in keys) for keys, _ in rec.sent)
    assert set(cl[0].personal["FENDA-FL"]) == {"local_extractor.0.weight",
                                               "local_extractor.0.bias", "head.weight",
                                               "head.bias"}


# ------------------------------------------------------------------ errors
def test_a_split_that_matches_nothing_or_everything_lists_the_parameters() -> None:
    with pytest.raises(ConfigError, match=r"matches no parameter.*net\.0\.weight"):
        run(FedPer(CFG, head=("classifier.",)))
    with pytest.raises(ConfigError, match=r"matches every parameter.*net\.2\.bias"):
        run(FedPer(CFG, head=("net.",)))
    with pytest.raises(ConfigError, match="string"):
        FedPer(CFG, head="net.2.")
    with pytest.raises(ConfigError, match="needs a head"):
        FedRep(CFG, head=())


@pytest.mark.parametrize("lam", [-0.1, math.nan, math.inf])
def test_ditto_refuses_a_bad_lambda(lam: float) -> None:
    with pytest.raises(ConfigError, match="lam must be a finite number >= 0"):
        Ditto(CFG, lam=lam)


@pytest.mark.parametrize("alpha", [-0.01, 1.5, math.nan])
def test_apfl_refuses_alpha_outside_the_unit_interval(alpha: float) -> None:
    with pytest.raises(ConfigError, match=r"alpha must be a finite number in \[0.0, 1.0\]"):
        APFL(CFG, alpha=alpha)


def test_finetune_refuses_negative_steps() -> None:
    with pytest.raises(ConfigError, match="steps must be an integer >= 0"):
        FineTune(CFG, steps=-1)
