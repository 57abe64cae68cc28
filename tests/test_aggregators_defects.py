"""Each defect the aggregators issue found, as a test that failed before the new layer.

A *spy* inner strategy records every hook call (TFF's test doubles are the anchor), so a
wrapper that drops a hook shows up by the hook's name.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import TensorDataset

import fedlearn as fl
from fedlearn.aggregators import Aggregator, CentralDP, CompositionError, Secure
from fedlearn.algorithms import FedAdam, FedAvgM, FedBN, FedNova, Scaffold
from fedlearn.compression import Compressed, Quantize8bit
from fedlearn.privacy import BudgetGuard, DPFedAvg, PrivacyBudget
from fedlearn.secagg import DistributedGaussian, SecureAggregation
from fedlearn.system import SystemModel

from .helpers import blobs
from .test_aggregators_matrix import BNNet

CFG = fl.TrainConfig(steps=4, batch_size=8, lr=0.1)
HOOKS = ("setup", "initialize", "configure_round", "process_update", "contribution",
         "summed_template", "apply", "server_update", "personal_state", "download_nbytes",
         "stop_reason", "client_weight", "personal_keys", "mean_delta")


def hospitals(k: int = 3, n: int = 24) -> list[fl.Client]:
    return [fl.Client(cid=i, train=blobs(n + 8 * i, seed=i, shift=0.7 * i),
                      test=blobs(20, seed=40 + i)) for i in range(k)]


def mlp() -> nn.Module:
    return fl.make_model("mlp", in_features=5, hidden=(6,), seed=0)


class Spy(FedBN):
    """FedBN (it has personal state) that counts every hook call by name."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.calls: Counter[str] = Counter()

    def __getattribute__(self, name: str):  # noqa: ANN204
        if name in HOOKS:
            object.__getattribute__(self, "calls")[name] += 1
        return object.__getattribute__(self, name)


WRAPPERS = {
    "StrategyWrapper": lambda s: fl.StrategyWrapper(s),
    "SecureAggregation": lambda s: SecureAggregation(s, clip=20.0, threshold=2),
    "DPFedAvg": lambda s: DPFedAvg(s, noise_multiplier=0.0, clip_norm=1e9),
    "DistributedGaussian": lambda s: SecureAggregation(
        s, threshold=2, clip=20.0, transform=DistributedGaussian(1e9, 0.0)),
    "Compressed": lambda s: Compressed(s, Quantize8bit()),
    "BudgetGuard(DPFedAvg)": lambda s: BudgetGuard(
        DPFedAvg(s, noise_multiplier=1.0, clip_norm=1.0), PrivacyBudget(100.0, 1e-5)),
}


@pytest.mark.parametrize("wrapper", list(WRAPPERS))
def test_no_wrapper_drops_a_hook(wrapper: str) -> None:
    spy = Spy(CFG, weighted=wrapper != "DistributedGaussian")
    fl.run(BNNet(), hospitals(), WRAPPERS[wrapper](spy), rounds=2, progress=False,
           release_unaccounted=("test_metrics",))  # evaluation calls personal_state
    missed = [h for h in HOOKS if spy.calls[h] == 0]
    assert not missed, f"{wrapper} never called the inner strategy's {missed}"


def _bn_sites() -> list[fl.Client]:
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(3):  # brightness skew: each hospital's inputs scaled differently
        x = torch.randn(40, 5, generator=g)
        y = (x[:, 0] + 0.3 * x[:, 1] > 0).long()
        out.append(fl.Client(cid=i, train=TensorDataset(x * (1 + 2 * i) + i, y),
                             test=TensorDataset(x[:20] * (1 + 2 * i) + i, y[:20])))
    return out


def _final(strategy: fl.Strategy, model: nn.Module | None = None, sites=None,  # noqa: ANN001
           rounds: int = 3, **kw: object) -> fl.History:
    return fl.run(model if model is not None else mlp(), sites or hospitals(), strategy,
                  rounds=rounds, seed=0, progress=False, **kw)  # type: ignore[arg-type]


