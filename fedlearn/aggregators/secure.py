"""``Secure``: the sums under secure aggregation; the server never sees one hospital's vector.

For any algorithm whose server needs sums, secure aggregation can provide them without the
terms. Each hospital encodes its whole contribution into one vector of the ring Z_(2^bits),

    [ w_k * clip(x_k) as fixed point ...,  w_k * count_k ...,  w_k ],

the Bonawitz et al. (2017) protocol of :mod:`fedlearn.secagg.protocol` masks it with pairwise
and self masks, and the server learns only the sum over the hospitals whose masked input
arrived (Shamir shares recover the masks of those that dropped out afterwards).

Two kinds of coordinates, two rules:

* **floats** (deltas, buffers, control variates) are clipped to ``[-clip, clip]`` per entry
  and rounded to a fixed-point grid sized so that a sum of ``n`` of them can never wrap
  around: the decoded mean is the clear mean up to :meth:`Secure.bound` per coordinate;
* **integers** (the weights ``w_k``, step counts) are summed *exactly*. Their sum must stay
  below ``2^(bits-1)``; a configuration that could wrap is refused before round 1 (public
  bounds: the largest weight times the number of hospitals), and a hospital whose count
  would break the bound refuses to send it, instead of letting the sum wrap silently.

Buffers (BatchNorm running statistics) are summed under the same masks as the parameters:
no extra release.

The threshold ``t`` is fixed when the round is configured, from the number of hospitals
*instructed*, and the protocol uses that same ``t``: a round with fewer reports aborts and the
model stays as it was. Distributed DP sizes each hospital's noise share for this ``t``, the
fewest hospitals whose inputs can be in a sum that is revealed.

**Ledger.** Each hospital's masked input is listed as ``masked`` (sent, unreadable alone), and
the revealed sums as ``unprotected`` unless a DP layer above noises them. The measurement
``clipped_fraction`` (how many coordinates hit ``clip``) is a diagnostic of this simulation,
which can read the inputs before masking; a real server cannot compute it, and it is not a
release.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..utils import derive_seed, flatten_state, unflatten_state
from .base import (
    AggregateResult,
    Aggregator,
    CompositionError,
    Contribution,
    RoundInfo,
    RunInfo,
    Sums,
    contribution_releases,
    sum_releases,
)

__all__ = ["Secure"]


class Secure(Aggregator):
    """Sums under Bonawitz et al.'s masks with Shamir dropout recovery (a leaf aggregator).

    Args:
        clip: bound on every float entry (the fixed-point range); larger entries are clipped
            and the fraction that was is measured.
        bits: the ring Z_(2^bits), 2..53.
        threshold: ``t`` as a count (int >= 2) or a fraction of the instructed hospitals
            (float in (0, 1]; ``t = max(2, ceil(fraction * n))``).
        max_weight: public bound on a hospital's weight (default: the largest public weight).
        dropout_rate: probability that a hospital goes offline after its masked input (it
            still counts: the protocol recovers), to show dropout recovery.
        seed: seeds the protocol's keys and the simulated dropouts; ``None`` uses OS randomness.
    """

    name = "secure"
    hides_individual = True

    def __init__(self, *, clip: float = 1.0, bits: int = 32, threshold: int | float = 2 / 3,
                 max_weight: int | None = None, dropout_rate: float = 0.0,
                 seed: int | None = 0) -> None:
        super().__init__(None)
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise ValueError(f"threshold must be an int >= 2 or a fraction in (0, 1], "
                             f"got {threshold!r}")
        if isinstance(threshold, float) and not 0 < threshold <= 1:
            raise ValueError(f"threshold: a fraction must be in (0, 1], got {threshold}")
        if isinstance(threshold, int) and threshold < 2:
            raise ValueError(f"threshold must be >= 2 hospitals (t = 1 would let the server "
                             f"unmask a single input), got {threshold}")
        if not (isinstance(clip, int | float) and math.isfinite(clip) and clip > 0):
            raise ValueError(f"clip must be a finite number > 0 (the fixed-point range of "
                             f"every entry), got {clip!r}")
        if not 2 <= bits <= 53:
            raise ValueError(f"bits must be in [2, 53] (float64 holds integers exactly up to "
                             f"2^53), got {bits}")
        if not 0 <= dropout_rate < 1:
            raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}")
        if max_weight is not None and max_weight < 1:
            raise ValueError(f"max_weight must be >= 1, got {max_weight}")
        self.clip = float(clip)
        self.bits = bits
        self.threshold = threshold
        self.max_weight = max_weight
        self.dropout_rate = dropout_rate
        self.seed = seed
        self._weights: dict[int, float] = {}

    # ------------------------------------------------------------------ public bounds
    def threshold_for(self, n: int) -> int:
        """``t`` for a round in which ``n`` hospitals were instructed."""
        if isinstance(self.threshold, int):
            return self.threshold
        return max(2, math.ceil(self.threshold * n))

    min_summands = threshold_for  # what distributed DP sizes its noise shares for

    def _wmax(self) -> float:
        if self.max_weight is not None:
            return float(self.max_weight)
        return max(self._weights.values()) if self._weights else 1.0

    def codec(self, n: int):  # noqa: ANN201 - FixedPoint, imported lazily
        """The fixed-point code for a round of ``n`` instructed hospitals (values ``w x``)."""
        from ..secagg.quantize import FixedPoint

        return FixedPoint(clip=self.clip * self._wmax(), num_summands=max(n, 1), bits=self.bits)

    def bound(self, n_summed: int, weight_sum: float, n: int) -> float:
        """Worst-case |secure mean - clear mean| per coordinate for unclipped entries."""
        return self.codec(n).error_bound(n_summed) / weight_sum

    def _int_limit(self, n: int) -> int:
        """Largest integer one hospital may put in an exact coordinate (n of them summed)."""
        return ((1 << (self.bits - 1)) - 1) // max(n, 1)

    # ------------------------------------------------------------------ aggregator hooks
    def check(self, strategy) -> None:  # noqa: ANN001
        if not getattr(strategy, "integer_counts", True):
            raise CompositionError(
                f"{getattr(strategy, 'name', type(strategy).__name__)} sends non-integer counts "
                "(e.g. FedNova's momentum-weighted step counts); secure aggregation sums counts "
                "exactly as integers. Use plain SGD local steps (momentum=0).")
        super().check(strategy)

    def setup(self, info: RunInfo) -> None:
        self._weights = dict(info.weights)
        n = len(self._weights)
        if isinstance(self.threshold, int) and self.threshold > n:
            raise CompositionError(
                f"secure aggregation threshold t = {self.threshold} but the run has only {n} "
                f"hospitals: every round would abort and the model never train. Use "
                f"threshold <= {n} (or a fraction such as 2/3).")
        wmax = self._wmax()
        if wmax * n > self._int_limit(1):
            need = math.ceil(math.log2(wmax * n + 1)) + 1
            raise CompositionError(
                f"secure aggregation with bits={self.bits}: the weight coordinate of {n} "
                f"hospitals of weight up to {wmax:g} sums to up to {wmax * n:g}, beyond "
                f"2^{self.bits - 1} - 1, and would wrap around. Use bits >= {need}, or "
                "unweighted averaging.")
        self.codec(n)  # raises if the ring cannot hold the float coordinates either

    def prepare(self, contribution: Contribution, info: RoundInfo) -> Contribution:
        from ..secagg.costs import client_bytes

        w = contribution.weight
        if w != int(w):
            raise CompositionError(f"hospital {contribution.cid}: weight {w} is not an integer; "
                                   "secure aggregation sums weights exactly")
        if w > self._wmax():
            raise ValueError(f"hospital {contribution.cid}: weight {w:g} is above the public "
                             f"max_weight {self._wmax():g} the fixed-point range was sized for")
        limit = self._int_limit(info.instructed)
        for k, v in contribution.counts.items():
            wc = w * v
            if wc != int(wc):
                raise CompositionError(f"hospital {contribution.cid}: count {k!r} = {v} times "
                                       f"weight {w:g} is not an integer; counts are summed "
                                       "exactly")
            if abs(wc) > limit:
                raise ValueError(f"hospital {contribution.cid}: count {k!r} x weight = {wc:g} "
                                 f"exceeds {limit} (2^{self.bits - 1} over "
                                 f"{info.instructed} hospitals): the sum could wrap. Use more "
                                 "bits.")
        d = sum(t.numel() for vec in contribution.vectors.values() for t in vec.values())
        d += len(contribution.counts) + 1
        up = sum(v for k, v in client_bytes(max(info.instructed, 2), d, self.bits).items()
                 if k.endswith("(up)"))
        contribution.nbytes = int(up)
        return contribution

    def aggregate(self, contributions: Sequence[Contribution], info: RoundInfo
                  ) -> AggregateResult:
        from ..secagg.errors import SecAggAbort
        from ..secagg.simulate import Dropouts, run_secure_sum

        n_inst = max(info.instructed, len(contributions))
        t = self.threshold_for(n_inst)
        row: dict[str, object] = {"instructed": n_inst, "reported": len(contributions),
                                  "threshold": t}
        masked = contribution_releases(contributions, info.rnd, seen_by="server (masked)",
                                       mechanism="secure aggregation", status="masked")
        if len(contributions) < t:
            reason = f"{len(contributions)} hospital(s) reported, fewer than t = {t}"
            return AggregateResult(None, {"secure": {**row, "aborted": reason},
                                          "releases": masked}, aborted=reason)
        names = sorted(contributions[0].vectors)
        layout = {name: contributions[0].vectors[name] for name in names}
        count_keys = sorted(contributions[0].counts)
        codec = self.codec(n_inst)
        inputs: dict[int, np.ndarray] = {}
        clipped = 0.0
        for c in contributions:
            if sorted(c.vectors) != names or sorted(c.counts) != count_keys:
                raise CompositionError(f"hospital {c.cid} sends {sorted(c.vectors)}, "
                                       f"others {names}")
            vec = torch.cat([flatten_state(c.vectors[name]).double() for name in names]
                            ).numpy() if names else np.zeros(0)
            clipped += float(np.mean(np.abs(vec) > self.clip)) / len(contributions) \
                if vec.size else 0.0
            words = codec.encode(np.clip(vec, -self.clip, self.clip) * c.weight)
            ints = [int(c.weight * c.counts[k]) for k in count_keys] + [int(c.weight)]
            tail = (np.array(ints, dtype=np.int64).astype(np.uint64)
                    & np.uint64((1 << self.bits) - 1)).astype(words.dtype)
            inputs[c.cid] = np.concatenate([words, tail])
        drops = Dropouts()
        if self.dropout_rate > 0:
            rng = np.random.default_rng(derive_seed(self.seed or 0, info.rnd, 7))
            drops = Dropouts(before_unmask=frozenset(
                c.cid for c in contributions if rng.random() < self.dropout_rate))
        row.update(dropped_after_input=sorted(drops.before_unmask), clipped_fraction=clipped)
        try:
            res = run_secure_sum(inputs, t, self.bits, dropouts=drops, round_id=info.rnd,
                                 seed=None if self.seed is None else derive_seed(self.seed,
                                                                                 info.rnd))
        except SecAggAbort as exc:
            return AggregateResult(None, {"secure": {**row, "aborted": str(exc)},
                                          "releases": masked}, aborted=str(exc))
        half = 1 << (self.bits - 1)
        tail_ints = [int(x) - (1 << self.bits) if int(x) >= half else int(x)
                     for x in res.total[-(len(count_keys) + 1):]]
        weight_sum = float(tail_ints[-1])
        n_float = sum(t_.numel() for vec in layout.values() for t_ in vec.values())
        decoded = torch.from_numpy(codec.decode(res.total[:n_float]))
        vectors, offset = {}, 0
        for name in names:
            size = sum(t_.numel() for t_ in layout[name].values())
            like = {k: v.double() for k, v in layout[name].items()}
            vectors[name] = unflatten_state(decoded[offset:offset + size], like)
            offset += size
        counts = {k: float(v) for k, v in zip(count_keys, tail_ints[:-1], strict=True)}
        row.update(included=list(res.included), weight_sum=weight_sum,
                   bound=codec.error_bound(len(res.included)) / max(weight_sum, 1e-300),
                   bytes_per_client=float(np.mean([res.bytes_sent[c] + res.bytes_received[c]
                                                    for c in res.included])),
                   seconds=sum(res.client_seconds.values()) + res.server_seconds)
        sums = Sums(vectors, counts, weight_sum, weight_sum, tuple(res.included))
        releases = masked + sum_releases(sums, info.rnd, mechanism="secure sum",
                                         status="unprotected")
        return AggregateResult(sums, {"secure": row, "releases": releases})

    def __repr__(self) -> str:
        return (f"Secure(clip={self.clip}, bits={self.bits}, threshold={self.threshold}, "
                f"max_weight={self.max_weight})")
