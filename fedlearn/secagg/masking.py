"""The masks of secure aggregation and the parameters every party agrees on.

Client ``u`` sends

    y_u = x_u + PRG(b_u) + sum_{v != u} sign(u, v) PRG(s_uv)   (mod 2^bits),

where ``s_uv = s_vu`` is a seed both ends derive by key agreement, and ``sign(u, v) = +1`` if
``u < v`` else ``-1``. In the sum over all clients each pairwise mask appears once with each
sign and cancels; the *self-mask* ``PRG(b_u)`` does not cancel and is removed by the server
only after it has learnt, from Shamir shares, the seeds ``b_u`` of clients whose input it
received (the "double masking" of Bonawitz et al. 2017, which stops a late client from being
unmasked by a server that pretends it dropped out).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from .keys import agree
from .prg import expand_mask
from .quantize import mod_add, mod_sub
from .shamir import PRIME_256

__all__ = ["SecAggConfig", "pair_sign", "pairwise_seed", "pairwise_mask", "self_mask",
           "apply_masks"]


@dataclass(frozen=True)
class SecAggConfig:
    """Public parameters of one secure-aggregation round.

    Attributes:
        threshold: ``t``: the sum is recovered if at least ``t`` clients last to the end, and
            any ``t - 1`` colluding clients learn nothing about another client's secrets.
            Must be at least 2 (with ``t = 1`` a lone survivor's "sum" is its own input).
        length: number of ring elements each client sends (the model size, plus 1 for the
            weight when updates are weighted).
        bits: the ring is Z_(2^bits).
        round_id: bound into every key and message so nothing carries over between rounds.
        prime: Shamir field size; must exceed every secret (2^256).
    """

    threshold: int
    length: int
    bits: int = 32
    round_id: int = 0
    prime: int = PRIME_256

    def __post_init__(self) -> None:
        if self.threshold < 2:
            raise ValueError(f"threshold t must be >= 2, got {self.threshold}: with t = 1 the "
                             "server could 'aggregate' a single client and read its input")
        if self.length < 1:
            raise ValueError(f"length must be >= 1, got {self.length}")
        if not 2 <= self.bits <= 64:
            raise ValueError(f"bits must be in [2, 64], got {self.bits}")
        if not 0 <= self.round_id < 2**64:
            raise ValueError(f"round_id must fit in 64 bits, got {self.round_id}")
        if self.prime <= 2**256:
            raise ValueError("the Shamir prime must exceed 2^256 to share 32-byte secrets")

    def check_input(self, x: np.ndarray) -> None:
        """Raise ValueError unless ``x`` is a vector of ``length`` elements of Z_(2^bits)."""
        if x.shape != (self.length,):
            raise ValueError(f"input must have shape ({self.length},), got {x.shape}")
        if not np.issubdtype(x.dtype, np.unsignedinteger):
            raise ValueError(f"input must be unsigned ring elements, got dtype {x.dtype}; "
                             "quantise floats with FixedPoint.encode first")
        if self.bits < 64 and x.size and int(x.max()) >= 1 << self.bits:
            raise ValueError(f"input has elements >= 2^{self.bits}")


def pair_sign(u: int, v: int) -> int:
    """+1 if ``u < v`` else -1: the two ends of a pair add opposite masks."""
    if u == v:
        raise ValueError("a client has no pairwise mask with itself")
    return 1 if u < v else -1


def pairwise_seed(private: X25519PrivateKey, peer_public: bytes, u: int, v: int,
                  round_id: int) -> bytes:
    """The 32-byte seed shared by ``u`` and ``v`` (the same from either end)."""
    a, b = min(u, v), max(u, v)
    return agree(private, peer_public, f"pairwise-mask/round={round_id}/{a}-{b}".encode())


def pairwise_mask(seed: bytes, u: int, v: int, config: SecAggConfig) -> np.ndarray:
    """``sign(u, v) * PRG(s_uv)`` as a ring element vector: the mask ``u`` adds for pair (u, v)."""
    m = expand_mask(seed, config.length, config.bits)
    return m if pair_sign(u, v) > 0 else mod_sub(np.zeros_like(m), m, config.bits)


def self_mask(seed: bytes, config: SecAggConfig) -> np.ndarray:
    """``PRG(b_u)``."""
    return expand_mask(seed, config.length, config.bits)


def apply_masks(x: np.ndarray, masks: list[np.ndarray], bits: int) -> np.ndarray:
    """``x + sum(masks) mod 2^bits``."""
    out = x.copy()
    for m in masks:
        out = mod_add(out, m, bits)
    return out
