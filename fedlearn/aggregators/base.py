"""What is summed, and the object that computes the sums.

A federated algorithm (a :class:`~fedlearn.strategy.Strategy`) decides *what* the server needs
from each hospital; an :class:`Aggregator` decides *how* the sum over hospitals is computed:
in the clear, under secure aggregation's masks, with differential-privacy noise, compressed.
The two never look inside each other (the same line TensorFlow Federated draws with its
aggregation factories), which is what lets any algorithm run under any aggregator.

The contract is one small object per hospital, a :class:`Contribution`:

* ``vectors``: named groups of tensors, e.g. ``"delta"`` (the model update, BatchNorm running
  statistics included unless they stay home) or ``"control"`` (SCAFFOLD's control-variate
  change);
* ``weight``: the hospital's weight ``w_k`` (its public size ``n_k``, or 1);
* ``counts``: exact scalars, e.g. FedNova's local step count ``tau_k``.

Every aggregator returns :class:`Sums`: ``sum_k w_k x_k`` for every vector and count, the exact
weight ``sum_k w_k``, the *denominator* a mean must divide by (the exact weight, or under DP a
public constant), and which hospitals ended up in the sums. What the aggregator measured on
the way (who was masked, which noise, which clip) travels with the result as
``measurements``, never in private logs.

Aggregators nest, client side first from the outside in, server side from the inside out::

    Compress(DistributedDP(Secure()))  # client: compress, clip+noise share, mask;
                                       # server: unmask the sum, account, decode
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch

from ..ledger import Release
from ..utils import StateDict, state_nbytes

if TYPE_CHECKING:
    from ..strategy import Strategy

__all__ = ["Contribution", "Sums", "AggregateResult", "RoundInfo", "RunInfo", "Aggregator",
           "Plain", "CompositionError", "weighted_sums", "contribution_releases",
           "sum_releases"]


class CompositionError(ValueError):
    """An algorithm and an aggregator (or two aggregators) that cannot mean anything together."""


@dataclass
class Contribution:
    """What hospital ``cid`` asks the server to sum this round.

    Attributes:
        cid: the hospital.
        vectors: named groups of tensors; each enters the sum multiplied by ``weight``.
        weight: ``w_k`` (``n_k`` for a weighted mean, 1 for an unweighted one).
        counts: exact scalars, also multiplied by ``weight`` in the sum.
        nbytes: bytes this contribution costs on the uplink (set by the aggregators' client
            side; defaults to the raw float size of the vectors; the few bytes of the
            scalars are not counted).
    """

    cid: int
    vectors: dict[str, StateDict]
    weight: float = 1.0
    counts: dict[str, float] = field(default_factory=dict)
    nbytes: int | None = None

    def __post_init__(self) -> None:
        if not self.weight >= 0:
            raise ValueError(f"hospital {self.cid}: weight must be >= 0, got {self.weight}")
        if self.nbytes is None:
            self.nbytes = self.raw_nbytes()

    def raw_nbytes(self) -> int:
        """Raw bytes of every vector (what sending them as float tensors costs)."""
        return sum(state_nbytes(v) for v in self.vectors.values())

    def with_vectors(self, vectors: dict[str, StateDict]) -> Contribution:
        return replace(self, vectors=vectors, nbytes=None)


@dataclass
class Sums:
    """``sum_k w_k x_k`` over the hospitals in ``included``.

    Attributes:
        vectors: the weighted sums, float64, key by key.
        counts: the weighted sums of the counts (exact).
        weight: ``sum_k w_k`` over ``included`` (exact).
        denominator: what a mean divides by: ``weight`` itself, or a public constant chosen
            by a DP aggregator (McMahan et al.'s fixed denominator), so that the mean does
            not reveal how many hospitals took part.
        included: the hospitals whose contributions are in the sums.
    """

    vectors: dict[str, StateDict]
    counts: dict[str, float]
    weight: float
    denominator: float
    included: tuple[int, ...]

    def mean(self, name: str, like: Mapping[str, torch.Tensor] | None = None) -> StateDict:
        """``vectors[name] / denominator``, cast to the dtypes of ``like`` (default float32)."""
        if self.denominator <= 0:
            raise ValueError("the weights sum to zero: no hospital trained on any example")
        out: StateDict = {}
        for k, v in self.vectors.get(name, {}).items():
            dtype = like[k].dtype if like is not None and k in like else torch.float32
            out[k] = (v / self.denominator).to(dtype)
        return out


@dataclass
class AggregateResult:
    """An aggregator's answer: the sums (``None`` if the round aborted) and what it measured."""

    sums: Sums | None
    measurements: dict[str, Any] = field(default_factory=dict)
    aborted: str | None = None


@dataclass(frozen=True)
class RunInfo:
    """What every aggregator may know before round 1 (all of it public).

    Attributes:
        weights: the public weight ``w_k`` of every hospital (its size, or 1).
        buffer_keys: the floating-point buffers (BatchNorm running statistics) the strategy
            sends inside its ``"delta"``; every aggregator has one documented rule for them.
        strategy: the algorithm's name, for messages.
    """

    weights: Mapping[int, float]
    buffer_keys: frozenset[str] = frozenset()
    strategy: str = ""


@dataclass(frozen=True)
class RoundInfo:
    """What every aggregator may know about one round.

    Attributes:
        rnd: the round.
        instructed: how many hospitals were asked to train (the most that can be summed).
        template: zero tensors of every summed vector (for a round nobody reports to, which
            a DP aggregator still answers with noise).
    """

    rnd: int
    instructed: int
    template: Mapping[str, StateDict] = field(default_factory=dict)


def weighted_sums(contributions: Sequence[Contribution],
                  template: Mapping[str, StateDict] | None = None,
                  ) -> tuple[dict[str, StateDict], dict[str, float], float]:
    """``sum_k w_k x_k`` in float64, in the order given (so the order fixes the rounding).

    Raises:
        CompositionError: two contributions name different vectors, keys or shapes.
    """
    ref = contributions[0].vectors if contributions else dict(template or {})
    sums = {name: {k: torch.zeros(v.shape, dtype=torch.float64) for k, v in vec.items()}
            for name, vec in ref.items()}
    counts: dict[str, float] = dict.fromkeys(contributions[0].counts if contributions else (), 0.0)
    weight = 0.0
    for c in contributions:
        if c.vectors.keys() != sums.keys() or c.counts.keys() != counts.keys():
            raise CompositionError(
                f"hospital {c.cid} sends {sorted(c.vectors)} / counts {sorted(c.counts)}, "
                f"others send {sorted(sums)} / {sorted(counts)}")
        w = float(c.weight)
        weight += w
        for name, vec in c.vectors.items():
            acc = sums[name]
            if vec.keys() != acc.keys():
                raise CompositionError(f"hospital {c.cid}: {name!r} has keys {sorted(vec)}, "
                                       f"expected {sorted(acc)}")
            for k, v in vec.items():
                if v.shape != acc[k].shape:
                    raise CompositionError(
                        f"hospital {c.cid}: {name}[{k!r}] has shape {tuple(v.shape)}, "
                        f"expected {tuple(acc[k].shape)}")
                acc[k] += w * v.double()
        for k, v in c.counts.items():
            counts[k] += w * float(v)
    return sums, counts, weight


def _numel(vec: Mapping[str, torch.Tensor]) -> int:
    return int(sum(v.numel() for v in vec.values()))


def contribution_releases(contributions: Sequence[Contribution], rnd: int, *, seen_by: str,
                          mechanism: str, status: str) -> list[Release]:
    """Ledger rows for what each hospital sent: every vector, its weight (if not 1), counts.

    Aggregators put these in ``measurements["releases"]``; outer layers relabel them (a DP
    layer marks what its noise covers), and the run adds its own (losses, metrics).
    """
    rows: list[Release] = []
    for c in contributions:
        for name, vec in sorted(c.vectors.items()):
            if vec:
                rows.append(Release(rnd, name, _numel(vec), "hospital", (c.cid,), seen_by,
                                    mechanism, status))
        if c.weight != 1.0:
            rows.append(Release(rnd, "weight", 1, "hospital", (c.cid,), seen_by, mechanism,
                                status))
        for k in sorted(c.counts):
            rows.append(Release(rnd, f"count {k}", 1, "hospital", (c.cid,), seen_by,
                                mechanism, status))
    return rows


def sum_releases(sums: Sums, rnd: int, *, mechanism: str, status: str,
                 seen_by: str = "server") -> list[Release]:
    """Ledger rows for revealed sums: every summed vector, the weight sum, each count sum."""
    about = tuple(sums.included)
    rows = [Release(rnd, f"sum of {name}", _numel(vec), "server", about, seen_by, mechanism,
                    status) for name, vec in sorted(sums.vectors.items()) if vec]
    rows.append(Release(rnd, "sum of weight", 1, "server", about, seen_by, mechanism, status))
    rows += [Release(rnd, f"sum of count {k}", 1, "server", about, seen_by, mechanism, status)
             for k in sorted(sums.counts)]
    return rows


class Aggregator:
    """How the server computes the sums; subclasses change one thing.

    Client side, :meth:`prepare` runs this layer's step on one hospital's contribution and
    then the inner layer's (outer first). Server side, :meth:`aggregate` gets the inner
    layer's sums and finishes them (inner first). :meth:`setup` is called once before
    round 1 and :meth:`check` when an algorithm is paired with this aggregator, so that a
    pairing that cannot mean anything is refused before any training.

    Attributes:
        needs_individual: the rule must read each hospital's vector (a median, Krum), which
            a layer that hides individual vectors (secure aggregation) refuses.
        hides_individual: the server only ever sees sums (secure aggregation).
    """

    name = "aggregator"
    needs_individual = False
    hides_individual = False

    def __init__(self, inner: Aggregator | None = None) -> None:
        self.inner = inner

    # ------------------------------------------------------------------ composition
    def layers(self) -> list[Aggregator]:
        """This aggregator and every inner one, outermost first."""
        out: list[Aggregator] = []
        a: Aggregator | None = self
        while a is not None:
            out.append(a)
            a = a.inner
        return out

    def leaf(self) -> Aggregator:
        """The innermost aggregator: the one that actually adds (Plain or Secure)."""
        return self.layers()[-1]

    def with_leaf(self, leaf: Aggregator) -> Aggregator:
        """A copy of this stack with its innermost aggregator, a :class:`Plain` sum, replaced
        by ``leaf`` (e.g. a secure sum). Any other innermost rule is refused: a median must
        read each hospital's update, and two leaves cannot both compute the sum.
        """
        if self.inner is None:
            if not isinstance(self, Plain):
                why = (" (it must read each hospital's update; secure aggregation reveals "
                       "only the sum)") if self.needs_individual and leaf.hides_individual \
                    else ""
                raise CompositionError(
                    f"the strategy already aggregates with {self!r}{why}: cannot also sum "
                    f"with {leaf!r}")
            return leaf
        out = copy.copy(self)
        out.inner = self.inner.with_leaf(leaf)
        out.check_inner()
        return out

    def check_inner(self) -> None:
        """Refuse an inner aggregator this layer cannot wrap (override to restrict)."""
        if self.inner is not None:
            self.inner.check_inner()

    def check(self, strategy: Strategy) -> None:
        """Refuse an algorithm this stack cannot serve (at construction, with a reason)."""
        if getattr(strategy, "single_update", False) and any(
                a.hides_individual or getattr(a, "is_dp", False) for a in self.layers()):
            raise CompositionError(
                f"{getattr(strategy, 'name', type(strategy).__name__)} aggregates one "
                "hospital's update per round, so its 'sum' IS that hospital's update: secure "
                "aggregation would hide nothing and DP noise on it would not be the analysed "
                "mechanism. Run it in the clear, or choose an averaging algorithm.")
        if self.inner is not None:
            self.inner.check(strategy)

    # ------------------------------------------------------------------ the work
    def setup(self, info: RunInfo) -> None:
        """Called once before round 1 with the public facts of the run."""
        if self.inner is not None:
            self.inner.setup(info)

    def prepare(self, contribution: Contribution, info: RoundInfo) -> Contribution:
        """Client side: this layer's step, then the inner layers'. Default: nothing."""
        return contribution if self.inner is None else self.inner.prepare(contribution, info)

    def aggregate(self, contributions: Sequence[Contribution], info: RoundInfo
                  ) -> AggregateResult:
        """Server side: the sums of the (prepared) contributions."""
        if self.inner is None:
            raise NotImplementedError(f"{type(self).__name__} must define aggregate()")
        return self.inner.aggregate(contributions, info)

    def describe(self) -> str:
        """The stack as one line, e.g. ``DistributedDP(z=1.0, C=0.5) > Secure(t=2/3)``."""
        return " > ".join(repr(a) for a in self.layers())

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Plain(Aggregator):
    """The sums in the clear: the server sees every hospital's contribution.

    Its ledger rows say so: each hospital's vectors, weight and counts, seen by the server,
    unprotected (a DP layer above relabels what its noise covers).

    Buffers (BatchNorm running statistics) are summed like everything else: plain FedAvg
    averages them with the same weights as the parameters.
    """

    name = "plain"

    def __init__(self) -> None:
        super().__init__(None)

    def aggregate(self, contributions: Sequence[Contribution], info: RoundInfo
                  ) -> AggregateResult:
        if not contributions:
            return AggregateResult(None, {"plain": {"summed": 0}, "releases": []},
                                   aborted="no hospital reported")
        vectors, counts, weight = weighted_sums(contributions, info.template)
        sums = Sums(vectors, counts, weight, weight, tuple(c.cid for c in contributions))
        releases = contribution_releases(contributions, info.rnd, seen_by="server",
                                         mechanism="none", status="unprotected")
        return AggregateResult(sums, {"plain": {"summed": len(contributions)},
                                      "releases": releases})
