"""Cheaper uploads: 8-bit quantisation and top-k sparsification, with error feedback.

A hospital's uplink is often the slowest link of a round, and a float32 update costs 4 bytes
per parameter. Two classic compressors shrink it:

* :class:`Quantize8bit` maps each tensor affinely onto 256 levels between its min and max:
  1 byte per entry plus 8 bytes (offset and scale) per tensor, about 4x smaller. Rounding to
  the nearest level errs by at most ``scale / 2`` per entry; stochastic rounding
  (Alistarh et al., 2017, QSGD) errs more but is unbiased.
* :class:`TopK` sends only the ``k`` largest-magnitude entries of the whole update, as
  (int32 index, float32 value) pairs: 8 bytes each, so ``fraction=0.01`` is ~50x smaller.

Both lose information every round. **Error feedback** (Seide et al., 2014; Stich et al., 2018;
Karimireddy et al., 2019) keeps what was not sent in a per-client residual ``e`` and adds it
to the next update: ``p = delta + e;  sent = C(p);  e <- p - sent``. Nothing is lost, only
delayed: after any number of rounds, ``sum(sent) + e == sum(delta)``.

:class:`Compressed` wraps any strategy so that every client's update is compressed on its
way to the server (an aggregator layer, :class:`fedlearn.aggregators.Compress`: the server
sums the decoded updates and the round counts the *encoded* bytes).
"""

from __future__ import annotations

import math

import torch

from .strategy import Strategy, StrategyWrapper
from .utils import StateDict, flatten_state, state_nbytes, unflatten_state

__all__ = ["Compressor", "Quantize8bit", "TopK", "ErrorFeedback", "Compressed",
           "quantize_8bit", "dequantize_8bit", "compression_ratio"]


def quantize_8bit(x: torch.Tensor, generator: torch.Generator | None = None,
                  ) -> tuple[torch.Tensor, float, float]:
    """``(codes uint8, offset, scale)`` with ``x ~ offset + scale * codes``.

    Round to nearest, or stochastically when a ``generator`` is given (round up with
    probability equal to the fractional part, so the dequantised value is unbiased).
    """
    x64 = x.detach().double()
    if x64.numel() == 0:
        return torch.zeros(0, dtype=torch.uint8), 0.0, 0.0
    lo, hi = float(x64.min()), float(x64.max())
    scale = (hi - lo) / 255.0
    if scale == 0.0:
        return torch.zeros(x.shape, dtype=torch.uint8), lo, 0.0
    u = (x64 - lo) / scale
    if generator is None:
        q = torch.round(u)
    else:
        floor = torch.floor(u)
        q = floor + (torch.rand(u.shape, generator=generator, dtype=torch.float64)
                     < (u - floor)).double()
    return q.clamp_(0, 255).to(torch.uint8), lo, scale


