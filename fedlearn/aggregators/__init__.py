"""How the server computes the sums an algorithm asks for: in the clear, under secure
aggregation, with central or distributed DP, compressed; nested like TFF's aggregation
factories. See :mod:`.base` for the contract and the README's aggregator table.

* :class:`Plain` - the sums in the clear;
* :class:`Secure` - Bonawitz et al.'s masks with dropout recovery (the server sees sums only);
* :class:`CentralDP` - the server clips each contribution and noises the sum;
* :class:`DistributedDP` - each hospital clips and adds a noise share before ``inner``;
* :class:`Compress` - each hospital compresses its delta before ``inner``.
"""

from .base import (
    AggregateResult,
    Aggregator,
    CompositionError,
    Contribution,
    Plain,
    RoundInfo,
    RunInfo,
    Sums,
    weighted_sums,
)
from .compressed import Compress
from .dp import AdaptiveClipping, CentralDP, DistributedDP, adaptive_update_multiplier, clip_vectors
from .secure import Secure

__all__ = [
    "AggregateResult", "Aggregator", "CompositionError", "Contribution", "Plain", "RoundInfo",
    "RunInfo", "Sums", "weighted_sums",
    "Compress",
    "AdaptiveClipping", "CentralDP", "DistributedDP", "adaptive_update_multiplier",
    "clip_vectors",
    "Secure",
]