def _gap(a: fl.History, b: fl.History) -> float:
    return max(float((a.final_state[k].double() - b.final_state[k].double()).abs().max())
               for k in a.final_state if a.final_state[k].is_floating_point())


@pytest.mark.parametrize("wrap", ["secure", "dp"])
def test_scaffold_and_fednova_stay_themselves_under_the_wrappers(wrap: str) -> None:
    def wrapped(s: fl.Strategy) -> fl.Strategy:
        if wrap == "secure":
            return SecureAggregation(s, clip=20.0, threshold=2)
        return DPFedAvg(s, noise_multiplier=0.0, clip_norm=1e9)

    system = SystemModel(step_budgets={0: 1, 1: 4, 2: 2})
    fedavg = _final(fl.FedAvg(CFG), system=system)
    for make in (lambda: Scaffold(CFG), lambda: FedNova(CFG)):
        alone = _final(make(), system=system)
        under = _final(wrapped(make()), system=system)
        assert _gap(alone, fedavg) > 1e-3  # the algorithm really differs from FedAvg ...
        assert _gap(under, alone) < 1e-5  # ... and stays itself when wrapped (was: = FedAvg)


def test_fedbn_keeps_its_layers_under_secure_aggregation_and_dp() -> None:
    sites = _bn_sites()
    plain = _final(FedBN(CFG), BNNet(), sites)
    secure = _final(SecureAggregation(FedBN(CFG), clip=50.0, threshold=2), BNNet(), sites)
    # evaluated with each hospital's own BN layers (personal_state is forwarded)
    assert np.allclose(plain.to_dataframe()["auroc"], secure.to_dataframe()["auroc"], atol=1e-6)
    start = BNNet().state_dict()
    for strat in (DPFedAvg(FedBN(CFG), noise_multiplier=1.0, clip_norm=0.5),
                  BudgetGuard(DPFedAvg(FedBN(CFG), noise_multiplier=1.0, clip_norm=0.5),
                              PrivacyBudget(1e3, 1e-5))):
        h = _final(strat, BNNet(), sites)
        for k in ("bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"):
            assert torch.equal(h.final_state[k], start[k]), f"{k} was averaged or noised"
        frame = h.aggregation_frame("central_dp")
        assert (frame["unnoised_releases"].map(len) == 0).all()


def test_dp_fedavg_follows_the_inner_strategys_weighting() -> None:
    weighted = _final(fl.FedAvg(CFG))
    dp = _final(DPFedAvg(fl.FedAvg(CFG), noise_multiplier=0.0, clip_norm=1e9))
    assert _gap(dp, weighted) == 0.0  # was: silently unweighted
    with pytest.raises(ValueError, match="disagrees with the inner strategy"):
        DPFedAvg(fl.FedAvg(CFG), noise_multiplier=1.0, clip_norm=1.0, weighted=False)


@pytest.mark.parametrize("server", [lambda: FedAvgM(CFG, momentum=0.9),
                                    lambda: FedAdam(CFG, server_lr=0.1)])
def test_an_aborted_secure_round_does_not_move_the_model(server) -> None:  # noqa: ANN001
    strat = SecureAggregation(server(), clip=20.0, threshold=3)
    clients = hospitals()
    model = mlp()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    strat.start(state, clients, model=model)
    ups = [c.fit(mlp(), state, CFG, seed=c.cid) for c in clients]
    first = strat.aggregate_round(1, state, ups)  # everyone reports: the optimiser moves
    assert first.aborted is None
    inner = strat.inner
    moments = {k: v.clone() for k, v in (getattr(inner, "velocity", None) or inner.m).items()}
    out = strat.aggregate_round(2, first.state, ups[:2], instructed=3)  # 2 < t = 3
    assert out.aborted and "fewer than t = 3" in out.aborted
    assert all(torch.equal(out.state[k], first.state[k]) for k in state)
    after = getattr(inner, "velocity", None) or inner.m
    assert all(torch.equal(after[k], moments[k]) for k in moments)  # momentum did not move


