import pytest
import torch

from fedlearn import ClientUpdate, InvalidUpdateError
from fedlearn.update import validate_updates


def _u(cid=0, val=1.0, n=10, shape=(2, 2)):
    return ClientUpdate(cid, {"w": torch.full(shape, val)}, n)


def test_nbytes_and_norm():
    u = _u(val=1.0)
    assert u.nbytes == 16
    assert u.norm == pytest.approx(2.0)
    v = u.with_delta({"w": torch.zeros(2, 2, dtype=torch.float64)})
    assert v.nbytes == 32 and v.cid == u.cid and v.num_examples == u.num_examples


def test_nan_and_inf_are_rejected_with_client_named():
    with pytest.raises(InvalidUpdateError, match=r"client 3: .*'w'.*NaN/inf"):
        _u(cid=3, val=float("nan")).check()
    with pytest.raises(InvalidUpdateError, match="NaN/inf"):
        _u(val=float("inf")).check()


def test_shape_and_key_mismatch_and_empty():
    with pytest.raises(InvalidUpdateError, match="shape"):
        validate_updates([_u(), _u(cid=1, shape=(3,))])
    with pytest.raises(InvalidUpdateError, match="missing"):
        validate_updates([_u()], {"w": torch.zeros(2, 2), "b": torch.zeros(1)})
    with pytest.raises(InvalidUpdateError, match="no client updates"):
        validate_updates([])
    with pytest.raises(InvalidUpdateError, match="num_examples"):
        _u(n=-1)
