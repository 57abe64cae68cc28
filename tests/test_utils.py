import numpy as np
import pytest
import torch

from fedlearn import utils


def test_seed_everything_reproduces_all_three_generators():
    utils.seed_everything(3)
    a = (np.random.rand(), torch.rand(1).item())
    utils.seed_everything(3)
    b = (np.random.rand(), torch.rand(1).item())
    assert a == b


def test_derive_seed_is_stable_and_separates_streams():
    assert utils.derive_seed(1, 2, 3) == utils.derive_seed(1, 2, 3)
    seeds = {utils.derive_seed(0, r, k) for r in range(20) for k in range(20)}
    assert len(seeds) == 400
    assert all(0 <= s < 2**63 for s in seeds)


def test_state_arithmetic_and_flatten_roundtrip():
    a = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2),
         "n": torch.tensor(5, dtype=torch.long)}
    b = {"w": torch.ones(2, 3), "b": torch.zeros(2), "n": torch.tensor(1, dtype=torch.long)}
    d = utils.state_sub(a, b)
    assert set(d) == {"w", "b"}  # integer counters are not differenced
    back = utils.state_add(b, d)
    assert torch.equal(back["w"], a["w"]) and torch.equal(back["b"], a["b"])
    assert back["n"].item() == 1  # kept from the base
    v = utils.flatten_state(d)
    assert v.shape == (8,)
    again = utils.unflatten_state(v, d)
    assert all(torch.equal(again[k], d[k]) for k in d)
    assert utils.state_norm(d) == pytest.approx(float(torch.linalg.vector_norm(v)))
    assert utils.state_nbytes(d) == 8 * 4
    with pytest.raises(ValueError, match="entries"):
        utils.unflatten_state(torch.zeros(3), d)
