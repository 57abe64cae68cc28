"""The composition matrix: every algorithm under every aggregator does what each part says.

Rows: FedAvg, FedProx, SCAFFOLD, FedAvgM, FedAdam, FedYogi, FedAdagrad, FedBN, FedNova, and
the personalised methods FedPer and Ditto (whose hospitals' own models, kept in
``client.personal``, are compared like FedBN's layers; FedRep, FENDA-FL, APFL and FineTune, on
the same code paths, join the central-DP column only).
Columns: secure aggregation, central DP, distributed DP inside secure aggregation, top-k
compression (with error feedback) inside secure aggregation. With the noise off, each wrapped
run must equal its reference run every round:

* the reference of ``Secure`` and ``CentralDP`` is the algorithm in the clear;
* the reference of ``DistributedDP(Secure)`` is the algorithm in the clear, unweighted;
* the reference of ``Compress(Secure)`` is the same compressor applied in the clear.

Compared every round: the global weights (against the codec's quantisation bound from its
formula, which must itself be tiny), SCAFFOLD's server and client control variates, FedBN's
personal layers, and the History (participants, training loss, bytes, evaluations). Central DP
with z = 0, C = inf and q = 1 is required to be *bit-identical*. Hospital budgets differ
(1 to 6 local steps) so that FedNova's normalisation matters.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import nn

import fedlearn as fl
from fedlearn.algorithms import (
    APFL,
    Ditto,
    FedAdagrad,
    FedAdam,
    FedAvgM,
    FedBN,
    FedNova,
    FedPer,
    FedProx,
    FedRep,
    FedYogi,
    FendaFL,
    FendaNet,
    FineTune,
    PersonalStrategy,
    Scaffold,
)
from fedlearn.compression import Compressed, TopK
from fedlearn.privacy import DPFedAvg
from fedlearn.secagg import DistributedGaussian, SecureAggregation
from fedlearn.system import SystemModel

from .helpers import blobs

SIZES = [24, 40, 16, 32]
BUDGETS = {0: 1, 1: 6, 2: 3, 3: 4}  # unequal local steps (FedNova's case)
CFG = fl.TrainConfig(steps=6, batch_size=8, lr=0.1)
ROUNDS = 3
CLIP = 20.0  # fixed-point range: no entry of a delta or control change comes near it
REL_TOL = 1e-5  # the bound on the quantisation error relative to the update size

ALGORITHMS: dict[str, Callable[[bool], fl.Strategy]] = {
    "FedAvg": lambda w: fl.FedAvg(CFG, weighted=w),
    "FedProx": lambda w: FedProx(CFG, mu=0.1, weighted=w),
    "SCAFFOLD": lambda w: Scaffold(CFG, weighted=w),
    "FedAvgM": lambda w: FedAvgM(CFG, momentum=0.9, weighted=w),
    "FedAdam": lambda w: FedAdam(CFG, server_lr=0.05, weighted=w),
    "FedYogi": lambda w: FedYogi(CFG, server_lr=0.05, weighted=w),
    "FedAdagrad": lambda w: FedAdagrad(CFG, server_lr=0.05, weighted=w),
    "FedBN": lambda w: FedBN(CFG, weighted=w),
    "FedNova": lambda w: FedNova(CFG, weighted=w),
    "FedPer": lambda w: FedPer(CFG, head=("net.2.",), weighted=w),
    "Ditto": lambda w: Ditto(CFG, lam=0.5, weighted=w),
}
# FedPer (personal keys kept out of the contribution) and Ditto (a personal model trained by a
# hook) are the two mechanisms; the methods below reach the aggregators by the same code paths
# (FedRep and FENDA-FL are FedPer with another schedule or prefixes, APFL a hook like Ditto's,
# FineTune sends FedAvg's contributions), so they join the cheapest column only, to bound the
# suite's time
SAME_PATH: dict[str, Callable[[bool], fl.Strategy]] = {
    "FedRep": lambda w: FedRep(CFG, head=("net.2.",), head_steps=2, weighted=w),
    "APFL": lambda w: APFL(CFG, alpha=0.5, learn_alpha=True, weighted=w),
    "FineTune": lambda w: FineTune(CFG, steps=4, weighted=w),
    "FENDA-FL": lambda w: FendaFL(CFG, weighted=w),
}


class BNNet(nn.Module):
    """A tiny MLP with a BatchNorm layer, for FedBN (and the buffer rules)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(5, 6)
        self.bn = nn.BatchNorm1d(6)
        self.fc2 = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.bn(self.fc1(x))))


