"""Our hand-written DP-SGD step equals Opacus' for the same noise draw; clipping bounds norms."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset

import fedlearn as fl
from fedlearn.privacy import make_engine, scratch

MODELS = {
    "logreg": (dict(in_features=13), (16, 13)),
    "mlp": (dict(in_features=13, hidden=(8, 6)), (16, 13)),
    "cnn": (dict(in_channels=1, width=4, hidden=8, norm="group"), (6, 1, 28, 28)),
}


def _batch(shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g), torch.randint(0, 2, (shape[0],), generator=g)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_vmap_per_sample_gradients_equal_one_backward_per_example(name):
    kw, shape = MODELS[name]
    model = fl.make_model(name, seed=0, **kw)
    x, y = _batch(shape, 1)
    loop = scratch.per_sample_gradients(model, x, y, method="loop")
    fast = scratch.per_sample_gradients(model, x, y, method="vmap")
    for k in loop:
        torch.testing.assert_close(fast[k], loop[k], rtol=1e-5, atol=1e-6)
    # and they average to the ordinary minibatch gradient
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    for k, p in model.named_parameters():
        torch.testing.assert_close(fast[k].mean(0), p.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("sigma,clip", [(0.0, 0.5), (1.3, 0.7), (0.8, 100.0)])
def test_scratch_step_equals_opacus_step_for_the_same_noise_draw(name, sigma, clip):
    kw, shape = MODELS[name]
    x, y = _batch(shape, 2)
    base = fl.make_model(name, seed=3, **kw)
    ours, theirs = copy.deepcopy(base), copy.deepcopy(base)
    opt = torch.optim.SGD(theirs.parameters(), lr=0.3)
    loader = DataLoader(TensorDataset(x, y), batch_size=len(x))
    private, dp_opt, _ = make_engine().make_private(
        module=theirs, optimizer=opt, data_loader=loader, noise_multiplier=sigma,
        max_grad_norm=clip, poisson_sampling=False,
        noise_generator=torch.Generator().manual_seed(11))
    dp_opt.zero_grad()
    torch.nn.functional.cross_entropy(private(x), y).backward()
    dp_opt.step()
    private.cleanup()
    info = scratch.dp_sgd_step(ours, x, y, lr=0.3, noise_multiplier=sigma, max_grad_norm=clip,
                               expected_batch_size=dp_opt.expected_batch_size,
                               generator=torch.Generator().manual_seed(11))
    moved = False
    for k, v in base.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[k], theirs.state_dict()[k],
                                   rtol=1e-5, atol=1e-6)
        moved |= not torch.equal(ours.state_dict()[k], v)
    assert moved
    if clip == 0.5:
        assert info.num_clipped > 0  # the comparison did exercise clipping


def test_a_different_noise_draw_gives_a_different_step():
    kw, shape = MODELS["logreg"]
    x, y = _batch(shape, 2)
    a = fl.make_model("logreg", seed=3, **kw)
    b = copy.deepcopy(a)
    for m, s in ((a, 1), (b, 2)):
        scratch.dp_sgd_step(m, x, y, lr=0.3, noise_multiplier=1.0, max_grad_norm=1.0,
                            expected_batch_size=16, generator=torch.Generator().manual_seed(s))
    assert not torch.allclose(a.linear.weight, b.linear.weight)


@settings(max_examples=60, deadline=None)
@given(batch=st.integers(1, 12), dim=st.integers(1, 20),
       scale=st.floats(1e-4, 1e4), clip=st.floats(1e-3, 1e3), seed=st.integers(0, 2**31 - 1))
def test_clipped_per_sample_norms_never_exceed_c(batch, dim, scale, clip, seed):
    g = torch.Generator().manual_seed(seed)
    grads = {"w": scale * torch.randn(batch, dim, 3, generator=g),
             "b": scale * torch.randn(batch, 3, generator=g)}
    clipped, norms = scratch.clip_per_sample(grads, clip)
    after = torch.sqrt(clipped["w"].pow(2).sum((1, 2)) + clipped["b"].pow(2).sum(1))
    assert torch.all(after <= clip * (1 + 1e-5))  # float32 rounding only
    small = norms <= clip
    torch.testing.assert_close(after[small], norms[small], rtol=1e-5, atol=1e-6)  # untouched


def test_gaussian_mechanism_noise_has_the_calibrated_std():
    g = torch.Generator().manual_seed(0)
    value = torch.zeros(200_000)
    out = scratch.gaussian_mechanism(value, sensitivity=2.0, noise_multiplier=1.5, generator=g)
    assert float(out.std()) == pytest.approx(3.0, rel=0.01)
    assert float(out.mean()) == pytest.approx(0.0, abs=0.02)
    assert torch.equal(scratch.gaussian_mechanism(value, 1.0, 0.0, g), value)
