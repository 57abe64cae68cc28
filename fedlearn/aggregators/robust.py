"""Robust aggregation: rules that a few harmful hospitals cannot drag arbitrarily far.

The mean has breakdown point 0: ONE hospital that sends ``x = 1e6`` moves FedAvg's model by
``1e6 / n``. A *robust* rule bounds what ``f`` arbitrary hospitals can do:

* :class:`Median` - the coordinate-wise median (Yin et al., 2018). Each coordinate of the
  result lies between two honest values as long as ``f < n/2``.
* :class:`TrimmedMean` - per coordinate, drop the ``floor(beta n)`` largest and smallest
  values and average the rest (Yin et al., 2018); ``beta = 0`` is the mean. Survives
  ``f <= floor(beta n)``.
* :class:`Krum` - pick the update closest (in squared L2 distance) to its ``n - f - 2``
  nearest neighbours (Blanchard et al., 2017); ``m > 1`` averages the ``m`` best
  (Multi-Krum). Needs ``n > 2f + 2``.
* :class:`CenteredClipping` - start at last round's aggregate ``v`` and move it by the mean
  of the updates' differences from ``v``, each clipped to norm ``tau`` (Karimireddy et al.,
  2021): no hospital moves the centre by more than ``tau / n`` per iteration.
* :class:`NormBound` - scale every update to L2 norm ``<= max_norm`` (Sun et al., 2019),
  then sum with the inner aggregator. Not robust on its own, but it caps the damage of a
  *scaled* update, and on the hospital side it can run under secure aggregation.

**One hospital, one vote.** The four rules above count each hospital once, and refuse a
strategy built with ``weighted=True``: a hospital's claimed size is as much under its control
as its update (a malicious site could claim a million patients), and a weighted algorithm's
server state (SCAFFOLD's ``1/N``) would be wrong for an unweighted centre. Their result is
returned as :class:`~.base.Sums` of an unweighted mean (``vectors = K * centre``,
``weight = denominator = K`` for the ``K`` hospitals in ``included``), so every strategy's
server step (FedAvg, momentum, Adam, SCAFFOLD's control variates, FedNova's normalisation)
runs unchanged on the robust centre.
Every number a hospital sends, its counts (FedNova's step count) included, is one coordinate
of the vector the rule sees.

**Robust rules and secure aggregation pull against each other.** A median, a trimmed mean
or Krum must read each hospital's vector; secure aggregation exists so that the server never
does, and DP noise is calibrated to the sensitivity of a *sum*. These rules are leaf
aggregators with ``needs_individual = True`` and refuse, at construction, to be combined with
:class:`~.secure.Secure` or a DP layer (:meth:`RobustRule.with_leaf`). Only hospital-side
norm bounding (:class:`NormBound` with ``where="client"``) survives secure aggregation, and
only against *faulty* hospitals: a malicious one runs its own software and simply skips it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ..errors import ConfigError
from ..utils import StateDict
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
from .dp import clip_vectors

try:  # the release ledger (issue 13); absent before it is merged
    from .base import contribution_releases
except ImportError:  # pragma: no cover - depends on the merge order
    contribution_releases = None

__all__ = ["RobustRule", "Median", "TrimmedMean", "Krum", "CenteredClipping", "NormBound",
           "coordinate_median", "trimmed_mean", "krum_scores", "krum_select"]


# ---------------------------------------------------------------------- the rules as maths
def coordinate_median(x: torch.Tensor) -> torch.Tensor:
    """Median of each column of ``x`` (``K x d``); for even ``K`` the mean of the two middle
    values, as :func:`numpy.median` (``torch.median`` returns the lower one)."""
    s = torch.sort(x, dim=0).values
    k = x.shape[0]
    return (s[(k - 1) // 2] + s[k // 2]) / 2


def trimmed_mean(x: torch.Tensor, beta: float) -> torch.Tensor:
    """Per column, drop the ``floor(beta K)`` smallest and largest values and average the
    rest (the same cut as :func:`scipy.stats.trim_mean`)."""
    k = x.shape[0]
    cut = int(math.floor(beta * k))
    s = torch.sort(x, dim=0).values
    return s[cut:k - cut].mean(dim=0)


def krum_scores(x: torch.Tensor, f: int) -> torch.Tensor:
    """Krum's score of each row: the sum of its squared distances to its ``K - f - 2``
    nearest other rows (Blanchard et al., 2017, section 4)."""
    k = x.shape[0]
    d2 = torch.cdist(x, x).pow(2)
    d2.fill_diagonal_(float("inf"))
    nearest = torch.sort(d2, dim=1).values[:, :k - f - 2]
    return nearest.sum(dim=1)


def krum_select(x: torch.Tensor, f: int, m: int = 1) -> list[int]:
    """The ``m`` rows with the lowest Krum scores (ties broken by row order)."""
    scores = krum_scores(x, f)
    order = sorted(range(x.shape[0]), key=lambda i: (float(scores[i]), i))
    return order[:m]


# ---------------------------------------------------------------------- flattening
def _layout(c: Contribution) -> list[tuple[str, str, torch.Size]]:
    return [(name, k, v.shape) for name in sorted(c.vectors) for k, v in
            sorted(c.vectors[name].items())]


def _flat(c: Contribution) -> torch.Tensor:
    parts = [c.vectors[name][k].detach().double().reshape(-1) for name, k, _ in _layout(c)]
    parts.append(torch.tensor([float(c.counts[k]) for k in sorted(c.counts)],
                              dtype=torch.float64))
    return torch.cat(parts)


def _unflat(vec: torch.Tensor, like: Contribution
            ) -> tuple[dict[str, StateDict], dict[str, float]]:
    vectors: dict[str, StateDict] = {name: {} for name in like.vectors}
    i = 0
    for name, k, shape in _layout(like):
        n = int(torch.Size(shape).numel())
        vectors[name][k] = vec[i:i + n].reshape(shape)
        i += n
    counts = {k: float(vec[i + j]) for j, k in enumerate(sorted(like.counts))}
    return vectors, counts


def _who(layers: Sequence[Aggregator]) -> str:
    return " > ".join(repr(a) for a in layers)


class RobustRule(Aggregator):
    """A leaf aggregator that reads every hospital's vector and returns a robust centre.

    Subclasses define :meth:`centre` on the ``K x d`` matrix of flattened contributions.
    Attach one to any strategy with ``strategy.aggregator = Median()``.
    """

    name = "robust"
    needs_individual = True

    def __init__(self) -> None:
        super().__init__(None)
        self.num_hospitals: int | None = None

    # ------------------------------------------------------------------ composition
    def refusal(self, other: Aggregator) -> str:
        """Why this rule cannot be combined with ``other`` (a secure or DP layer)."""
        if other.hides_individual or any(a.hides_individual for a in other.layers()):
            return (f"{self!r} must read each hospital's update, and secure aggregation "
                    "exists so that the server sees only their sum. Choose one: drop the "
                    "robust rule and bound norms on the hospitals instead (strategy.aggregator = "
                    "NormBound(C, where='client'), then SecureAggregation(strategy)), or drop "
                    "secure aggregation")
        if getattr(other, "is_dp", False) or any(getattr(a, "is_dp", False)
                                                 for a in other.layers()):
            return (f"{self!r} is not a sum: DP noise calibrated to the sensitivity of a sum "
                    "of clipped updates would not be the analysed mechanism. Run the robust "
                    "rule without DP, or DP without the robust rule")
        return f"{self!r} already aggregates (it is a leaf); cannot also sum with {other!r}"

    def with_leaf(self, leaf: Aggregator) -> Aggregator:
        """Refused: a robust rule is a leaf that reads individual vectors (see the module)."""
        raise CompositionError(self.refusal(leaf))

    def check(self, strategy: Any) -> None:  # noqa: ANN401 - Strategy, imported lazily
        """Refuse a weighted strategy, and a stack that wraps this rule in a secure/DP layer."""
        if getattr(strategy, "weighted", False):
            raise CompositionError(
                f"{self!r} counts each hospital once (a claimed size is as easy to fake as an "
                f"update), but {getattr(strategy, 'name', type(strategy).__name__)} was built "
                "with weighted=True. Pass weighted=False to the strategy.")
        stack = getattr(strategy, "_aggregator", None)
        outer = [a for a in (stack.layers() if stack is not None else []) if a is not self]
        for a in outer:
            if a.hides_individual or getattr(a, "is_dp", False):
                raise CompositionError(f"{_who(stack.layers())}: {self.refusal(a)}")
        super().check(strategy)

    def setup(self, info: RunInfo) -> None:
        self.num_hospitals = len(info.weights)
        self.check_hospitals(self.num_hospitals)

    def check_hospitals(self, n: int) -> None:
        """Refuse a run whose number of hospitals this rule cannot serve (override)."""

    # ------------------------------------------------------------------ the work
    def centre(self, x: torch.Tensor, cids: Sequence[int]
               ) -> tuple[torch.Tensor, list[int], dict[str, Any]]:
        """The robust centre of the rows of ``x``, the hospitals it used, measurements."""
        raise NotImplementedError

    def aggregate(self, contributions: Sequence[Contribution], info: RoundInfo
                  ) -> AggregateResult:
        if not contributions:
            return AggregateResult(None, {self.name: {"summed": 0}, "releases": []},
                                   aborted="no hospital reported")
        weighted_sums(contributions, info.template)  # same vectors, keys, shapes everywhere
        # the server reads every reported update in the clear, the rejected ones included
        releases = [] if contribution_releases is None else contribution_releases(
            contributions, info.rnd, seen_by="server", mechanism="none", status="unprotected")
        why = self.too_few(len(contributions))
        if why is not None:
            return AggregateResult(None, {self.name: {"reported": len(contributions)},
                                          "releases": releases}, aborted=why)
        x = torch.stack([_flat(c) for c in contributions])
        cids = [c.cid for c in contributions]
        centre, used, meas = self.centre(x, cids)
        k = float(len(used))
        vectors, counts = _unflat(centre * k, contributions[0])
        sums = Sums(vectors, counts, k, k, tuple(used))
        meas = {"reported": len(contributions), "used": len(used), **meas}
        return AggregateResult(sums, {self.name: meas, "releases": releases})

    def too_few(self, k: int) -> str | None:
        """Why a round with ``k`` reports cannot be aggregated (it then aborts), or None."""
        return None


class Median(RobustRule):
    """Coordinate-wise median: survives ``f < n/2`` arbitrary hospitals (Yin et al., 2018).

    It pays when nobody attacks: with label-skewed hospitals the median follows the majority
    and can discard a hospital that is merely different.
    """

    name = "median"

    def centre(self, x: torch.Tensor, cids: Sequence[int]
               ) -> tuple[torch.Tensor, list[int], dict[str, Any]]:
        return coordinate_median(x), list(cids), {}

    def __repr__(self) -> str:
        return "Median()"


class TrimmedMean(RobustRule):
    """Coordinate-wise trimmed mean (Yin et al., 2018).

    Args:
        beta: fraction cut at EACH end, ``0 <= beta < 0.5``; ``floor(beta K)`` values per
            side (as :func:`scipy.stats.trim_mean`). ``beta = 0`` is the unweighted mean.
    """

    name = "trimmed_mean"

    def __init__(self, beta: float = 0.1) -> None:
        super().__init__()
        if not (isinstance(beta, int | float) and not isinstance(beta, bool)
                and 0 <= beta < 0.5):
            raise ConfigError(
                f"TrimmedMean: beta={beta!r} is the fraction cut at EACH end, so it must be in "
                "[0, 0.5): at 0.5 nothing is left to average. Use e.g. beta=0.1 (or Median() "
                "for the limit)")
        self.beta = float(beta)

    def centre(self, x: torch.Tensor, cids: Sequence[int]
               ) -> tuple[torch.Tensor, list[int], dict[str, Any]]:
        cut = int(math.floor(self.beta * x.shape[0]))
        return trimmed_mean(x, self.beta), list(cids), {"trimmed_per_side": cut}

    def __repr__(self) -> str:
        return f"TrimmedMean(beta={self.beta:g})"


class Krum(RobustRule):
    """Krum / Multi-Krum (Blanchard et al., 2017; El Mhamdi et al., 2018).

    Each update is scored by the sum of squared distances to its ``n - f - 2`` nearest
    neighbours; the ``m`` lowest-scoring updates are averaged (``m = 1``: Krum). Blanchard
    et al.'s guarantee needs ``n > 2f + 2``, i.e. ``f < (n - 2) / 2``.

    Args:
        f: the number of harmful hospitals to tolerate.
        m: how many selected updates to average (``m = n`` with ``f = 0`` is the mean).
    """

    name = "krum"

    def __init__(self, f: int = 1, m: int = 1) -> None:
        super().__init__()
        if isinstance(f, bool) or not isinstance(f, int) or f < 0:
            raise ConfigError(f"Krum: f={f!r} (hospitals tolerated) must be an int >= 0")
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ConfigError(f"Krum: m={m!r} (updates averaged) must be an int >= 1; m=1 is "
                              "Krum, m>1 Multi-Krum")
        self.f = f
        self.m = m

    def check_hospitals(self, n: int) -> None:
        if 2 * self.f + 2 >= n:
            raise ConfigError(
                f"Krum: f={self.f} with n={n} hospitals: Krum needs f < (n - 2) / 2 = "
                f"{(n - 2) / 2:g}, i.e. n > 2f + 2 = {2 * self.f + 2}. Lower f to at most "
                f"{max(0, (n - 3) // 2)}, or use Median() (f < n/2)")
        if self.m > n:
            raise ConfigError(f"Krum: m={self.m} exceeds the n={n} hospitals; use m <= {n}")

    def too_few(self, k: int) -> str | None:
        if 2 * self.f + 2 >= k or self.m > k:
            need = max(2 * self.f + 2, self.m - 1)
            return f"Krum(f={self.f}, m={self.m}) needs more than {need} reports, got {k}"
        return None

    def centre(self, x: torch.Tensor, cids: Sequence[int]
               ) -> tuple[torch.Tensor, list[int], dict[str, Any]]:
        rows = krum_select(x, self.f, self.m)
        used = [cids[i] for i in rows]
        return x[rows].mean(dim=0), used, {"selected": used}

    def __repr__(self) -> str:
        return f"Krum(f={self.f}, m={self.m})"


class CenteredClipping(RobustRule):
    """Centered clipping (Karimireddy, He & Jaggi, 2021), ``iters`` iterations per round:

        v <- v + (1/K) sum_k clip(x_k - v, tau),   clip(z, tau) = z min(1, tau / ||z||),

    starting from last round's aggregate (the momentum of the honest majority). One hospital
    moves ``v`` by at most ``tau / K`` per iteration, however large its update.
    """

    name = "centered_clipping"

    def __init__(self, tau: float = 1.0, iters: int = 1) -> None:
        super().__init__()
        if not (isinstance(tau, int | float) and math.isfinite(tau) and tau > 0):
            raise ConfigError(f"CenteredClipping: tau={tau!r} (the clip radius) must be a "
                              "finite number > 0, e.g. the typical honest update norm")
        if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
            raise ConfigError(f"CenteredClipping: iters={iters!r} must be an int >= 1")
        self.tau = float(tau)
        self.iters = iters
        self._v: torch.Tensor | None = None

    def setup(self, info: RunInfo) -> None:
        super().setup(info)
        self._v = None

    def centre(self, x: torch.Tensor, cids: Sequence[int]
               ) -> tuple[torch.Tensor, list[int], dict[str, Any]]:
        v = torch.zeros(x.shape[1], dtype=x.dtype) if self._v is None or \
            self._v.shape[0] != x.shape[1] else self._v.clone()
        clipped = 0
        for _ in range(self.iters):
            z = x - v
            norms = z.norm(dim=1, keepdim=True)
            scale = torch.clamp(self.tau / norms.clamp_min(1e-12), max=1.0)
            clipped = int((norms.squeeze(1) > self.tau).sum())
            v = v + (z * scale).mean(dim=0)
        self._v = v
        return v, list(cids), {"clipped": clipped}

    def __repr__(self) -> str:
        return f"CenteredClipping(tau={self.tau:g}, iters={self.iters})"


class NormBound(Aggregator):
    """Scale each hospital's update to L2 norm ``<= max_norm``, then sum with ``inner``.

    All vectors of a contribution are scaled together (one factor, as DP clipping), so
    SCAFFOLD's control change stays consistent with its delta.

    Args:
        max_norm: the bound (e.g. a little above the honest updates' median norm).
        inner: the aggregator that sums the bounded updates (default :class:`Plain`).
        where: ``"client"`` - each hospital scales its own update before it leaves
            (:meth:`prepare`): this composes with secure aggregation, but it is honour-based:
            it stops a *faulty* hospital, never a malicious one, which runs its own code and
            skips it. ``"server"`` - the server scales what arrives (:meth:`aggregate`): it
            also binds a malicious hospital, but must read each update, so it is refused
            over secure aggregation.
    """

    name = "norm_bound"

    def __init__(self, max_norm: float, inner: Aggregator | None = None, *,
                 where: str = "server") -> None:
        super().__init__(inner if inner is not None else Plain())
        if not (isinstance(max_norm, int | float) and max_norm > 0):
            raise ConfigError(f"NormBound: max_norm={max_norm!r} must be a number > 0 "
                              "(math.inf turns the bound off)")
        if where not in ("client", "server"):
            raise ConfigError(f"NormBound: where={where!r}; choose 'client' (on the hospital, "
                              "composes with secure aggregation) or 'server'")
        self.max_norm = float(max_norm)
        self.where = where
        self.needs_individual = where == "server"
        self.check_inner()

    def check_inner(self) -> None:
        if self.where == "server" and any(a.hides_individual
                                          for a in self.inner.layers()):  # type: ignore[union-attr]
            raise CompositionError(
                "NormBound(where='server') must read each hospital's update, which secure "
                "aggregation hides: use where='client' (each hospital bounds its own update "
                "before masking; a malicious hospital can skip it)")
        super().check_inner()

    def _bound(self, c: Contribution) -> tuple[Contribution, bool]:
        vectors, norm = clip_vectors(c.vectors, self.max_norm)
        out = c.with_vectors(vectors)
        out.nbytes = c.nbytes
        return out, norm > self.max_norm

    def prepare(self, contribution: Contribution, info: RoundInfo) -> Contribution:
        if self.where == "client":
            contribution, _ = self._bound(contribution)
        return super().prepare(contribution, info)

    def aggregate(self, contributions: Sequence[Contribution], info: RoundInfo
                  ) -> AggregateResult:
        clipped: int | None = None
        if self.where == "server":
            pairs = [self._bound(c) for c in contributions]
            contributions = [p[0] for p in pairs]
            clipped = sum(p[1] for p in pairs)
        res = self.inner.aggregate(contributions, info)  # type: ignore[union-attr]
        meas: dict[str, Any] = {"max_norm": self.max_norm, "where": self.where}
        if clipped is not None:  # the server knows this only when it bounds the norms itself
            meas["clipped"] = clipped
        res.measurements[self.name] = meas
        return res

    def __repr__(self) -> str:
        return f"NormBound(max_norm={self.max_norm:g}, where={self.where!r})"
