"""The vectorised engine computes what the sequential one does, for every client at once.

Reference: the sequential engine (``Client.fit`` = ``local_train``, i.e. torch.optim on one
client at a time). Same seeds give the same batch order, so weights, losses and step counts
must agree to float rounding; masked (padded) steps must change nothing at all.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import TensorDataset

import fedlearn as fl
from fedlearn.algorithms import FedAdam, FedAvgM, FedBN, FedNova, FedProx, Scaffold
from fedlearn.client import _batches
from fedlearn.compression import Compressed, TopK
from fedlearn.engine import EngineUnsupportedError, SequentialEngine, resolve_engine
from fedlearn.system import SystemModel
from fedlearn.utils import derive_seed, torch_generator
from fedlearn.vectorized import (
    VectorizedEngine,
    adam_step_,
    batch_schedule,
    derive_seeds,
    sgd_step_,
)

SIZES = (5, 17, 32, 9)  # unequal: different step counts and a smaller last batch


def make_clients(sizes=SIZES, features: int = 6, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [fl.Client(i, TensorDataset(torch.randn(n, features, generator=g),
                                       torch.randint(0, classes, (n,), generator=g)))
            for i, n in enumerate(sizes)]


def run_both(strategy_factory, model_name: str = "mlp", rounds: int = 2, **kw):
    out = {}
    for engine in ("sequential", "vectorized"):
        m = fl.make_model(model_name, in_features=6, num_classes=3, seed=0)
        h = fl.run(m, make_clients(), strategy_factory(), rounds=rounds, eval_every=0,
                   progress=False, engine=engine, **kw)
        out[engine] = (m.state_dict(), h)
    return out


def max_diff(a, b) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


CASES = {
    "fedavg": lambda: fl.FedAvg(fl.TrainConfig(batch_size=4, lr=0.1)),
    "fedprox_momentum": lambda: FedProx(fl.TrainConfig(batch_size=4, lr=0.1, momentum=0.9,
                                                       epochs=2), mu=0.5),
    "adam_steps_wd": lambda: fl.FedAvg(fl.TrainConfig(steps=7, batch_size=8, lr=0.01,
                                                      optimizer="adam", weight_decay=0.01)),
    "fedsgd": lambda: fl.FedSGD(lr=0.3),
    "clip_classweights": lambda: fl.FedAvg(fl.TrainConfig(batch_size=4, lr=0.5,
                                                          max_grad_norm=0.1,
                                                          class_weights=(1.0, 2.0, 0.5))),
    "fedadam_server": lambda: FedAdam(fl.TrainConfig(batch_size=4, lr=0.1)),
    "fedavgm_wd_momentum": lambda: FedAvgM(fl.TrainConfig(batch_size=3, lr=0.05, momentum=0.5,
                                                          weight_decay=0.1)),
    "fednova": lambda: FedNova(fl.TrainConfig(batch_size=4, lr=0.1, momentum=0.9)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_final_weights_match_sequential(case: str) -> None:
    res = run_both(CASES[case])
    (ws, hs), (wv, hv) = res["sequential"], res["vectorized"]
    assert max_diff(ws, wv) < 2e-6
    for rs, rv in zip(hs.rounds, hv.rounds, strict=True):
        assert rs["participants"] == rv["participants"]
        assert rs["num_examples"] == rv["num_examples"]
        assert rs["bytes_up"] == rv["bytes_up"]
        assert rv["train_loss"] == pytest.approx(rs["train_loss"], rel=1e-5)


@pytest.mark.parametrize("case", ["fedprox_momentum", "adam_steps_wd", "clip_classweights"])
def test_every_update_matches_sequential(case: str) -> None:
    """Per client: same cid, examples, step count and loss, and a delta equal to rounding."""
    clients = make_clients()
    model = fl.make_model("mlp", in_features=6, num_classes=3, seed=1)
    strategy = CASES[case]()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ins = strategy.configure_round(1, clients)
    seq = SequentialEngine().fit_round(model, clients, ins, state, rnd=1, seed=3)
    vec_engine = VectorizedEngine()
    vec_engine.prepare(model, clients, strategy)
    vec = vec_engine.fit_round(model, clients, ins, state, rnd=1, seed=3)
    assert [u.cid for u in vec] == [u.cid for u in seq]
    for s, v in zip(seq, vec, strict=True):
        assert v.num_examples == s.num_examples
        assert v.metrics["num_steps"] == s.metrics["num_steps"]
        assert v.metrics["train_loss"] == pytest.approx(s.metrics["train_loss"], rel=1e-5)
        assert list(v.delta) == list(s.delta)
        assert max_diff(s.delta, v.delta) < 1e-6
        assert v.nbytes == s.nbytes
    if strategy.config.steps is None:  # the sizes really did give unequal step counts
        assert len({u.metrics["num_steps"] for u in seq}) > 1


def test_cnn_and_subset_sampling_match_sequential() -> None:
    g = torch.Generator().manual_seed(0)
    clients = [fl.Client(i, TensorDataset(torch.randn(n, 1, 28, 28, generator=g),
                                          torch.randint(0, 2, (n,), generator=g)))
               for i, n in enumerate((12, 7, 20, 3, 9))]
    res = {}
    for engine in ("sequential", "vectorized"):
        m = fl.make_model("cnn", seed=0, in_channels=1, num_classes=2)
        fl.run(m, clients, FedProx(fl.TrainConfig(batch_size=4, lr=0.05, momentum=0.9), mu=0.1),
               rounds=2, fraction=0.6, eval_every=0, progress=False, engine=engine, seed=5)
        res[engine] = m.state_dict()
    assert max_diff(res["sequential"], res["vectorized"]) < 1e-5


def test_system_model_and_process_update() -> None:
    """Truncated step budgets (per-client configs) and a process_update wrapper (compression)."""
    system = SystemModel(step_budgets={0: 1, 2: 3}, dropout=0.2, seed=1)
    res = run_both(lambda: Compressed(fl.FedAvg(fl.TrainConfig(batch_size=4, lr=0.1)),
                                      TopK(0.5)), system=system, rounds=4)
    (ws, hs), (wv, hv) = res["sequential"], res["vectorized"]
    assert max_diff(ws, wv) < 2e-6
    assert [r["truncated"] for r in hs.rounds] == [r["truncated"] for r in hv.rounds]
    assert [r["bytes_up"] for r in hs.rounds] == [r["bytes_up"] for r in hv.rounds]


def _stacked(k: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(k, 3, 4, generator=g), "b": torch.randn(k, 3, generator=g)}


@pytest.mark.parametrize("momentum,wd", [(0.9, 0.0), (0.9, 0.1), (0.0, 0.1)])
def test_masked_sgd_step_leaves_weights_and_momentum_unchanged(momentum: float,
                                                               wd: float) -> None:
    """Client 1 is masked; its gradient is a FedProx-like pull, nonzero, and its momentum
    buffer nonzero, so an unmasked step *would* move it. Client 0 steps as torch.optim.SGD."""
    cfg = fl.TrainConfig(lr=0.1, momentum=momentum, weight_decay=wd)
    p, g, buf = _stacked(seed=0), _stacked(seed=1), _stacked(seed=2)
    p0 = {k: v.clone() for k, v in p.items()}
    b0 = {k: v.clone() for k, v in buf.items()}
    sgd_step_(p, buf, g, torch.tensor([True, False]), cfg)
    for k in p:
        assert torch.equal(p[k][1], p0[k][1])
        assert torch.equal(buf[k][1], b0[k][1])
        assert not torch.equal(p[k][0], p0[k][0])
    # client 0 against torch.optim.SGD with the same momentum buffer
    ref = {k: torch.nn.Parameter(p0[k][0].clone()) for k in p}
    opt = torch.optim.SGD(ref.values(), lr=0.1, momentum=momentum, weight_decay=wd)
    for k in ref:
        ref[k].grad = g[k][0].clone()
        if momentum:
            opt.state[ref[k]]["momentum_buffer"] = b0[k][0].clone()
    opt.step()
    for k in ref:
        assert torch.allclose(p[k][0], ref[k].detach(), atol=1e-7)


def test_masked_adam_step_leaves_weights_moments_and_count_unchanged() -> None:
    cfg = fl.TrainConfig(lr=0.01, optimizer="adam", weight_decay=0.1)
    p, g = _stacked(seed=0), _stacked(seed=1)
    m, v = _stacked(seed=2), {k: x.abs() for k, x in _stacked(seed=3).items()}
    step = torch.tensor([2.0, 2.0], dtype=torch.float64)
    before = [{k: x.clone() for k, x in d.items()} for d in (p, m, v)]
    state = (m, v, step)
    adam_step_(p, state, g, torch.tensor([True, False]), cfg)
    for d, d0 in zip((p, m, v), before, strict=True):
        for k in d:
            assert torch.equal(d[k][1], d0[k][1])
            assert not torch.equal(d[k][0], d0[k][0])
    assert step.tolist() == [3.0, 2.0]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), b=st.one_of(st.none(), st.integers(1, 50)),
       epochs=st.integers(1, 3), steps=st.one_of(st.none(), st.integers(0, 12)),
       seed=st.integers(0, 2**40))
def test_batch_schedule_is_local_trains_order(n, b, epochs, steps, seed) -> None:
    cfg = fl.TrainConfig(epochs=epochs, steps=steps, batch_size=b)
    gen = torch_generator(seed)
    ref: list[torch.Tensor] = []
    while True:  # the loop of fedlearn.client.local_train
        if steps is None and len(ref) >= epochs * -(-n // (b or n)):
            break
        if steps is not None and len(ref) >= steps:
            break
        ref.extend(_batches(n, b, gen))
    ref = ref[:steps] if steps is not None else ref
    idx, sizes = batch_schedule(n, cfg, torch_generator(seed))
    assert len(sizes) == len(ref)
    for row, size, r in zip(idx, sizes, ref, strict=True):
        assert row[:size].tolist() == r.tolist()


@settings(max_examples=50, deadline=None)
@given(prefix=st.lists(st.integers(0, 2**64), min_size=0, max_size=5),
       last=st.lists(st.integers(0, 2**63 - 1), min_size=1, max_size=8))
def test_derive_seeds_is_derive_seed(prefix, last) -> None:
    assert derive_seeds(prefix, np.array(last, dtype=np.int64)).tolist() == \
        [derive_seed(*prefix, x) for x in last]


def test_sequential_engine_is_client_fit() -> None:
    clients = make_clients()
    model = fl.make_model("mlp", in_features=6, num_classes=3, seed=0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    strategy = CASES["fedprox_momentum"]()
    ins = strategy.configure_round(2, clients)
    got = SequentialEngine().fit_round(model, clients, ins, state, rnd=2, seed=4)
    for c, u in zip(clients, got, strict=True):
        ref = c.fit(model, state, ins[c.cid].config, seed=derive_seed(4, 2, c.cid),
                    hooks=ins[c.cid].hooks)
        assert all(torch.equal(ref.delta[k], u.delta[k]) for k in ref.delta)


# ------------------------------------------------------------------------------- refusals


def _refused(model, clients, strategy, match: str) -> None:
    with pytest.raises(EngineUnsupportedError, match=match):
        fl.run(model, clients, strategy, rounds=1, eval_every=0, progress=False,
               engine="vectorized")


def test_refuses_batchnorm_dropout_and_hooks() -> None:
    cs = make_clients()
    g = torch.Generator().manual_seed(0)
    img = [fl.Client(i, TensorDataset(torch.randn(4, 1, 28, 28, generator=g),
                                      torch.randint(0, 2, (4,), generator=g))) for i in range(2)]
    _refused(fl.make_model("cnn", seed=0, norm="batch"), img, fl.FedAvg(), "buffers.*BatchNorm")
    _refused(fl.make_model("mlp", in_features=6, num_classes=3, dropout=0.5, seed=0), cs,
             fl.FedAvg(), "dropout")
    mlp = fl.make_model("mlp", in_features=6, num_classes=3, seed=0)
    _refused(mlp, cs, Scaffold(fl.TrainConfig(batch_size=4)), "ScaffoldHook.*sequential")
    _refused(fl.make_model("cnn", seed=0, norm="group", groups=2), img, FedBN(), "FedBNHook")


def test_refuses_opacus_clients_and_custom_losses() -> None:
    from fedlearn.privacy import dp_clients_from

    cs = make_clients()
    mlp = fl.make_model("mlp", in_features=6, num_classes=3, seed=0)
    _refused(mlp, dp_clients_from(cs, noise_multiplier=1.0), fl.FedAvg(), "DPClient.*Opacus")
    cs[1].loss_fn = torch.nn.functional.nll_loss
    _refused(mlp, cs, fl.FedAvg(), "client 1.*loss_fn")


def test_engine_names() -> None:
    assert isinstance(resolve_engine("vectorized"), VectorizedEngine)
    assert isinstance(resolve_engine("sequential"), SequentialEngine)
    with pytest.raises(ValueError, match="engine must be one of.*'parallel'"):
        resolve_engine("parallel")
    with pytest.raises(TypeError, match="fit_round"):
        resolve_engine(object())  # type: ignore[arg-type]
