"""Key agreement: X25519 Diffie-Hellman followed by HKDF, from the ``cryptography`` package.

Two hospitals that have never met agree on a shared 32-byte secret by exchanging only public
keys through the server: ``DH(a_sk, b_pk) == DH(b_sk, a_pk)``, while the server, which sees
both public keys, cannot compute it (the elliptic-curve Diffie-Hellman problem). The raw DH
output is not uniformly random, so it is passed through HKDF-SHA256 with a *label* saying what
the key is for (pairwise mask, share encryption, channel to the server, ...): one agreement
then yields independent keys for independent purposes.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .prg import SecureRandom

__all__ = ["PUBLIC_KEY_BYTES", "KeyPair", "generate_keypair", "keypair_from_private", "agree",
           "derive_key"]

PUBLIC_KEY_BYTES = 32


@dataclass(frozen=True)
class KeyPair:
    """An X25519 key pair; ``public`` is the 32 raw bytes that are sent to others."""

    private: X25519PrivateKey
    public: bytes

    def private_bytes(self) -> bytes:
        """The 32 raw private bytes (what secure aggregation Shamir-shares for dropout recovery)."""
        return self.private.private_bytes(serialization.Encoding.Raw,
                                          serialization.PrivateFormat.Raw,
                                          serialization.NoEncryption())


def keypair_from_private(raw: bytes) -> KeyPair:
    """Rebuild a key pair from its 32 private bytes (e.g. after Shamir reconstruction)."""
    sk = X25519PrivateKey.from_private_bytes(raw)
    pk = sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return KeyPair(sk, pk)


def generate_keypair(rng: SecureRandom) -> KeyPair:
    """A fresh key pair drawn from ``rng`` (reproducible if ``rng`` is seeded)."""
    return keypair_from_private(rng.bytes(32))


def derive_key(secret: bytes, label: bytes, length: int = 32) -> bytes:
    """HKDF-SHA256 of ``secret`` with ``label`` as the context ("info") string."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None,
                info=b"fedlearn.secagg/" + label).derive(secret)


def agree(private: X25519PrivateKey, peer_public: bytes, label: bytes, length: int = 32) -> bytes:
    """A key shared with the owner of ``peer_public``: HKDF(DH(private, peer_public), label).

    The label must not depend on which side calls (use sorted ids), or the two sides would
    derive different keys from the same Diffie-Hellman secret.

    Raises:
        ValueError: ``peer_public`` is not 32 bytes or is a low-order point (the
            ``cryptography`` package rejects an all-zero shared secret).
    """
    if len(peer_public) != PUBLIC_KEY_BYTES:
        raise ValueError(f"public key must be {PUBLIC_KEY_BYTES} bytes, got {len(peer_public)}")
    shared = private.exchange(X25519PublicKey.from_public_bytes(peer_public))
    return derive_key(shared, label, length)
