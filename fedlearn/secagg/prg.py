"""Cryptographic randomness: mask expansion from a seed, and a seedable random source.

A one-time pad as long as a model (tens of thousands of numbers) cannot be exchanged between
every pair of hospitals, but a 32-byte *seed* can. A pseudorandom generator (PRG) stretches
the seed into as many words as needed; if the PRG is cryptographic, nobody without the seed
can tell the words from truly uniform ones. We use the ChaCha20 stream cipher from the
``cryptography`` package: its keystream (the encryption of zeros) under a seed is the mask.

NumPy's or Python's generators must never be used here: they are fast and statistically fine,
but predictable from a few outputs (the Mersenne Twister's state is recovered from 624
outputs), so a server could strip the masks.

:class:`SecureRandom` is the source of every other random choice in the protocol (keys,
Shamir coefficients, self-mask seeds). Built without a seed it reads the operating system's
CSPRNG (what a deployment does); built with a seed it is a ChaCha20 keystream, so tests and
notebooks are reproducible while exercising exactly the same code.
"""

from __future__ import annotations

import os

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["SEED_BYTES", "word_dtype", "expand_mask", "keystream", "SecureRandom"]

SEED_BYTES = 32
_ZERO_NONCE = bytes(16)  # every seed is used for exactly one stream, so a fixed nonce is safe


def word_dtype(bits: int) -> np.dtype:
    """Unsigned NumPy type holding one element of Z_(2^bits): uint32 up to 32 bits, else uint64."""
    if not 1 <= bits <= 64:
        raise ValueError(f"bits must be in [1, 64], got {bits}")
    return np.dtype(np.uint32) if bits <= 32 else np.dtype(np.uint64)


def keystream(seed: bytes, nbytes: int) -> bytes:
    """``nbytes`` of ChaCha20 keystream under the 32-byte ``seed``."""
    if len(seed) != SEED_BYTES:
        raise ValueError(f"seed must be {SEED_BYTES} bytes, got {len(seed)}")
    enc = Cipher(algorithms.ChaCha20(seed, _ZERO_NONCE), mode=None).encryptor()
    return enc.update(bytes(nbytes))


def expand_mask(seed: bytes, length: int, bits: int) -> np.ndarray:
    """A vector of ``length`` uniform elements of Z_(2^bits) expanded from ``seed``.

    Each element is a whole little-endian machine word of keystream with its high bits
    dropped; dropping bits of a uniform word leaves a uniform word, so no modular bias.
    """
    dt = word_dtype(bits)
    words = np.frombuffer(keystream(seed, length * dt.itemsize), dtype=dt.newbyteorder("<"))
    words = words.astype(dt, copy=True)
    if bits < dt.itemsize * 8:
        words &= dt.type((1 << bits) - 1)
    return words


def _derive(key: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=SEED_BYTES, salt=None,
                info=b"fedlearn.secagg.SecureRandom/" + label).derive(key)


class SecureRandom:
    """Cryptographically strong random bytes and integers.

    Args:
        seed: ``None`` for the operating system's randomness (unpredictable, not
            reproducible); an ``int`` or ``bytes`` for a deterministic ChaCha20 stream.
    """

    def __init__(self, seed: int | bytes | None = None) -> None:
        self.deterministic = seed is not None
        self._key: bytes | None = None
        self._enc = None
        if seed is not None:
            raw = seed if isinstance(seed, bytes) else int(seed).to_bytes(16, "little", signed=True)
            self._key = _derive(raw, b"root")
            self._enc = Cipher(algorithms.ChaCha20(self._key, _ZERO_NONCE), mode=None).encryptor()

    def bytes(self, n: int) -> bytes:
        """``n`` random bytes."""
        if self._enc is None:
            return os.urandom(n)
        return self._enc.update(bytes(n))

    def below(self, upper: int) -> int:
        """A uniform integer in ``[0, upper)`` by rejection sampling (no modulo bias)."""
        if upper < 1:
            raise ValueError(f"upper must be >= 1, got {upper}")
        nbits = (upper - 1).bit_length()
        if nbits == 0:
            return 0
        nbytes = (nbits + 7) // 8
        while True:
            v = int.from_bytes(self.bytes(nbytes), "little") & ((1 << nbits) - 1)
            if v < upper:
                return v

    def spawn(self, label: str | int) -> SecureRandom:
        """An independent child source (e.g. one per hospital), reproducible from the label.

        Deriving children by label rather than by drawing from this stream means a client's
        randomness does not depend on how many other clients were created before it.
        """
        if self._key is None:
            return SecureRandom(None)
        return SecureRandom(_derive(self._key, str(label).encode()))

    def __repr__(self) -> str:
        return f"SecureRandom({'seeded' if self.deterministic else 'os.urandom'})"
