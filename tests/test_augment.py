"""Tests for fedlearn.augment: seeded batched augmentation and the augmenting client."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

import fedlearn as fl
from fedlearn.augment import Augment, AugmentedClient, augmented_clients

NONE = Augment(rotation=0, scale=0, shift=0, brightness=0, contrast=0)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=gen(seed))


def test_seeded_and_in_range():
    x = images()
    before = x.clone()
    a, b, c = Augment()(x, gen(1)), Augment()(x, gen(1)), Augment()(x, gen(2))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert torch.equal(x, before), "the input must not be modified"
    assert a.shape == x.shape and a.dtype == x.dtype
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def test_zero_strength_is_the_identity():
    x = images()
    assert torch.allclose(NONE(x, gen(0)), x, atol=1e-5)


def test_flip_only_gives_the_image_or_its_mirror():
    x = images(32)
    out = Augment(rotation=0, scale=0, shift=0, brightness=0, contrast=0, hflip=True)(x, gen(3))
    same = (out - x).abs().amax(dim=(1, 2, 3)) < 1e-5
    mirrored = (out - x.flip(-1)).abs().amax(dim=(1, 2, 3)) < 1e-5
    assert bool((same | mirrored).all())
    assert 0 < int(mirrored.sum()) < 32, "about half the images are flipped"


def test_brightness_only_shifts_every_pixel_by_one_offset():
    x = 0.25 + 0.5 * images(6)  # stay away from the clip at 0 and 1
    out = Augment(rotation=0, scale=0, shift=0, contrast=0, brightness=0.2)(x, gen(4))
    shift = out - x
    per_image = shift.flatten(1)
    assert torch.allclose(per_image, per_image[:, :1].expand_as(per_image), atol=1e-5)
    assert float(per_image[:, 0].abs().max()) <= 0.2


def test_shift_moves_content_without_changing_mass_much():
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 12:16, 12:16] = 1.0
    out = Augment(rotation=0, scale=0, shift=3, brightness=0, contrast=0)(x, gen(5))
    assert float(out.sum()) == pytest.approx(16.0, rel=0.05)


@pytest.mark.parametrize("kwargs", [{"rotation": -1}, {"scale": 1.0}, {"brightness": -0.1}])
def test_rejects_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        Augment(**kwargs)


def test_rejects_non_image_batches():
    with pytest.raises(ValueError, match="N, C, H, W"):
        Augment()(torch.rand(28, 28), gen(0))
    assert Augment()(torch.zeros(0, 1, 28, 28), gen(0)).shape == (0, 1, 28, 28)


def data(n: int = 40) -> TensorDataset:
    g = gen(7)
    return TensorDataset(torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 2, (n,),
                                                                               generator=g))


def test_identity_augmentation_trains_exactly_like_a_plain_client():
    model = fl.make_model("cnn", seed=0, width=4, hidden=8)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = fl.TrainConfig(steps=3, batch_size=8, lr=0.1)
    plain = fl.Client(0, data()).fit(model, state, cfg, seed=11)
    aug = AugmentedClient(0, data(), augment=NONE).fit(model, state, cfg, seed=11)
    for k in plain.delta:
        assert torch.allclose(plain.delta[k], aug.delta[k], atol=1e-6), k


def test_augmented_client_is_reproducible_and_leaves_its_data_alone():
    model = fl.make_model("cnn", seed=0, width=4, hidden=8)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = fl.TrainConfig(steps=3, batch_size=8, lr=0.1)
    d = data()
    x0 = d.tensors[0].clone()
    client = AugmentedClient(0, d)
    u1 = client.fit(model, state, cfg, seed=11)
    u2 = client.fit(model, state, cfg, seed=11)
    u3 = client.fit(model, state, cfg, seed=12)
    plain = fl.Client(0, d).fit(model, state, cfg, seed=11)
    key = "head.3.weight"
    assert torch.equal(u1.delta[key], u2.delta[key])
    assert not torch.allclose(u1.delta[key], u3.delta[key])
    assert not torch.allclose(u1.delta[key], plain.delta[key]), "augmentation changes training"
    assert torch.equal(d.tensors[0], x0)


def test_augmented_clients_copy_everything_and_run():
    clients = [fl.Client(i, data(20 + i), test=data(10), name=f"h{i}", meta={"k": i})
               for i in range(2)]
    aug = augmented_clients(clients, Augment(hflip=True))
    assert [(a.cid, a.name, a.meta, a.augment.hflip) for a in aug] == \
        [(0, "h0", {"k": 0}, True), (1, "h1", {"k": 1}, True)]
    assert all(a.train is c.train and a.test is c.test for a, c in zip(aug, clients,
                                                                         strict=True))
    h = fl.run(fl.make_model("cnn", seed=0, width=4, hidden=8), aug,
               fl.FedAvg(fl.TrainConfig(steps=2, batch_size=8)), rounds=2, progress=False)
    assert len(h.rounds) == 2