def test_the_weight_coordinate_cannot_wrap() -> None:
    big = [fl.Client(cid=i, train=TensorDataset(torch.randn(30_000, 2),
                                               torch.zeros(30_000).long())) for i in range(3)]
    strat = SecureAggregation(fl.FedAvg(fl.TrainConfig(steps=1)), clip=0.01, bits=16,
                              max_weight=30_000)
    with pytest.raises(CompositionError, match="would wrap around. Use bits >= 18"):
        strat.start({}, big)


def test_dp_never_noises_batchnorm_statistics() -> None:
    with pytest.raises(CompositionError, match="BatchNorm running statistics"):
        _final(DPFedAvg(fl.FedAvg(CFG), noise_multiplier=1.0, clip_norm=1.0), BNNet(),
               _bn_sites())
    with pytest.raises(CompositionError, match="BatchNorm running statistics"):
        _final(SecureAggregation(fl.FedAvg(CFG, weighted=False), threshold=2, clip=50.0,
                                 transform=DistributedGaussian(1.0, 1.0)), BNNet(), _bn_sites())
    # opt-in: summed un-noised, listed as a release no epsilon covers; the variance stays > 0
    h = _final(DPFedAvg(fl.FedAvg(CFG), noise_multiplier=5.0, clip_norm=0.1,
                        buffers="release"), BNNet(), _bn_sites(),
               release_unaccounted=("test_metrics",))
    assert bool((h.final_state["bn.running_var"] > 0).all())
    flagged = {r.quantity for r in h.release_ledger.unaccounted()}
    assert flagged == {"sum of BatchNorm statistics", "test metrics"}
    assert np.isfinite(h.to_dataframe()["auroc"]).all()
    released = h.aggregation_frame("central_dp")["unnoised_releases"].iloc[-1]
    assert released == ["bn.running_mean", "bn.running_var"]
    # with the noise off, the released buffers are the exact weighted mean (= plain FedAvg)
    exact = _final(DPFedAvg(fl.FedAvg(CFG), noise_multiplier=0.0, clip_norm=1e9,
                            buffers="release"), BNNet(), _bn_sites())
    assert _gap(exact, _final(fl.FedAvg(CFG), BNNet(), _bn_sites())) < 1e-6


@given(unclipped=st.integers(0, 50), extra=st.integers(0, 50), joins_unclipped=st.booleans())
def test_adaptive_clipping_releases_a_count_of_sensitivity_one_half(
        unclipped: int, extra: int, joins_unclipped: bool) -> None:
    # TF Privacy's estimator: each hospital adds 1[norm <= C] - 1/2. Whoever joins, the
    # released (pre-noise) statistic moves by exactly 1/2: the sensitivity the noise assumes.
    from fedlearn.aggregators.dp import centred_count

    n = unclipped + extra
    before = centred_count(unclipped, n)
    after = centred_count(unclipped + int(joins_unclipped), n + 1)
    assert abs(after - before) == 0.5


def test_adaptive_clipping_noise_is_calibrated_for_the_centred_count() -> None:
    # with sigma_b = m/20 the update's share of z follows Andrew et al.'s formula, and the
    # estimate of the unclipped fraction is unbiased (mean over many noisy rounds)
    k = 40
    ups = [fl.ClientUpdate(cid=i, delta={"w": torch.full((4,), 0.1 * (i + 1))}, num_examples=5)
           for i in range(k)]
    fracs = []
    for rnd in range(1, 301):
        dp = DPFedAvg(fl.FedAvg(CFG, weighted=False), noise_multiplier=0.5, clip_norm=1.0,
                      adaptive=fl.aggregators.AdaptiveClipping(lr=1e-9), seed=rnd)
        dp.start({}, [fl.Client(cid=i, train=blobs(5)) for i in range(k)])
        res = dp.aggregate_round(rnd, {"w": torch.zeros(4)}, ups)
        fracs.append(res.measurements["central_dp"]["unclipped_fraction_noised"])
    true = sum(float(u.delta["w"].norm()) <= 1.0 for u in ups) / k  # norms 0.2 i <= 1
    assert abs(np.mean(fracs) - true) < 4 * (k / 20) / k / np.sqrt(300)


