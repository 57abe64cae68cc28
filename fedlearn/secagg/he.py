"""The homomorphic alternative: add encrypted updates without decrypting them (TenSEAL CKKS).

With an *additively homomorphic* scheme, ``Dec(Enc(a) + Enc(b)) = a + b``: the server can sum
ciphertexts it cannot read. CKKS (Cheon, Kim, Kim and Song 2017) packs ``N/2`` real numbers into
one ciphertext (4096 for ring degree ``N = 8192``) and adds them slot by slot, with a small
error from its encryption noise (about 1e-8 on numbers of order one with a 40-bit scale):
"approximate arithmetic", harmless next to SGD noise.

Who holds the secret key is the crux. Here a *key holder* (one hospital, or a key authority)
creates the keys and alone can decrypt; clients encrypt and the server adds with the *public*
context only (the tests check that the server's context cannot decrypt). If the key holder
colludes with the server, every individual update is readable, a weaker trust model than
masking (where ``t`` clients must collude); threshold HE removes that, at more cost. Compared
with secure aggregation there is no dropout problem at all (a missing ciphertext is just not
added), but each number costs far more bytes and time: :func:`he_sum` measures both.

SEAL draws its key and encryption noise from its own CSPRNG, which cannot be seeded, so
ciphertexts differ between runs; decrypted sums agree to CKKS precision.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["CKKSParams", "CKKSAggregator", "HEResult", "he_sum"]


def _tenseal():  # imported on demand: an optional, compiled dependency
    try:
        import tenseal as ts
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("homomorphic aggregation needs TenSEAL: pip install tenseal") from exc
    return ts


@dataclass(frozen=True)
class CKKSParams:
    """CKKS parameters (the TenSEAL tutorial's defaults: 128-bit security for N = 8192)."""

    poly_modulus_degree: int = 8192
    coeff_mod_bit_sizes: tuple[int, ...] = (60, 40, 40, 60)
    scale_bits: int = 40

    @property
    def slots(self) -> int:
        """Real numbers per ciphertext."""
        return self.poly_modulus_degree // 2


class CKKSAggregator:
    """A key holder's CKKS context, and the three roles of additive aggregation.

    ``encrypt`` runs on a client and ``server_sum`` on the server, both with the public
    context only; ``decrypt`` runs at the key holder.
    """

    def __init__(self, params: CKKSParams | None = None) -> None:
        ts = _tenseal()
        self.params = params if params is not None else CKKSParams()
        p = self.params
        self._ctx = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=p.poly_modulus_degree,
                               coeff_mod_bit_sizes=list(p.coeff_mod_bit_sizes))
        self._ctx.global_scale = 2.0 ** p.scale_bits
        self.public_context: bytes = self._ctx.serialize(save_public_key=True,
                                                          save_secret_key=False,
                                                          save_galois_keys=False,
                                                          save_relin_keys=False)
        self._public_ctx = ts.context_from(self.public_context)

    def server_context(self):  # -> tenseal.Context without a secret key
        """What the server is given: the public context (it can add, not decrypt)."""
        return _tenseal().context_from(self.public_context)

    def encrypt(self, x: np.ndarray) -> list[bytes]:
        """A client encrypts its vector, in chunks of ``slots`` numbers; returns wire bytes."""
        ts = _tenseal()
        v = np.asarray(x, dtype=np.float64).reshape(-1)
        s = self.params.slots
        return [ts.ckks_vector(self._public_ctx, v[i:i + s].tolist()).serialize()
                for i in range(0, len(v), s)]

    def server_sum(self, ciphertexts: Sequence[Sequence[bytes]]) -> list[bytes]:
        """Add the clients' ciphertexts chunk by chunk, using the public context only."""
        ts = _tenseal()
        if not ciphertexts:
            raise ValueError("no ciphertexts to add")
        ctx = self.server_context()
        out = []
        for chunks in zip(*ciphertexts, strict=True):
            acc = ts.ckks_vector_from(ctx, chunks[0])
            for c in chunks[1:]:
                acc = acc + ts.ckks_vector_from(ctx, c)
            out.append(acc.serialize())
        return out

    def decrypt(self, blobs: Sequence[bytes], length: int) -> np.ndarray:
        """The key holder decrypts the summed chunks."""
        ts = _tenseal()
        vals: list[float] = []
        for b in blobs:
            vals.extend(ts.ckks_vector_from(self._ctx, b).decrypt())
        if len(vals) != length:
            raise ValueError(f"decrypted {len(vals)} numbers, expected {length}")
        return np.asarray(vals, dtype=np.float64)


@dataclass(frozen=True)
class HEResult:
    """Sum and measured costs of one homomorphic aggregation."""

    total: np.ndarray
    bytes_per_client: int
    encrypt_seconds: float  # mean per client
    server_seconds: float
    decrypt_seconds: float


def he_sum(vectors: Mapping[int, np.ndarray] | Sequence[np.ndarray],
           params: CKKSParams | None = None) -> HEResult:
    """Encrypt each vector, add the ciphertexts at the server, decrypt the sum."""
    vecs = list(vectors.values()) if isinstance(vectors, Mapping) else list(vectors)
    if not vecs:
        raise ValueError("no vectors")
    agg = CKKSAggregator(params)
    t0 = time.perf_counter()
    cts = [agg.encrypt(v) for v in vecs]
    enc = (time.perf_counter() - t0) / len(vecs)
    t0 = time.perf_counter()
    summed = agg.server_sum(cts)
    srv = time.perf_counter() - t0
    t0 = time.perf_counter()
    total = agg.decrypt(summed, len(np.asarray(vecs[0]).reshape(-1)))
    dec = time.perf_counter() - t0
    return HEResult(total=total, bytes_per_client=int(np.mean([sum(map(len, c)) for c in cts])),
                    encrypt_seconds=enc, server_seconds=srv, decrypt_seconds=dec)
