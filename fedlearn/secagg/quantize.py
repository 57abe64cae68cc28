"""Fixed-point quantisation of float updates into the ring Z_(2^bits), and its wire format.

Masking only hides a value perfectly in a *finite* group: adding a uniform element of
Z_(2^bits) to any fixed element gives a uniform element, whereas adding a random float to a
float leaks its magnitude. So each client maps its update to integers first:

    q(x) = round(clip(x, -c, c) * s)  mod 2^bits,

with a scale ``s`` chosen so that the sum of up to ``num_summands`` encoded values never wraps
around: ``num_summands * (c s + 1/2) < 2^(bits-1)``. Integers at or above ``2^(bits-1)`` are
read back as negative (two's complement), so after summing and decoding

    | decode(sum_k q(x_k)) - sum_k clip(x_k) | <= K / (2 s)   for K <= num_summands summands,

i.e. each summand contributes at most half a quantisation step (plus float64 rounding).
:meth:`FixedPoint.error_bound` returns that bound; the tests check it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .prg import word_dtype

__all__ = ["FixedPoint", "mod_add", "mod_sub", "mod_sum", "pack_words", "unpack_words",
           "packed_nbytes"]

MAX_BITS = 53  # float64 represents every integer below 2^53 exactly, so rounding stays exact


@dataclass(frozen=True)
class FixedPoint:
    """Quantiser for values in ``[-clip, clip]``, summed at most ``num_summands`` times.

    Attributes:
        clip: values are clipped to this range before encoding (a bound the server must know).
        num_summands: how many encoded vectors may be added without overflow (clients per round).
        bits: the ring is Z_(2^bits); 32 by default, at most 53.
    """

    clip: float
    num_summands: int
    bits: int = 32

    def __post_init__(self) -> None:
        if not self.clip > 0:
            raise ValueError(f"clip must be > 0, got {self.clip}")
        if self.num_summands < 1:
            raise ValueError(f"num_summands must be >= 1, got {self.num_summands}")
        if not 2 <= self.bits <= MAX_BITS:
            raise ValueError(f"bits must be in [2, {MAX_BITS}], got {self.bits}")
        if self.scale < 1:
            raise ValueError(f"{self.bits} bits cannot hold {self.num_summands} summands at "
                             f"resolution finer than 1: use more bits")

    @property
    def modulus(self) -> int:
        return 1 << self.bits

    @property
    def scale(self) -> float:
        """Integers per unit: the largest ``s`` with ``K (c s + 1/2) < 2^(bits-1)``."""
        half = self.modulus // 2
        return (half - 1 - self.num_summands) / (self.num_summands * self.clip)

    @property
    def dtype(self) -> np.dtype:
        return word_dtype(self.bits)

    def error_bound(self, count: int | None = None) -> float:
        """Worst-case |decoded sum - sum of clipped inputs| per coordinate, ``count`` summands.

        Half a quantisation step per summand, plus the float64 rounding of ``x * s`` and of the
        final division (a few ulps of ``clip``; negligible unless ``bits`` is close to 53).
        """
        k = self.num_summands if count is None else count
        return k * (0.5 / self.scale + 2.0 * self.clip * 2.0**-52)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Float vector -> elements of Z_(2^bits) (``self.dtype``)."""
        v = np.clip(np.asarray(x, dtype=np.float64), -self.clip, self.clip)
        q = np.rint(v * self.scale).astype(np.int64)
        return (q.astype(np.uint64) & np.uint64(self.modulus - 1)).astype(self.dtype)

    def decode(self, words: np.ndarray) -> np.ndarray:
        """Elements of Z_(2^bits) -> floats, reading the upper half of the ring as negative."""
        w = np.asarray(words).astype(np.int64)
        signed = np.where(w >= self.modulus // 2, w - self.modulus, w)
        return signed.astype(np.float64) / self.scale

    def clipped_fraction(self, x: np.ndarray) -> float:
        """Fraction of entries outside ``[-clip, clip]`` (a clip range set too tight)."""
        a = np.asarray(x)
        return float(np.mean(np.abs(a) > self.clip)) if a.size else 0.0


def _mask(bits: int) -> np.unsignedinteger:
    return word_dtype(bits).type((1 << bits) - 1)


def mod_add(a: np.ndarray, b: np.ndarray, bits: int) -> np.ndarray:
    """``(a + b) mod 2^bits``: unsigned machine words wrap by themselves, then drop high bits."""
    return (a + b) & _mask(bits)


def mod_sub(a: np.ndarray, b: np.ndarray, bits: int) -> np.ndarray:
    """``(a - b) mod 2^bits``."""
    return (a - b) & _mask(bits)


def mod_sum(vectors: Sequence[np.ndarray], bits: int, length: int) -> np.ndarray:
    """Sum of many vectors in Z_(2^bits) (the zero vector if there are none)."""
    acc = np.zeros(length, dtype=word_dtype(bits))
    for v in vectors:
        acc = mod_add(acc, v, bits)
    return acc


def packed_nbytes(length: int, bits: int) -> int:
    """Bytes of ``length`` elements of Z_(2^bits) packed bit-tight on the wire."""
    return (length * bits + 7) // 8


def pack_words(words: np.ndarray, bits: int) -> bytes:
    """Bit-pack ring elements, ``bits`` per element, so 26-bit words cost 26 bits, not 32."""
    w = np.ascontiguousarray(words, dtype=np.uint64).astype("<u8")
    allbits = np.unpackbits(w.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    return np.packbits(allbits[:, :bits].reshape(-1), bitorder="little").tobytes()


def unpack_words(data: bytes, bits: int, length: int) -> np.ndarray:
    """Inverse of :func:`pack_words`."""
    if len(data) != packed_nbytes(length, bits):
        raise ValueError(f"expected {packed_nbytes(length, bits)} bytes for {length} words of "
                         f"{bits} bits, got {len(data)}")
    flat = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
    sel = flat[:length * bits].reshape(length, bits)
    full = np.zeros((length, 64), dtype=np.uint8)
    full[:, :bits] = sel
    out = np.packbits(full, axis=1, bitorder="little").reshape(-1).view("<u8")
    return out.astype(word_dtype(bits))