def test_refusals_say_why() -> None:
    class OneAtATime(fl.FedAvg):
        single_update = True
        name = "Cyclic"

    with pytest.raises(CompositionError, match="one hospital's update per round"):
        SecureAggregation(OneAtATime(CFG))
    with pytest.raises(CompositionError, match="one hospital's update per round"):
        DPFedAvg(OneAtATime(CFG), noise_multiplier=1.0, clip_norm=1.0)

    class Median(Aggregator):  # a rule that must read every update (issue 18's kind)
        needs_individual = True

        def aggregate(self, contributions, info):  # noqa: ANN001, ANN201
            raise AssertionError("never reached")

    med = fl.FedAvg(CFG)
    med.aggregator = Median()
    with pytest.raises(CompositionError, match="secure aggregation reveals only the sum"):
        SecureAggregation(med)
    with pytest.raises(CompositionError, match="DistributedGaussian"):
        DPFedAvg(SecureAggregation(fl.FedAvg(CFG)), noise_multiplier=1.0, clip_norm=1.0)
    with pytest.raises(CompositionError, match="secure aggregation hides"):
        SecureAggregation(DPFedAvg(fl.FedAvg(CFG), noise_multiplier=1.0, clip_norm=1.0))
    with pytest.raises(CompositionError, match="secure aggregation hides"):
        CentralDP(Secure(), noise_multiplier=1.0, clip_norm=1.0)
    with pytest.raises(CompositionError, match="momentum=0"):
        SecureAggregation(FedNova(fl.TrainConfig(lr=0.1, momentum=0.9)))
    with pytest.raises(CompositionError, match="weighted=False"):
        SecureAggregation(fl.FedAvg(CFG), transform=DistributedGaussian(1.0, 1.0))
    with pytest.raises(CompositionError, match="every round would abort"):
        _final(SecureAggregation(fl.FedAvg(CFG), threshold=10))
    with pytest.raises(ValueError, match="clip must be a finite number > 0"):
        SecureAggregation(fl.FedAvg(CFG), clip=-1)


def test_every_round_aborting_is_reported() -> None:
    h = _final(SecureAggregation(fl.FedAvg(CFG), threshold=3),
               system=SystemModel(step_budgets={0: 0}))  # hospital 0 never reports: 2 < 3
    assert all(r.get("aborted") for r in h.rounds)
    assert h.stopped and "every round aborted" in h.stopped and "fewer than t = 3" in h.stopped


def test_no_examples_at_all_aborts_with_a_reason() -> None:
    strat = SecureAggregation(fl.FedAvg(CFG), threshold=2)
    clients = hospitals()
    strat.start({"w": torch.zeros(2)}, clients)
    ups = [fl.ClientUpdate(cid=c.cid, delta={"w": torch.ones(2)}, num_examples=0)
           for c in clients]
    out = strat.aggregate_round(1, {"w": torch.zeros(2)}, ups)
    assert out.aborted and "no hospital trained" in out.aborted


def test_mismatched_updates_and_overflowing_steps_are_refused() -> None:
    bad = [fl.ClientUpdate(0, {"w": torch.zeros(2, 5)}, 3),
           fl.ClientUpdate(1, {"w": torch.zeros(5, 2)}, 3)]
    with pytest.raises(fl.InvalidUpdateError, match=r"shape \(5, 2\)"):
        fl.FedAvg().combine(1, bad)
    broadcast = [fl.ClientUpdate(0, {"w": torch.zeros(2, 5)}, 3),
                 fl.ClientUpdate(1, {"w": torch.zeros(5)}, 3)]
    with pytest.raises(fl.InvalidUpdateError, match="shape"):
        fl.FedAvg().combine(1, broadcast)
    huge = [fl.ClientUpdate(i, {"w": torch.full((3,), 3e38)}, 1) for i in range(2)]
    with pytest.raises(fl.InvalidUpdateError, match="round 4: .*entry 'w' non-finite"):
        fl.FedAvg(server_lr=2.0).aggregate_round(4, {"w": torch.zeros(3)}, huge)