def dequantize_8bit(codes: torch.Tensor, offset: float, scale: float,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Inverse of :func:`quantize_8bit` (up to the rounding error)."""
    return (offset + scale * codes.double()).to(dtype)


class Compressor:
    """Maps a delta to ``(what the server decodes, bytes on the wire)``."""

    name = "compressor"

    def compress(self, delta: StateDict, generator: torch.Generator | None = None,
                 ) -> tuple[StateDict, int]:
        raise NotImplementedError


class Quantize8bit(Compressor):
    """Per-tensor affine 8-bit quantisation: ``numel + 8`` bytes per tensor."""

    name = "8-bit"

    def __init__(self, stochastic: bool = False) -> None:
        self.stochastic = stochastic

    def compress(self, delta: StateDict, generator: torch.Generator | None = None,
                 ) -> tuple[StateDict, int]:
        out: StateDict = {}
        nbytes = 0
        for k, v in delta.items():
            codes, lo, scale = quantize_8bit(v, generator if self.stochastic else None)
            out[k] = dequantize_8bit(codes, lo, scale, v.dtype)
            nbytes += codes.numel() + 8  # one byte per entry, float32 offset and scale
        return out, nbytes

    def __repr__(self) -> str:
        return f"Quantize8bit(stochastic={self.stochastic})"


class TopK(Compressor):
    """Keep the ``k`` largest-magnitude entries of the whole (flattened) update.

    Give either ``k`` or ``fraction`` (``k = ceil(fraction * size)``, at least 1). Each kept
    entry costs an int32 index and a float32 value.
    """

    name = "top-k"

    def __init__(self, fraction: float | None = None, *, k: int | None = None) -> None:
        if (fraction is None) == (k is None):
            raise ValueError("give exactly one of fraction and k")
        if fraction is not None and not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        if k is not None and k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.fraction, self.k = fraction, k

    def num_kept(self, size: int) -> int:
        if self.k is not None:
            return min(self.k, size)
        return min(size, max(1, math.ceil(self.fraction * size)))  # type: ignore[operator]

    def compress(self, delta: StateDict, generator: torch.Generator | None = None,
                 ) -> tuple[StateDict, int]:
        flat = flatten_state(delta)
        k = self.num_kept(flat.numel())
        idx = torch.topk(flat.abs(), k, sorted=False).indices
        sparse = torch.zeros_like(flat)
        sparse[idx] = flat[idx]
        return unflatten_state(sparse, delta), 8 * k

    def __repr__(self) -> str:
        return f"TopK(fraction={self.fraction})" if self.k is None else f"TopK(k={self.k})"


class ErrorFeedback:
    """Per-client residuals: compress ``delta + e`` and remember what was left out."""

    def __init__(self, compressor: Compressor) -> None:
        self.compressor = compressor
        self.residuals: dict[int, StateDict] = {}

    def __call__(self, cid: int, delta: StateDict, generator: torch.Generator | None = None,
                 ) -> tuple[StateDict, int]:
        e = self.residuals.get(cid)
        p = {k: v + e[k] for k, v in delta.items()} if e is not None else dict(delta)
        sent, nbytes = self.compressor.compress(p, generator)
        self.residuals[cid] = {k: p[k] - sent[k] for k in p}
        return sent, nbytes


class Compressed(StrategyWrapper):
    """``inner`` with every hospital's delta compressed on the uplink.

    A thin constructor: the strategy's aggregator becomes
    :class:`~fedlearn.aggregators.Compress` around whatever aggregator ``inner`` had, so
    ``Compressed(SecureAggregation(FedAvg(...)), TopK(...))`` compresses on the hospital and
    then masks. Everything else (local training, SCAFFOLD's control variates, FedBN's
    personal layers, the server step) is ``inner``'s.

    Args:
        inner: any strategy.
        compressor: :class:`Quantize8bit`, :class:`TopK` or another :class:`Compressor`.
        error_feedback: keep per-client residuals (recommended for top-k).
        seed: for stochastic rounding; client ``k`` in round ``r`` uses ``(seed, r, k)``.

    Side payloads (SCAFFOLD's control variates) are sent uncompressed; their bytes are
    counted on top of the compressed delta's.
    """

    def __init__(self, inner: Strategy, compressor: Compressor, *, error_feedback: bool = True,
                 seed: int = 0) -> None:
        from .aggregators.compressed import Compress

        super().__init__(inner)
        self.compressor = compressor
        self.error_feedback = error_feedback
        self.seed = seed
        self.layer = Compress(compressor, inner.aggregator, error_feedback=error_feedback,
                              seed=seed)
        self.aggregator = self.layer
        self.name = f"{getattr(inner, 'name', type(inner).__name__)} + {compressor.name}" + (
            " + EF" if error_feedback else "")

    @property
    def feedback(self) -> ErrorFeedback:
        """The hospitals' residuals (what error feedback has not sent yet)."""
        return self.layer.feedback

    def __repr__(self) -> str:
        return (f"Compressed({self.inner!r}, {self.compressor!r}, "
                f"error_feedback={self.error_feedback})")


def compression_ratio(compressor: Compressor, delta: StateDict) -> float:
    """Raw float bytes divided by compressed bytes for ``delta`` (e.g. ~4 for 8-bit)."""
    return state_nbytes(delta) / compressor.compress(delta)[1]

