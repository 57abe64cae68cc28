"""CKKS aggregation: the decrypted sum of ciphertexts equals the plain sum to CKKS precision."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tenseal")

from fedlearn.secagg.costs import client_bytes  # noqa: E402
from fedlearn.secagg.he import CKKSAggregator, CKKSParams, he_sum  # noqa: E402


def test_sum_of_ciphertexts_decrypts_to_the_plain_sum() -> None:
    rng = np.random.default_rng(0)
    d = 5000  # two ciphertexts of 4096 slots: chunking is exercised
    vecs = {c: rng.normal(0, 0.1, d) for c in range(4)}
    res = he_sum(vecs)
    plain = np.sum(list(vecs.values()), axis=0)
    assert np.abs(res.total - plain).max() < 1e-5
    assert np.abs(res.total - plain).max() > 0  # approximate arithmetic: not bit-exact
    assert res.bytes_per_client > 0 and res.encrypt_seconds > 0


def test_the_server_context_cannot_decrypt() -> None:
    import tenseal as ts

    agg = CKKSAggregator(CKKSParams())
    ct = agg.encrypt(np.arange(10, dtype=float))
    server = agg.server_context()
    assert not server.is_private()
    with pytest.raises(ValueError, match="secret"):
        ts.ckks_vector_from(server, agg.server_sum([ct])[0]).decrypt()
    assert np.allclose(agg.decrypt(agg.server_sum([ct, ct]), 10), 2 * np.arange(10), atol=1e-5)


def test_he_costs_far_more_bytes_than_masking() -> None:
    d = 4096
    res = he_sum([np.zeros(d), np.ones(d)])
    masked = sum(client_bytes(10, d, 32).values())
    assert res.bytes_per_client > 10 * masked


def test_decrypt_checks_the_length() -> None:
    agg = CKKSAggregator()
    with pytest.raises(ValueError, match="expected 3"):
        agg.decrypt(agg.encrypt(np.ones(4)), 3)
    with pytest.raises(ValueError):
        agg.server_sum([])
