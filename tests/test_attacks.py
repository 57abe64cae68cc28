"""Harmful hospitals: each attack does exactly what it claims, and a defence can stop it."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import norm
from torch.utils.data import TensorDataset

import fedlearn as fl
from fedlearn import attacks as at
from fedlearn.aggregators.robust import Median
from fedlearn.errors import ConfigError

from .helpers import blobs

CFG = fl.TrainConfig(steps=4, batch_size=8, lr=0.1)


def hospitals(k: int = 5) -> list[fl.Client]:
    return [fl.Client(cid=i, train=blobs(40, seed=i), test=blobs(60, seed=30 + i),
                      name=f"H{i}") for i in range(k)]


def mlp() -> torch.nn.Module:
    return fl.make_model("mlp", in_features=5, hidden=(8,), seed=0)


def images(n: int = 20) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.rand(n, 1, 28, 28, generator=g) * 0.5,
                         (torch.arange(n) % 2).long())


def honest_and_attacked(attack: at.Attack) -> tuple[fl.ClientUpdate, fl.ClientUpdate]:
    c = hospitals(2)
    bad = at.compromise(c, {1: attack})[1]
    state = mlp().state_dict()
    return (c[1].fit(mlp(), state, CFG, seed=7), bad.fit(mlp(), state, CFG, seed=7))


def test_an_attack_on_a_hospital_that_does_not_exist_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"no hospital 7.*ids \[0, 1, 2\].*names"):
        at.compromise(hospitals(3), {7: at.SignFlip()})
    with pytest.raises(ConfigError, match="no hospital 'Nowhere'"):
        at.compromise(hospitals(3), {"Nowhere": at.SignFlip()})
    with pytest.raises(ConfigError, match="not a fedlearn.attacks.Attack"):
        at.compromise(hospitals(3), {1: "sign flip"})  # type: ignore[dict-item]


def test_compromise_by_name_keeps_ids_tests_and_other_hospitals() -> None:
    c = hospitals(3)
    out = at.compromise(c, {"H2": at.LabelFlip(1.0)})
    assert [x.cid for x in out] == [0, 1, 2] and out[0] is c[0] and out[1] is c[1]
    assert out[2].test is c[2].test and out[2].meta["attack_kind"] == "faulty"


def test_faulty_data_attacks() -> None:
    d = images()
    flipped = at.LabelFlip(1.0).poison(d, 0)
    assert torch.equal(flipped.tensors[1], 1 - d.tensors[1])
    half = at.LabelFlip(0.5, seed=3).poison(TensorDataset(torch.zeros(2000, 1),
                                                          torch.zeros(2000).long()), 0)
    assert 0.45 < float(half.tensors[1].float().mean()) < 0.55
    noisy = at.LabelNoise(1.0).poison(TensorDataset(torch.zeros(2000, 1),
                                                    torch.zeros(2000).long()), 0)
    assert 0.45 < float(noisy.tensors[1].float().mean()) < 0.55  # uniform over 2 classes
    inv = at.Intensity(invert=True).poison(d, 0)
    assert torch.allclose(inv.tensors[0], 1 - d.tensors[0])
    shifted = at.Intensity(invert=False, shift=0.3).poison(d, 0)
    assert torch.allclose(shifted.tensors[0], (d.tensors[0] + 0.3).clamp(0, 1))


@pytest.mark.parametrize(("attack", "factor"), [(at.ScaledUpdate(10.0), 10.0),
                                                (at.SignFlip(1.0), -1.0),
                                                (at.SignFlip(3.0), -3.0)])
def test_model_poisoning_is_a_multiple_of_the_honest_update(attack: at.Attack,
                                                           factor: float) -> None:
    honest, bad = honest_and_attacked(attack)
    for k in honest.delta:
        torch.testing.assert_close(bad.delta[k], factor * honest.delta[k])
    assert bad.num_examples == honest.num_examples


def test_backdoor_poisons_a_fraction_of_the_source_class_with_the_trigger() -> None:
    d = images(40)
    out = at.Backdoor(fraction=1.0).poison(d, 0)
    x, y = out.tensors
    assert len(y) == 40 + 20  # every pneumonia image copied once, with the trigger
    xt = x[40:]
    assert (y[40:] == 0).all()
    board = (torch.arange(4)[:, None] + torch.arange(4)[None, :]) % 2
    assert torch.equal(xt[:, 0, -5:-1, -5:-1], board.float().expand(20, 4, 4))
    assert torch.equal(x[:40], d.tensors[0])  # the originals are untouched


def test_attack_success_rate_counts_triggered_source_images_called_target() -> None:
    class Corner(torch.nn.Module):  # "normal" iff a white trigger pixel is there
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            t = (x[:, 0, -5, -4] > 0.9).float()
            return torch.stack([t, 1 - t], dim=1) * 10

    class Ignores(torch.nn.Module):  # always "pneumonia"
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tensor([[0.0, 5.0]]).expand(len(x), 2)

    assert at.attack_success_rate(Corner(), images(40)) == 1.0
    assert at.attack_success_rate(Ignores(), images(40)) == 0.0
    with pytest.raises(ValueError, match="no images of the source class"):
        at.attack_success_rate(Corner(), TensorDataset(torch.zeros(3, 1, 28, 28),
                                                       torch.zeros(3).long()))


def test_alie_sends_mu_minus_z_sigma_of_its_own_shards_and_colluders_agree() -> None:
    alie = at.ALIE(z=1.5, shards=4)
    c = at.compromise(hospitals(5), {1: alie, 3: alie})
    state = mlp().state_dict()
    u1 = c[1].fit(mlp(), state, CFG, seed=11)
    u3 = c[3].fit(mlp(), state, CFG, seed=99)
    for k in u1.delta:
        torch.testing.assert_close(u1.delta[k], u3.delta[k])  # one vector, two senders
    # recompute by hand from hospital 1's shards
    x, y = c[1].train.tensors
    perm = torch.randperm(len(y), generator=fl.utils.torch_generator(
        fl.utils.derive_seed(11, 0xA1)))
    ds = [fl.client.local_train(mlp(), state, TensorDataset(x[p], y[p]), CFG,
                                seed=fl.utils.derive_seed(11, i)).delta
          for i, p in enumerate(perm.chunk(4))]
    for k in u1.delta:
        s = torch.stack([d[k].double() for d in ds])
        torch.testing.assert_close(u1.delta[k].double(), s.mean(0) - 1.5 * s.std(0),
                                   rtol=1e-5, atol=1e-6)


def test_alie_z_is_baruchs_formula() -> None:
    # n = 50, f = 24 (Baruch et al.'s example): s = 26 - 24 = 2, z = Phi^-1(48/50)
    assert at.alie_z(50, 24) == pytest.approx(norm.ppf(48 / 50))
    alie = at.ALIE()
    at.compromise(hospitals(5), {0: alie, 1: alie})
    assert alie.z_used == max(0.5, at.alie_z(5, 2))


def test_the_median_stops_a_sign_flipper_that_ruins_fedavg() -> None:
    clients = at.compromise(hospitals(5), {0: at.SignFlip(20.0)})
    plain = mlp()
    fl.run(plain, clients, fl.FedAvg(CFG, weighted=False), rounds=4, progress=False,
           eval_every=0)
    robust = mlp()
    s = fl.FedAvg(CFG, weighted=False)
    s.aggregator = Median()
    fl.run(robust, clients, s, rounds=4, progress=False, eval_every=0)
    test = blobs(400, seed=123)
    acc = {name: fl.metrics.evaluate(m, test)["accuracy"] for name, m in
           (("mean", plain), ("median", robust))}
    assert acc["median"] > 0.8 and acc["mean"] < acc["median"] - 0.2, acc