def clients() -> list[fl.Client]:
    return [fl.Client(cid=i, train=blobs(n, seed=i, shift=0.5 * i), test=blobs(30, seed=50 + i))
            for i, n in enumerate(SIZES)]


def model_for(alg: str) -> nn.Module:
    if alg == "FedBN":
        return BNNet()
    if alg == "FENDA-FL":
        return FendaNet(5, hidden=4, seed=0)
    return fl.make_model("mlp", in_features=5, hidden=(6,), seed=0)


def run(alg: str, strategy: fl.Strategy) -> tuple[fl.History, list[dict[str, torch.Tensor]],
                                                  list[dict], fl.Strategy]:
    """A run, with the global weights and the algorithm's own state after every round."""
    states, extra = [], []
    hospitals = clients()

    def snapshot(rnd: int, model: nn.Module, history: fl.History) -> None:
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        core = strategy
        while isinstance(core, fl.StrategyWrapper):
            core = core.inner
        if isinstance(core, Scaffold):
            extra.append({"c": {k: v.clone() for k, v in core.c_global.items()},
                          "ci": {cid: {k: v.clone() for k, v in ci.items()}
                                 for cid, ci in core.client_controls.items()}})
        elif isinstance(core, FedBN):
            extra.append({cid: {k: v.clone() for k, v in bn.items()}
                          for cid, bn in core.local_bn.items()})
        elif isinstance(core, PersonalStrategy):  # what each hospital keeps, and uses
            state = model.state_dict()
            extra.append({c.cid: {"kept": _tensors(c.personal.get(core.name, {})),
                                  "uses": _tensors(core.personal_state(c.cid, state))}
                          for c in hospitals})

    hist = fl.run(model_for(alg), hospitals, strategy, rounds=ROUNDS, seed=1, progress=False,
                  callback=snapshot, system=SystemModel(step_budgets=BUDGETS),
                  release_unaccounted=("train_loss", "test_metrics"))  # compared across stacks
    return hist, states, extra, strategy


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max((float((a[k].double() - b[k].double()).abs().max()) for k in a
                if a[k].is_floating_point()), default=0.0)


def compare(alg: str, wrapped: tuple, reference: tuple, tol_of_round: Callable[[int], float],
            exact: bool = False) -> list[float]:
    """Assert the two runs agree every round; return the per-round weight differences."""
    (hw, sw, ew, _), (hr, sr, er, _) = wrapped, reference
    assert len(sw) == len(sr) == ROUNDS
    diffs = []
    prev = None
    for r, (a, b) in enumerate(zip(sw, sr, strict=True), start=1):
        d = max_diff(a, b)
        step = max_diff(b, prev) if prev is not None else max(
            float(v.abs().max()) for v in b.values() if v.is_floating_point())
        tol = 0.0 if exact else tol_of_round(r) + REL_TOL * step
        assert d <= tol, f"{alg} round {r}: weights differ by {d:.3g} > {tol:.3g}"
        diffs.append(d)
        prev = b
    for r, (x, y) in enumerate(zip(ew, er, strict=True), start=1):  # control variates / BN
        flat_x = _flatten(x)
        flat_y = _flatten(y)
        assert flat_x.keys() == flat_y.keys(), f"{alg} round {r}: different personal state"
        for k in flat_x:
            d = float((flat_x[k] - flat_y[k]).abs().max())
            tol = 0.0 if exact else tol_of_round(r) + REL_TOL * max(
                1.0, float(flat_y[k].abs().max()))
            assert d <= 1e3 * tol if not exact else d == 0, (alg, r, k, d)
    # History: who took part, what was sent, what was measured on the test sets
    assert [r["participants"] for r in hw.rounds] == [r["participants"] for r in hr.rounds]
    for a, b in zip(hw.rounds, hr.rounds, strict=True):
        assert math.isclose(a["train_loss"], b["train_loss"], rel_tol=1e-4, abs_tol=1e-6)
        assert "aborted" not in a
    ea, eb = hw.to_dataframe(), hr.to_dataframe()
    assert list(ea["test_set"]) == list(eb["test_set"])
    for col in ("auroc", "accuracy", "loss"):
        assert (ea[col] - eb[col]).abs().max() <= (0 if exact else 1e-3), (alg, col)
    return diffs


