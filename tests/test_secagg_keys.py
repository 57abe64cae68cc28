"""X25519 key agreement with HKDF labels."""

from __future__ import annotations

import pytest

from fedlearn.secagg.keys import agree, generate_keypair, keypair_from_private
from fedlearn.secagg.prg import SecureRandom


def test_both_sides_derive_the_same_key_and_others_cannot() -> None:
    rng = SecureRandom(1)
    a, b, eve = generate_keypair(rng), generate_keypair(rng), generate_keypair(rng)
    k_ab = agree(a.private, b.public, b"label")
    assert len(k_ab) == 32
    assert k_ab == agree(b.private, a.public, b"label")
    assert k_ab != agree(eve.private, a.public, b"label")
    assert k_ab != agree(eve.private, b.public, b"label")


def test_labels_separate_keys_from_one_agreement() -> None:
    rng = SecureRandom(2)
    a, b = generate_keypair(rng), generate_keypair(rng)
    assert agree(a.private, b.public, b"mask") != agree(a.private, b.public, b"encrypt")


def test_key_pair_round_trips_through_its_private_bytes() -> None:
    kp = generate_keypair(SecureRandom(3))
    again = keypair_from_private(kp.private_bytes())
    assert again.public == kp.public and len(kp.public) == 32
    assert generate_keypair(SecureRandom(3)).public == kp.public  # seeded: reproducible


def test_agree_rejects_malformed_and_low_order_public_keys() -> None:
    kp = generate_keypair(SecureRandom(4))
    with pytest.raises(ValueError, match="32 bytes"):
        agree(kp.private, b"\x01" * 31, b"x")
    with pytest.raises(ValueError):
        agree(kp.private, bytes(32), b"x")  # the all-zero point gives an all-zero secret
