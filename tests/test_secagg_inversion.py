"""Gradient inversion recovers one image from a FedSGD update, not from a secure sum or DP noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio
from torch.utils.data import TensorDataset

import fedlearn as fl
from fedlearn.privacy.client_dp import clip_update
from fedlearn.secagg import SecureAggregation
from fedlearn.secagg.inversion import (
    best_psnr,
    infer_label,
    invert_gradients,
    model_gradient,
    psnr,
    ssim,
    total_variation,
    update_to_gradient,
)
from fedlearn.utils import clone_state

FEDSGD = fl.TrainConfig(steps=1, batch_size=None, lr=0.1)


def phantoms(n: int, seed: int) -> torch.Tensor:
    """Synthetic 28x28 'scans': a bright ellipse (organ) and a dark spot (lesion) on a gradient."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 28), torch.linspace(-1, 1, 28), indexing="ij")
    out = []
    for _ in range(n):
        c = torch.rand(6, generator=g)
        organ = (((xx - 0.6 * c[0] + 0.3) / (0.4 + 0.3 * c[1])) ** 2
                 + ((yy - 0.6 * c[2] + 0.3) / (0.3 + 0.3 * c[3])) ** 2) < 1
        lesion = ((xx - 0.8 * c[4] + 0.4) ** 2 + (yy - 0.8 * c[5] + 0.4) ** 2) < 0.05
        img = 0.2 + 0.2 * (xx + 1) / 2 + 0.5 * organ.float() - 0.4 * lesion.float()
        out.append(img.clamp(0, 1))
    return torch.stack(out).unsqueeze(1)


def small_cnn() -> torch.nn.Module:
    return fl.make_model("cnn", seed=0, norm="none", width=8, hidden=32)


def test_label_is_read_off_a_single_example_gradient() -> None:
    model = small_cnn()
    x = phantoms(6, seed=1)
    for i, y in enumerate([0, 1, 1, 0, 1, 0]):
        assert infer_label(model_gradient(model, x[i:i + 1], torch.tensor([y]))) == y


def test_psnr_matches_scikit_image_and_ssim_of_identical_images_is_one() -> None:
    a, b = phantoms(2, seed=2)
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a.numpy(), b.numpy(),
                                                               data_range=1.0))
    assert psnr(a, a) == float("inf")
    assert ssim(a, a) == pytest.approx(1.0)
    assert total_variation(torch.ones(1, 1, 5, 5)) == 0


def test_update_to_gradient_inverts_a_fedsgd_step() -> None:
    model = small_cnn()
    x, y = phantoms(1, seed=3), torch.tensor([1])
    state = clone_state(model.state_dict())
    update = fl.local_train(model, state, TensorDataset(x, y), FEDSGD, seed=0)
    model.load_state_dict(state)
    for g_true, g_rec in zip(model_gradient(model, x, y),
                             update_to_gradient(update.delta, model, lr=0.1), strict=True):
        torch.testing.assert_close(g_rec, g_true, atol=1e-5, rtol=1e-3)


def test_attack_succeeds_on_one_update_and_fails_on_a_secure_sum_or_dp_noise() -> None:
    torch.manual_seed(0)
    model = small_cnn()
    state = clone_state(model.state_dict())
    x = phantoms(8, seed=4)
    ys = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0])
    clients = [fl.Client(cid=i, train=TensorDataset(x[i:i + 1], ys[i:i + 1])) for i in range(8)]
    updates = [c.fit(model, state, FEDSGD, seed=0) for c in clients]
    model.load_state_dict(state)

    def attack(delta: dict[str, torch.Tensor]) -> torch.Tensor:
        return invert_gradients(model, update_to_gradient(delta, model), steps=150).image

    single = attack(updates[0].delta)
    p_single = psnr(single, x[0])
    assert p_single > 20 and ssim(single, x[0]) > 0.6

    secure = SecureAggregation(fl.FedAvg(FEDSGD))
    secure.start(state, clients)
    _, p_sum = best_psnr(attack(secure.combine(1, updates)), x)
    clipped, _ = clip_update(updates[0].delta, 0.05)
    g = torch.Generator().manual_seed(1)
    noisy = {k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in clipped.items()}
    p_dp = psnr(attack(noisy), x[0])
    print(f"PSNR single {p_single:.1f} dB, secure sum {p_sum:.1f} dB, DP {p_dp:.1f} dB")
    assert p_single > p_sum + 5 and p_single > p_dp + 5, (p_single, p_sum, p_dp)


@pytest.mark.realdata
def test_attack_on_a_real_breast_ultrasound(real_data_dir: object) -> None:
    ds = fl.data.load_medmnist("breastmnist", download=False, progress=False)
    x, y = ds.train.tensors[0][:1], ds.train.tensors[1][:1]
    model = small_cnn()
    state = clone_state(model.state_dict())
    update = fl.local_train(model, state, TensorDataset(x, y), FEDSGD, seed=0)
    model.load_state_dict(state)
    res = invert_gradients(model, update_to_gradient(update.delta, model), steps=150)
    assert res.label == int(y[0])
    mean_image = ds.train.tensors[0].mean(0)
    assert psnr(res.image, x[0]) > psnr(mean_image, x[0]) + 4  # far better than a prior guess
    assert np.isfinite(ssim(res.image, x[0]))