def _tensors(tree: dict) -> dict:
    """A copy of a hospital's kept state with numbers (APFL's alpha) as tensors."""
    return {k: _tensors(v) if isinstance(v, dict) else torch.as_tensor(v).detach().clone()
            for k, v in tree.items()}


def _flatten(tree: dict) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update({f"{k}/{kk}": vv for kk, vv in _flatten(v).items()})
        else:
            out[str(k)] = v.double()
    return out


def secure_bounds(hist: fl.History) -> Callable[[int], float]:
    """Per-round worst-case error of the mean, from the codec's formula (as measured)."""
    frame = hist.aggregation_frame("secure")
    assert (frame["clipped_fraction"] == 0).all(), "CLIP must bound every entry"
    # the mean's bound, times the server's largest step per unit of mean (lr 1, or Adam's
    # 1/tau-bounded step: a quantisation error e moves it by at most server_lr * e / tau)
    cum = frame["bound"].cumsum()
    return lambda r: float(cum.loc[r]) * 50.0


@pytest.mark.parametrize("alg", list(ALGORITHMS))
def test_secure_aggregation_equals_the_clear_sums(alg: str) -> None:
    ref = run(alg, ALGORITHMS[alg](True))
    wrapped = run(alg, SecureAggregation(ALGORITHMS[alg](True), clip=CLIP, threshold=2))
    frame = wrapped[0].aggregation_frame("secure")
    assert float(frame["bound"].max()) < 1e-7  # the formula's bound is tiny (32-bit ring)
    compare(alg, wrapped, ref, secure_bounds(wrapped[0]))


@pytest.mark.parametrize("alg", [*ALGORITHMS, *SAME_PATH])
def test_central_dp_with_the_noise_off_is_bit_identical(alg: str) -> None:
    make = ALGORITHMS.get(alg) or SAME_PATH[alg]
    ref = run(alg, make(True))
    wrapped = run(alg, DPFedAvg(make(True), noise_multiplier=0.0, clip_norm=1e12,
                                client_rate=1.0))
    frame = wrapped[0].aggregation_frame("central_dp")
    assert (frame["noise_std_on_sum"] == 0).all() and len(frame) == ROUNDS
    compare(alg, wrapped, ref, lambda r: 0.0, exact=True)


@pytest.mark.parametrize("alg", list(ALGORITHMS))
def test_distributed_dp_inside_secure_aggregation(alg: str) -> None:
    ref = run(alg, ALGORITHMS[alg](False))
    ddp = DistributedGaussian(clip_norm=1e12, noise_multiplier=0.0)
    wrapped = run(alg, SecureAggregation(ALGORITHMS[alg](False), clip=CLIP, threshold=2,
                                         transform=ddp))
    assert len(wrapped[0].aggregation_frame("distributed_dp")) == ROUNDS
    assert ddp.rounds == {1, 2, 3}
    compare(alg, wrapped, ref, secure_bounds(wrapped[0]))


@pytest.mark.parametrize("alg", list(ALGORITHMS))
def test_top_k_with_error_feedback_inside_secure_aggregation(alg: str) -> None:
    ref = run(alg, Compressed(ALGORITHMS[alg](True), TopK(fraction=0.3)))
    wrapped = run(alg, Compressed(SecureAggregation(ALGORITHMS[alg](True), clip=CLIP,
                                                    threshold=2), TopK(fraction=0.3)))
    assert wrapped[0].aggregation_frame("compress") is not None
    compare(alg, wrapped, ref, secure_bounds(wrapped[0]))
    # under masks the upload is the ring vector, whatever the compressor kept
    assert wrapped[0].rounds[0]["bytes_up"] > ref[0].rounds[0]["bytes_up"]


def test_the_matrix_really_distinguishes_the_algorithms() -> None:
    # a matrix that compared FedAvg with itself would pass for any bug: check the rows differ
    finals = {alg: run(alg, ALGORITHMS[alg](True))[1][-1] for alg in ("FedAvg", "SCAFFOLD",
                                                                       "FedNova", "FedAdam")}
    for alg in ("SCAFFOLD", "FedNova", "FedAdam"):
        assert max_diff(finals[alg], finals["FedAvg"]) > 1e-3, alg
