import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlearn import ClientUpdate, InvalidUpdateError
from fedlearn.aggregate import apply_delta, fedavg_delta, weighted_mean


def test_weighted_mean_matches_definition():
    a = {"w": torch.tensor([1.0, 2.0])}
    b = {"w": torch.tensor([3.0, 6.0])}
    out = weighted_mean([a, b], [1, 3])
    assert torch.allclose(out["w"], torch.tensor([2.5, 5.0]))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 500), min_size=1, max_size=8), st.integers(0, 2**16))
def test_fedavg_is_permutation_invariant_and_in_hull(sizes, seed):
    g = torch.Generator().manual_seed(seed)
    ups = [ClientUpdate(i, {"w": torch.randn(7, generator=g)}, n) for i, n in enumerate(sizes)]
    agg = fedavg_delta(ups)["w"]
    rev = fedavg_delta(ups[::-1])["w"]
    assert torch.allclose(agg, rev, atol=1e-6)
    stack = torch.stack([u.delta["w"] for u in ups])
    assert (agg <= stack.max(0).values + 1e-5).all() and (agg >= stack.min(0).values - 1e-5).all()
    ref = sum(n * u.delta["w"].double() for n, u in zip(sizes, ups, strict=True)) / sum(sizes)
    assert torch.allclose(agg.double(), ref, atol=1e-6)


def test_weighted_vs_unweighted_under_quantity_skew():
    # a big hospital (900 patients) and a small one (100): the weighted mean sits at 0.9/0.1,
    # the unweighted one at 1/2 (the bias the course warns about)
    big = ClientUpdate(0, {"w": torch.tensor([1.0])}, 900)
    small = ClientUpdate(1, {"w": torch.tensor([-1.0])}, 100)
    assert fedavg_delta([big, small])["w"].item() == pytest.approx(0.8)
    assert fedavg_delta([big, small], weighted=False)["w"].item() == pytest.approx(0.0)


def test_bad_weights_and_nan_updates():
    with pytest.raises(ValueError, match="sum to zero"):
        weighted_mean([{"w": torch.ones(1)}], [0])
    with pytest.raises(ValueError, match="non-negative"):
        weighted_mean([{"w": torch.ones(1)}], [-1])
    with pytest.raises(ValueError, match="weights"):
        weighted_mean([{"w": torch.ones(1)}], [1, 2])
    bad = ClientUpdate(0, {"w": torch.tensor([float("nan")])}, 5)
    with pytest.raises(InvalidUpdateError, match="NaN"):
        fedavg_delta([bad])


def test_apply_delta_keeps_int_buffers():
    state = {"w": torch.ones(2), "n": torch.tensor(4)}
    out = apply_delta(state, {"w": torch.ones(2)}, lr=0.5)
    assert torch.equal(out["w"], torch.full((2,), 1.5))
    assert out["n"].item() == 4
