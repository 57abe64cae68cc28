"""Client-level DP-FedAvg: clipping, noise of std z*C/m, Poisson sampling, accounting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fedlearn as fl
from fedlearn.privacy import AdaptiveClipping, DPFedAvg, clip_update
from fedlearn.privacy.accounting import rdp_epsilon
from fedlearn.update import ClientUpdate
from fedlearn.utils import state_norm

from .helpers import blobs

CFG = fl.TrainConfig(steps=3, batch_size=8, lr=0.1)


def _hospitals(k: int = 4) -> list[fl.Client]:
    return [fl.Client(cid=i, train=blobs(20 + 15 * i, seed=i), test=blobs(20, seed=50 + i))
            for i in range(k)]


@settings(max_examples=80, deadline=None)
@given(shapes=st.lists(st.tuples(st.integers(1, 6), st.integers(1, 6)), min_size=1, max_size=4),
       scale=st.floats(1e-6, 1e6), clip=st.floats(1e-4, 1e4), seed=st.integers(0, 2**31 - 1))
def test_clipped_update_norm_never_exceeds_c(shapes, scale, clip, seed):
    g = torch.Generator().manual_seed(seed)
    delta = {f"p{i}": scale * torch.randn(*s, generator=g) for i, s in enumerate(shapes)}
    clipped, norm = clip_update(delta, clip)
    assert norm == pytest.approx(state_norm(delta))
    assert state_norm(clipped) <= clip * (1 + 1e-6)  # float32 rounding only
    if norm <= clip:
        assert all(torch.equal(clipped[k], delta[k]) for k in delta)  # small updates untouched
    else:  # direction kept
        cos = float(torch.nn.functional.cosine_similarity(
            torch.cat([v.flatten() for v in clipped.values()]).double(),
            torch.cat([v.flatten() for v in delta.values()]).double(), dim=0))
        assert cos == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("weighted", [True, False])
def test_without_noise_and_clipping_it_is_exactly_fedavg(weighted):
    clients = _hospitals()
    runs = {}
    for name, strategy in {
        "plain": fl.FedAvg(CFG, weighted=weighted),
        "dp": DPFedAvg(fl.FedAvg(CFG, weighted=weighted), noise_multiplier=0.0, clip_norm=1e9,
                       client_rate=1.0),
    }.items():
        model = fl.make_model("mlp", in_features=5, hidden=(6,), seed=0)
        runs[name] = fl.run(model, clients, strategy, rounds=3, seed=2, progress=False,
                            release_unaccounted=("train_loss", "test_metrics"))
    a, b = runs["plain"].final_state, runs["dp"].final_state
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert runs["dp"].final("accuracy") == runs["plain"].final("accuracy")


def _fixed_updates(k: int = 5) -> list[ClientUpdate]:
    g = torch.Generator().manual_seed(0)
    return [ClientUpdate(cid=i, delta={"w": torch.randn(3, 4, generator=g),
                                       "b": torch.randn(4, generator=g)}, num_examples=10 + i)
            for i in range(k)]


def test_noise_std_on_the_mean_is_z_c_over_m():
    z, c, k = 1.5, 0.8, 5
    ups = _fixed_updates(k)
    dp = DPFedAvg(fl.FedAvg(CFG, weighted=False), noise_multiplier=z, clip_norm=c,
                  client_rate=1.0, seed=7)
    dp.start({}, [fl.Client(cid=i, train=blobs(10)) for i in range(k)])
    exact = {key: sum(clip_update(u.delta, c)[0][key].double() for u in ups) / k
             for key in ups[0].delta}
    draws = []
    for rnd in range(1, 801):
        out = dp.combine(rnd, ups)
        draws.append(torch.cat([(out[key].double() - exact[key]).flatten() for key in out]))
    noise = torch.stack(draws)
    assert float(noise.std()) == pytest.approx(z * c / k, rel=0.03)  # 12,800 draws
    assert float(noise.mean()) == pytest.approx(0.0, abs=0.01)
    assert len(dp.accountant.history) == 1 and dp.accountant.history[0][2] == 800


def test_noise_std_with_size_weights_uses_w_max():
    z, c, k = 1.0, 0.5, 5
    ups = _fixed_updates(k)
    clients = [fl.Client(cid=i, train=blobs(10 + i)) for i in range(k)]
    dp = DPFedAvg(fl.FedAvg(CFG), noise_multiplier=z, clip_norm=c, weighted=True, seed=1)
    dp.start({}, clients)
    w = np.arange(10, 10 + k)
    draws = [dp.combine(r, ups)["w"].double().flatten() for r in range(1, 401)]
    expected = z * c * w.max() / w.sum()
    assert float(torch.stack(draws).std(dim=0).mean()) == pytest.approx(expected, rel=0.05)


def test_poisson_client_sampling_and_the_accountant():
    clients = _hospitals(10)
    dp = DPFedAvg(fl.FedAvg(CFG, weighted=False), noise_multiplier=1.0, clip_norm=1.0,
                  client_rate=0.3, seed=3, delta=1e-5)
    model = fl.make_model("logreg", in_features=5, seed=0)
    hist = fl.run(model, clients, dp, rounds=40, eval_every=0, progress=False)
    log = hist.aggregation_frame("central_dp")
    counts = list(log["participants"])
    assert np.mean(counts) == pytest.approx(3.0, abs=0.6)
    assert len(set(counts)) > 2  # Poisson: the number of hospitals varies
    assert dp.epsilon() == pytest.approx(rdp_epsilon(1.0, 0.3, 40, 1e-5), rel=1e-6)
    assert list(log["epsilon"]) == sorted(log["epsilon"])
    assert len(hist.rounds) == 40 and len(log) == 40


def test_an_empty_draw_still_releases_noise_and_touches_no_data():
    clients = _hospitals(3)
    dp = DPFedAvg(fl.FedAvg(CFG, weighted=False), noise_multiplier=1.0, clip_norm=1.0,
                  client_rate=0.05, seed=0)
    model = fl.make_model("logreg", in_features=5, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hist = fl.run(model, clients, dp, rounds=3, eval_every=0, progress=False)
    log = hist.aggregation_frame("central_dp")
    assert (log["participants"] == 0).any(), "seed 0 should give an empty round at q = 0.05"
    empty = [r for r in hist.rounds if not r["participants"]]
    assert empty and all(r["num_examples"] == 0 for r in empty)  # nobody trained
    assert len(hist.rounds) == 3 and len(dp.accountant.history) == 1
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())  # noise


def test_client_sampling_must_be_left_to_the_wrapper():
    dp = DPFedAvg(fl.FedAvg(CFG, weighted=False), noise_multiplier=1.0, clip_norm=1.0,
                  client_rate=0.5)
    model = fl.make_model("logreg", in_features=5, seed=0)
    with pytest.raises(ValueError, match="fraction=1.0"):
        fl.run(model, _hospitals(4), dp, rounds=1, fraction=0.5, progress=False)


def test_adaptive_clipping_tracks_the_median_update_norm():
    k = 40
    g = torch.Generator().manual_seed(0)
    norms = torch.linspace(0.5, 2.0, k)  # median 1.25
    ups = []
    for i in range(k):
        d = torch.randn(8, generator=g)
        ups.append(ClientUpdate(cid=i, delta={"w": d / d.norm() * norms[i]}, num_examples=5))
    dp = DPFedAvg(fl.FedAvg(CFG, weighted=False), noise_multiplier=0.5, clip_norm=0.1,
                  client_rate=1.0, adaptive=AdaptiveClipping(target_quantile=0.5, lr=0.2), seed=0)
    dp.start({}, [fl.Client(cid=i, train=blobs(5)) for i in range(k)])
    for rnd in range(1, 80):
        dp.combine(rnd, ups)
    assert 1.0 < dp.clip_norm < 1.5
    # the count's noise is paid for: the update gets slightly less noise than z
    sb = 1.0 * k / 20
    assert dp.update_noise_multiplier == pytest.approx((0.5 ** -2 - (2 * sb) ** -2) ** -0.5)
    assert dp.update_noise_multiplier > 0.5


def test_wrapper_delegates_the_server_step():
    clients = _hospitals()
    opt = fl.FedAvg(CFG, server_lr=0.5)
    dp = DPFedAvg(opt, noise_multiplier=0.0, clip_norm=1e9)
    model = fl.make_model("logreg", in_features=5, seed=0)
    a = fl.run(model, clients, dp, rounds=2, eval_every=0, progress=False).final_state
    model = fl.make_model("logreg", in_features=5, seed=0)
    b = fl.run(model, clients, opt, rounds=2, eval_every=0, progress=False).final_state
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert dp.name == "DP-FedAvg"
