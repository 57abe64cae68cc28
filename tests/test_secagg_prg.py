"""ChaCha20 mask expansion and the seedable cryptographic random source."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from fedlearn.secagg.prg import SecureRandom, expand_mask, keystream, word_dtype


def test_keystream_matches_the_rfc_7539_test_vector() -> None:
    """ChaCha20 block with an all-zero key, nonce and counter (RFC 7539, A.1, vector #1)."""
    expected = bytes.fromhex(
        "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
        "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586")
    assert keystream(bytes(32), 64) == expected


def test_expand_mask_is_deterministic_and_seed_dependent() -> None:
    a = expand_mask(b"\x01" * 32, 1000, 32)
    assert np.array_equal(a, expand_mask(b"\x01" * 32, 1000, 32))
    assert not np.array_equal(a, expand_mask(b"\x02" * 32, 1000, 32))
    assert a.dtype == np.uint32
    assert np.array_equal(expand_mask(b"\x01" * 32, 10, 32), a[:10])  # a prefix of the stream


@pytest.mark.parametrize("bits", [8, 20, 32, 40, 53])
def test_expand_mask_respects_the_ring(bits: int) -> None:
    m = expand_mask(b"\x07" * 32, 5000, bits)
    assert m.dtype == word_dtype(bits)
    assert int(m.max()) < 2**bits
    assert int(m.max()) > 2**bits * 0.99  # and fills it


def test_expand_mask_is_uniform() -> None:
    words = expand_mask(b"\x09" * 32, 20_000, 32)
    ks = stats.kstest(words / 2**32, "uniform")
    assert ks.pvalue > 1e-3
    counts = np.bincount(words.view(np.uint8), minlength=256)
    assert stats.chisquare(counts).pvalue > 1e-3


def test_expand_mask_rejects_short_seeds() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        expand_mask(b"short", 4, 32)


def test_secure_random_seeded_is_reproducible_and_spawns_independent_children() -> None:
    a, b = SecureRandom(3), SecureRandom(3)
    assert a.bytes(40) == b.bytes(40)
    assert SecureRandom(3).bytes(16) != SecureRandom(4).bytes(16)
    assert SecureRandom(3).spawn("x").bytes(16) == SecureRandom(3).spawn("x").bytes(16)
    assert SecureRandom(3).spawn("x").bytes(16) != SecureRandom(3).spawn("y").bytes(16)
    assert SecureRandom(None).bytes(16) != SecureRandom(None).bytes(16)
    assert not SecureRandom(None).spawn("x").deterministic


def test_secure_random_below_is_uniform_and_in_range() -> None:
    rng = SecureRandom(11)
    draws = np.array([rng.below(10) for _ in range(5000)])
    assert draws.min() == 0 and draws.max() == 9
    assert stats.chisquare(np.bincount(draws, minlength=10)).pvalue > 1e-3
    assert rng.below(1) == 0
    big = 2**256 + 297
    assert all(0 <= rng.below(big) < big for _ in range(50))
    with pytest.raises(ValueError):
        rng.below(0)
