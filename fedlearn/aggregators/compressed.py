"""``Compress``: each hospital compresses its model delta before the inner aggregator sums.

The compressors themselves (8-bit quantisation, top-k sparsification, error feedback) live in
:mod:`fedlearn.compression`; this layer only decides *where* they run: on the hospital, on the
``"delta"`` vector, before every inner layer (so ``Compress(Secure())`` compresses and then
masks). Side payloads such as SCAFFOLD's ``"control"`` are sent uncompressed.

Under secure aggregation the masked vector fills the whole ring whatever the compressor did,
so compression then changes the *values* summed (what the tests compare) but saves no bytes;
the measured ``nbytes`` are the inner layer's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..utils import derive_seed
from .base import AggregateResult, Aggregator, Contribution, Plain, RoundInfo, RunInfo

__all__ = ["Compress"]


class Compress(Aggregator):
    """Compress every hospital's ``"delta"`` on its way to ``inner``.

    Args:
        compressor: a :class:`fedlearn.compression.Compressor` (``Quantize8bit``, ``TopK``).
        inner: the aggregator that sums the decoded contributions (default :class:`Plain`).
        error_feedback: keep per-hospital residuals of what was not sent (on the hospital).
        seed: stochastic rounding of hospital ``k`` in round ``r`` draws from ``(seed, r, k)``.
    """

    name = "compress"

    def __init__(self, compressor, inner: Aggregator | None = None, *,  # noqa: ANN001
                 error_feedback: bool = True, seed: int = 0) -> None:
        super().__init__(inner if inner is not None else Plain())
        from ..compression import ErrorFeedback

        self.compressor = compressor
        self.error_feedback = error_feedback
        self.seed = seed
        self.feedback = ErrorFeedback(compressor)

    def setup(self, info: RunInfo) -> None:
        from ..compression import ErrorFeedback

        self.feedback = ErrorFeedback(self.compressor)
        super().setup(info)

    def prepare(self, contribution: Contribution, info: RoundInfo) -> Contribution:
        delta = contribution.vectors.get("delta")
        if delta is None:
            return super().prepare(contribution, info)
        gen = torch.Generator().manual_seed(derive_seed(self.seed, info.rnd, contribution.cid))
        if self.error_feedback:
            sent, nbytes = self.feedback(contribution.cid, delta, gen)
        else:
            sent, nbytes = self.compressor.compress(delta, gen)
        side = contribution.raw_nbytes() - sum(v.numel() * v.element_size()
                                               for v in delta.values())
        out = contribution.with_vectors({**contribution.vectors, "delta": sent})
        out.nbytes = nbytes + side  # an inner Secure layer overwrites this with the ring's size
        return super().prepare(out, info)

    def aggregate(self, contributions: Sequence[Contribution], info: RoundInfo
                  ) -> AggregateResult:
        res = self.inner.aggregate(contributions, info)  # type: ignore[union-attr]
        res.measurements["compress"] = {"compressor": repr(self.compressor),
                                        "error_feedback": self.error_feedback}
        return res

    def __repr__(self) -> str:
        return f"Compress({self.compressor!r}, error_feedback={self.error_feedback})"
