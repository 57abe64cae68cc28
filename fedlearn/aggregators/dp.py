"""Differential privacy as aggregators: central (the server noises) and distributed (each
hospital adds a share of the noise before masking).

Both protect the same thing, a whole hospital (client-level DP): the sums barely change
whether or not one hospital took part. Both clip *every* summed vector of a contribution
jointly to L2 norm ``C`` (the model delta and, for SCAFFOLD, its control-variate change: one
clip, one Gaussian mechanism), so a hospital moves the sums by at most ``w_max C``.

* :class:`CentralDP` clips each contribution on the server, sums, adds ``N(0, (z C w_max)^2)``
  to every coordinate and divides by the *public* expected weight ``q W`` (McMahan et al.'s
  fixed denominator). The server sees every clipped update and the exact sum: it must be
  trusted; the models it releases are DP.
* :class:`DistributedDP` clips on the hospital and adds ``N(0, sigma_k^2)`` with
  ``sigma_k = z C / sqrt(t)``, where ``t`` is the fewest contributions that can end up in a
  revealed sum (secure aggregation's threshold, fixed from the hospitals *instructed*). If
  ``s >= t`` contributions are summed the noise std is ``z C sqrt(s/t) >= z C``. Over
  :class:`~fedlearn.aggregators.Secure` the server never sees an un-noised update or sum.
  Colluding hospitals can subtract their own shares, leaving ``z C sqrt((s - c)/t)``.

**What the noise is.** Both add continuous Gaussian noise in float64. Under secure aggregation
the noised vector is then rounded onto the fixed-point grid of the ring: rounding is
post-processing of a Gaussian mechanism, so the guarantee holds for the noised floats, but the
sum the server decodes is not *exactly* the analysed mechanism's output (it differs by at most
the quantisation bound), and a real deployment needs noise that lives in the ring (the
discrete Gaussian or Skellam mechanisms of Kairouz, Liu and Steinke 2021 and Agarwal et al.
2021), whose sum is exactly what is analysed. fedlearn does not implement those.

**Buffers** (BatchNorm running statistics) are never clipped or noised: clipping a variance
is meaningless and Gaussian noise makes it negative. A DP aggregator therefore refuses a
strategy that sends buffers, unless ``buffers="release"``: then they are summed un-noised by
the inner aggregator and listed in the measurements as a release that no epsilon covers.
FedBN (buffers stay at each hospital) or a model without BatchNorm (GroupNorm) avoid both.

**Counts** (the weight sum, FedNova's step counts) are exact and public by design: the server
chose who to ask and the step budgets; they are listed as such in the measurements.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

import torch

from ..ledger import Release, relabel
from ..utils import StateDict, derive_seed, state_norm, torch_generator
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

__all__ = ["clip_vectors", "AdaptiveClipping", "CentralDP", "DistributedDP",
           "adaptive_update_multiplier", "centred_count"]

if TYPE_CHECKING:  # the privacy package (Opacus) is imported when a DP layer is built
    from ..privacy.accountant import Accountant

BufferRule = Literal["refuse", "release"]


def clip_vectors(vectors: dict[str, StateDict], clip_norm: float
                 ) -> tuple[dict[str, StateDict], float]:
    """Scale all ``vectors`` jointly to L2 norm at most ``clip_norm``; also the original norm.

    The factor is ``min(1, C / (norm + 1e-6))``, as in Opacus' per-sample clipping.
    """
    flat = {f"{name}/{k}": v for name, vec in vectors.items() for k, v in vec.items()}
    norm = state_norm(flat)
    factor = min(1.0, clip_norm / (norm + 1e-6))
    if factor == 1.0:
        return {n: {k: v.detach().clone() for k, v in vec.items()}
                for n, vec in vectors.items()}, norm
    return {n: {k: (v.detach().double() * factor).to(v.dtype) for k, v in vec.items()}
            for n, vec in vectors.items()}, norm


@dataclass(frozen=True)
class AdaptiveClipping:
    """Andrew et al. (2021): track the ``target_quantile`` of update norms privately.

    After each round ``C <- C * exp(-lr * (b - target_quantile))``, where ``b`` is the noised
    fraction of sampled hospitals whose update norm was at most ``C``. As in TF Privacy's
    quantile estimator the count is *centred* before noising: each hospital contributes
    ``1[norm <= C] - 1/2``, so one hospital changes it by at most 1/2 (its sensitivity), and
    the noise std ``count_noise`` (default ``m / 20``) is calibrated for that.
    """

    target_quantile: float = 0.5
    lr: float = 0.2
    count_noise: float | None = None  # None: expected hospitals / 20

    def __post_init__(self) -> None:
        if not 0 <= self.target_quantile <= 1:
            raise ValueError(f"target_quantile must be in [0, 1], got {self.target_quantile}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.count_noise is not None and not self.count_noise > 0:
            raise ValueError(f"count_noise must be > 0, got {self.count_noise}")


def centred_count(unclipped: int, participants: int) -> float:
    """``sum_k (1[norm_k <= C] - 1/2)``: the statistic adaptive clipping releases (with noise).

    Adding or removing one hospital changes it by exactly 1/2, whatever its norm, which is
    the sensitivity the count's noise is calibrated for. (The raw count ``unclipped`` has
    sensitivity 1: noising it with the same std would under-count its privacy cost.)
    """
    return unclipped - 0.5 * participants


def adaptive_update_multiplier(z: float, count_noise: float) -> float:
    """Noise multiplier left for the update sum when the centred count costs privacy too.

    Andrew et al. (2021, Sec. 3): the update sum with multiplier ``z_delta`` and the centred
    count (sensitivity 1/2) with std ``sigma_b`` compose like one Gaussian query with
    ``z = (z_delta^-2 + (2 sigma_b)^-2)^-1/2``; solve for ``z_delta``.
    """
    if z == 0:
        return 0.0
    if 2 * count_noise <= z:
        raise ValueError(f"count_noise {count_noise:.3g} too small for noise_multiplier {z}: "
                         "need 2*count_noise > z")
    return (z ** -2 - (2 * count_noise) ** -2) ** -0.5


class _DPLayer(Aggregator):
    """What central and distributed DP share: parameters, buffers rule, the accountant."""

    is_dp = True

    def __init__(self, inner: Aggregator | None, *, noise_multiplier: float, clip_norm: float,
                 sample_rate: float, delta: float, seed: int, buffers: BufferRule,
                 accountant: Accountant | str | None = None) -> None:
        super().__init__(inner if inner is not None else Plain())
        if not (math.isfinite(noise_multiplier) and noise_multiplier >= 0):
            raise ValueError(f"noise_multiplier must be a finite number >= 0, "
                             f"got {noise_multiplier}")
        if not (math.isfinite(clip_norm) and clip_norm > 0):
            raise ValueError(f"clip_norm must be a finite number > 0, got {clip_norm}")
        if not 0 < sample_rate <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta}")
        if buffers not in ("refuse", "release"):
            raise ValueError(f"buffers must be 'refuse' or 'release', got {buffers!r}")
        self.noise_multiplier = float(noise_multiplier)
        self.clip_norm = float(clip_norm)
        self.sample_rate = float(sample_rate)
        self.delta = delta
        self.seed = seed
        self.buffers = buffers
        #: every revealed round is one subsampled Gaussian step of this accountant (given, to
        #: compose with other mechanisms, or created: then each run starts a fresh one)
        from ..privacy.accountant import Accountant, make_accountant

        self._own_accountant = not isinstance(accountant, Accountant)
        self.accountant = make_accountant(accountant, f"client-level DP ({self.name})")
        self._weights: dict[int, float] = {}
        self._buffer_keys: frozenset[str] = frozenset()

    def setup(self, info: RunInfo) -> None:
        if info.buffer_keys and self.buffers == "refuse":
            raise CompositionError(
                f"{info.strategy or 'the strategy'} sends the model's floating-point buffers "
                f"{sorted(info.buffer_keys)[:4]}... (BatchNorm running statistics), which "
                "differential privacy never clips or noises (noise makes a variance negative). "
                "Keep them at each hospital (FedBN), use a model without BatchNorm "
                "(norm='group'), or pass buffers='release' to sum them un-noised, listed as "
                "a release no epsilon covers.")
        self._weights = dict(info.weights)
        self._buffer_keys = frozenset(info.buffer_keys)
        if self._own_accountant:
            self.accountant.reset()
        super().setup(info)

    def _split(self, c: Contribution) -> tuple[dict[str, StateDict], dict[str, StateDict]]:
        """(what is clipped and noised, the buffers that are released un-noised)."""
        b = self._buffer_keys
        private = {n: {k: v for k, v in vec.items() if k not in b} for n, vec in c.vectors.items()}
        public = {n: {k: v for k, v in vec.items() if k in b} for n, vec in c.vectors.items()}
        return private, {n: vec for n, vec in public.items() if vec}

    def _step(self) -> None:
        self.accountant.gaussian(self.noise_multiplier, self.sample_rate)

    def epsilon(self, delta: float | None = None) -> float:
        """Client-level epsilon spent by the rounds so far (the accountant's back-end)."""
        return self.accountant.epsilon(self.delta if delta is None else delta)

    def epsilon_after(self, extra_rounds: int, delta: float | None = None) -> float:
        """Epsilon if ``extra_rounds`` more rounds were run (nothing is spent)."""
        return self.accountant.epsilon_after(self.noise_multiplier, self.sample_rate,
                                             extra_rounds, self.delta if delta is None else delta)


class CentralDP(_DPLayer):
    """The server clips each hospital's contribution, sums, and adds Gaussian noise.

    Args:
        inner: the aggregator that adds the clipped contributions (default :class:`Plain`);
            it must show the server individual contributions, so secure aggregation is
            refused (use :class:`DistributedDP` over it).
        noise_multiplier: ``z``; noise std on the sum is ``z C w_max``.
        clip_norm: ``C`` (the initial one with ``adaptive``).
        sample_rate: ``q``, each hospital's probability of being asked (Poisson sampling is
            the caller's job, e.g. :class:`~fedlearn.privacy.DPFedAvg`); the denominator is
            ``q W`` with ``W`` the sum of all public weights.
        adaptive: optional :class:`AdaptiveClipping`.
        delta: the delta at which :meth:`epsilon` reports.
        seed: seeds the noise (round ``r`` draws from ``(seed, r, 1)``).
        buffers: ``"refuse"`` (default) or ``"release"`` (see the module docstring).
        accountant: an :class:`~fedlearn.privacy.Accountant` to report every revealed round
            to (to compose with other mechanisms), or its back-end ``"rdp"`` / ``"prv"``.
    """

    name = "central_dp"

    def __init__(self, inner: Aggregator | None = None, *, noise_multiplier: float,
                 clip_norm: float, sample_rate: float = 1.0,
                 adaptive: AdaptiveClipping | None = None, delta: float = 1e-5, seed: int = 0,
                 buffers: BufferRule = "refuse", accountant: Accountant | str | None = None
                 ) -> None:
        super().__init__(inner, noise_multiplier=noise_multiplier, clip_norm=clip_norm,
                         sample_rate=sample_rate, delta=delta, seed=seed, buffers=buffers,
                         accountant=accountant)
        self.adaptive = adaptive
        self.initial_clip_norm = self.clip_norm
        self.check_inner()

    def check_inner(self) -> None:
        if any(a.hides_individual for a in self.inner.layers()):  # type: ignore[union-attr]
            raise CompositionError(
                "central DP clips each hospital's update on the server, which secure "
                "aggregation hides from it. Clip and noise on the hospitals instead: "
                "DistributedDP(inner=Secure(...)) (SecureAggregation(..., "
                "transform=DistributedGaussian(...))).")
        super().check_inner()

    def setup(self, info: RunInfo) -> None:
        super().setup(info)
        self.clip_norm = self.initial_clip_norm

    @property
    def expected_weight(self) -> float:
        """``q W``: the fixed denominator of the estimator."""
        return self.sample_rate * sum(self._weights.values())

    def _count_noise(self) -> float:
        assert self.adaptive is not None
        if self.adaptive.count_noise is not None:
            return self.adaptive.count_noise
        return self.sample_rate * len(self._weights) / 20

    @property
    def update_noise_multiplier(self) -> float:
        """``z`` itself, or the smaller share left for the update sum with adaptive clipping."""
        if self.adaptive is None:
            return self.noise_multiplier
        return adaptive_update_multiplier(self.noise_multiplier, self._count_noise())

    def aggregate(self, contributions: Sequence[Contribution], info: RoundInfo
                  ) -> AggregateResult:
        c_norm = self.clip_norm
        w_max = max(self._weights.values()) if self._weights else 1.0
        clipped, public, unclipped = [], [], 0
        for c in contributions:
            w_pub = self._weights.get(c.cid)
            if w_pub is None or c.weight > w_pub:
                raise ValueError(f"hospital {c.cid}: weight {c.weight:g} is above its public "
                                 f"weight {w_pub}; the noise was calibrated for the public one")
            private, buf = self._split(c)
            vecs, norm = clip_vectors(private, c_norm)
            unclipped += int(norm <= c_norm)
            clipped.append(replace(c, vectors=vecs))
            public.append(replace(c, vectors=buf))
        b = self._buffer_keys
        template = {n: {k: v for k, v in vec.items() if k not in b}
                    for n, vec in info.template.items()}
        if clipped:
            res = self.inner.aggregate(clipped, info)  # type: ignore[union-attr]
            if res.sums is None:
                return res
            sums, measurements = res.sums, dict(res.measurements)
        else:  # nobody was sampled: the mechanism still releases noise
            vectors, counts, _ = weighted_sums([], template)
            sums, measurements = Sums(vectors, counts, 0.0, 0.0, ()), {}
        # what the server saw: every clipped contribution, in the clear (it must be trusted)
        rows = measurements.get("releases", [])
        rows = relabel(rows, lambda r: r.status == "unprotected" and (
            r.quantity == "weight" or r.quantity.startswith("count ")),
            status="public", note="public weights/counts")
        seen = relabel(rows, lambda r: r.status == "unprotected",
                       status="trusted", mechanism="none: the server clips, then noises the sum",
                       note="central DP: the server must be trusted")
        std = self.update_noise_multiplier * c_norm * w_max
        gen = torch_generator(derive_seed(self.seed, info.rnd, 1))
        noisy: dict[str, StateDict] = {}
        for name in sorted(sums.vectors, key=lambda n: (n != "delta", n)):
            out = {}
            for k, v in sums.vectors[name].items():
                out[k] = v + torch.normal(0.0, std, size=v.shape, generator=gen,
                                          dtype=torch.float64) if std > 0 else v
            noisy[name] = out
        denom = self.expected_weight
        released: list[str] = []
        if public and public[0].vectors:
            bsum, _, bw = weighted_sums(public)
            # scaled so that the buffers' mean under the public denominator is their exact mean
            for name, vec in bsum.items():
                noisy[name] = {**noisy[name], **{k: v * (denom / bw) for k, v in vec.items()}}
                released += sorted(vec)
        self._step()
        eps = self.epsilon()
        everyone = tuple(sorted(self._weights))  # every hospital is covered, sampled or not
        releases = seen + [
            Release(info.rnd, f"noised sum of {name}", sum(v.numel() for v in vec.values()),
                    "server", everyone, "everyone (the new model)", "Gaussian (central DP)",
                    "dp", "hospital", std, c_norm * w_max, eps, self.delta,
                    self.accountant.name)
            for name, vec in sorted(sums.vectors.items()) if vec]
        releases += [Release(info.rnd, f"sum of {k}", 1, "server", everyone, "server", "none",
                             "public", note="public weights/counts, fixed denominator")
                     for k in ["weight", *(f"count {c}" for c in sorted(sums.counts))]]
        if released:
            releases.append(Release(info.rnd, "sum of BatchNorm statistics", len(released),
                                    "server", tuple(sums.included), "everyone (the new model)",
                                    "none", "unaccounted", note="opt-in: buffers='release'"))
        row: dict[str, object] = {
            "clip_norm": c_norm, "noise_std_on_sum": std, "noise_multiplier": self.noise_multiplier,
            "denominator": denom, "participants": len(contributions),
            "epsilon": eps, "delta": self.delta,
            "counts_released_exactly": ["weight", *sorted(sums.counts)],
            "unnoised_releases": released}
        if self.adaptive is not None:
            centred = centred_count(unclipped, len(contributions))
            if self.noise_multiplier > 0:
                centred += float(torch.normal(0.0, self._count_noise(), size=(1,),
                                              generator=gen, dtype=torch.float64))
            expected = self.sample_rate * len(self._weights)
            frac = centred / expected + 0.5
            self.clip_norm = c_norm * math.exp(-self.adaptive.lr
                                               * (frac - self.adaptive.target_quantile))
            row["unclipped_fraction_noised"] = float(frac)
            row["next_clip_norm"] = self.clip_norm
            releases.append(Release(info.rnd, "noised centred count (adaptive clipping)", 1,
                                    "server", everyone, "everyone", "Gaussian (central DP)",
                                    "dp", "hospital", self._count_noise(), 0.5, eps,
                                    self.delta, self.accountant.name))
        measurements["central_dp"] = row
        measurements["releases"] = releases
        return AggregateResult(Sums(noisy, sums.counts, sums.weight, denom, sums.included),
                               measurements)

    def __repr__(self) -> str:
        return (f"CentralDP(z={self.noise_multiplier}, C={self.clip_norm}, "
                f"q={self.sample_rate}, adaptive={self.adaptive is not None})")


class DistributedDP(_DPLayer):
    """Each hospital clips and adds its noise share ``N(0, (z C / sqrt(t))^2)`` before ``inner``.

    Args:
        inner: usually :class:`~fedlearn.aggregators.Secure` (its threshold is ``t``); over
            :class:`Plain` give ``min_contributors``, and rounds with fewer reports abort.
        clip_norm, noise_multiplier: ``C`` and ``z`` (the std on a sum of ``t`` is ``z C``).
        sample_rate: each hospital's probability of taking part, for the accountant.
        min_contributors: ``t`` over a leaf without a threshold (default: every instructed
            hospital must report).
        delta, seed, buffers, accountant: as for :class:`CentralDP`; hospital ``k``'s noise
            in round ``r`` draws from ``(seed, r, k)``.

    Only unweighted sums (``weighted=False``): the noise is calibrated for ``sum_k clip(x_k)``.
    """

    name = "distributed_dp"

    def __init__(self, inner: Aggregator | None = None, *, clip_norm: float,
                 noise_multiplier: float, sample_rate: float = 1.0,
                 min_contributors: int | None = None, delta: float = 1e-5, seed: int = 0,
                 buffers: BufferRule = "refuse", accountant: Accountant | str | None = None
                 ) -> None:
        super().__init__(inner, noise_multiplier=noise_multiplier, clip_norm=clip_norm,
                         sample_rate=sample_rate, delta=delta, seed=seed, buffers=buffers,
                         accountant=accountant)
        if min_contributors is not None and min_contributors < 1:
            raise ValueError(f"min_contributors must be >= 1, got {min_contributors}")
        self.min_contributors = min_contributors
        self.rounds: set[int] = set()

    def check(self, strategy) -> None:  # noqa: ANN001
        if getattr(strategy, "weighted", False):
            raise CompositionError(
                "distributed DP calibrates each hospital's noise share for an unweighted sum "
                "(sensitivity C); a size-weighted sum has sensitivity w_max C. Pass "
                "weighted=False to the strategy.")
        super().check(strategy)

    def setup(self, info: RunInfo) -> None:
        super().setup(info)
        self.rounds = set()

    def threshold(self, instructed: int) -> int:
        """``t``: the fewest contributions that can be in a revealed sum this round."""
        leaf = self.leaf()
        fn = getattr(leaf, "min_summands", None)
        if fn is not None:
            return int(fn(instructed))
        return self.min_contributors if self.min_contributors is not None else instructed

    def share_std(self, instructed: int) -> float:
        """``z C / sqrt(t)``: one hospital's noise std."""
        return self.noise_multiplier * self.clip_norm / math.sqrt(self.threshold(instructed))

    def noise_share(self, contribution: Contribution, rnd: int, std: float) -> Contribution:
        """The hospital's own step: clip jointly, add noise of std ``std`` (no inner layers)."""
        private, buf = self._split(contribution)
        vecs, _ = clip_vectors(private, self.clip_norm)
        if std > 0:
            gen = torch_generator(derive_seed(self.seed, rnd, contribution.cid))
            vecs = {n: {k: v + std * torch.randn(v.shape, generator=gen, dtype=v.dtype)
                        for k, v in vec.items()}
                    for n, vec in sorted(vecs.items(), key=lambda kv: (kv[0] != "delta", kv[0]))}
        return contribution.with_vectors({n: {**vec, **buf.get(n, {})} for n, vec in vecs.items()})

    def prepare(self, contribution: Contribution, info: RoundInfo) -> Contribution:
        shared = self.noise_share(contribution, info.rnd, self.share_std(info.instructed))
        return super().prepare(shared, info)

    def aggregate(self, contributions: Sequence[Contribution], info: RoundInfo
                  ) -> AggregateResult:
        t = self.threshold(max(info.instructed, len(contributions)))
        share = self.share_std(max(info.instructed, len(contributions)))
        if len(contributions) < t:
            reason = (f"{len(contributions)} hospital(s) reported, fewer than t = {t}, the "
                      "number the noise shares were sized for")
            return AggregateResult(None, {"distributed_dp": {"aborted": reason},
                                          "releases": []}, aborted=reason)
        res = self.inner.aggregate(contributions, info)  # type: ignore[union-attr]
        measurements = dict(res.measurements)
        measurements["releases"] = self._relabel(measurements.get("releases", []), share,
                                                 info.rnd, None)
        if res.sums is None:  # nothing was revealed, so nothing was spent
            return AggregateResult(None, measurements, aborted=res.aborted)
        self._step()
        self.rounds.add(info.rnd)
        s = len(res.sums.included)
        measurements["releases"] = self._relabel(measurements["releases"], share * math.sqrt(s),
                                                 info.rnd, self.epsilon())
        measurements["distributed_dp"] = {
            "clip_norm": self.clip_norm, "threshold": t, "noise_share_std": share,
            "noise_std_on_sum": share * math.sqrt(s),
            "assumed_std_on_sum": self.noise_multiplier * self.clip_norm,
            "summed": s, "epsilon": self.epsilon(), "delta": self.delta,
            "counts_released_exactly": ["weight", *sorted(res.sums.counts)],
            "unnoised_releases": sorted(k for vec in res.sums.vectors.values() for k in vec
                                        if k in self._buffer_keys)}
        return AggregateResult(res.sums, measurements)

    def _relabel(self, rows: list[Release], std: float, rnd: int, eps: float | None
                 ) -> list[Release]:
        """What the noise covers: the revealed sums of the noised vectors (``eps`` given,
        after the accountant stepped), and each hospital's share (before)."""
        secure = any(a.hides_individual for a in self.layers())
        buffers = bool(self._buffer_keys)
        out = []
        for r in rows:
            if eps is None and r.source == "hospital" and r.quantity not in ("weight",) \
                    and not r.quantity.startswith("count "):
                if r.status == "masked":
                    r = replace(r, mechanism=f"clip to C, noise share (std {std:.3g}), masks",
                                sigma=std, sensitivity=self.clip_norm)
                elif r.status == "unprotected":  # a share in the clear: z / sqrt(t) of the noise
                    r = replace(r, status="unaccounted", sigma=std, sensitivity=self.clip_norm,
                                mechanism="clip to C, noise share, no masks",
                                note="a share alone carries noise z/sqrt(t); no epsilon tracked")
            elif eps is not None and r.source == "server" and r.status == "unprotected":
                if r.quantity.startswith("sum of count") or r.quantity == "sum of weight":
                    r = replace(r, status="public", note="public weights/counts")
                else:
                    r = replace(r, quantity=f"noised {r.quantity}", status="dp", unit="hospital",
                                about=tuple(sorted(self._weights)), sigma=std,
                                sensitivity=self.clip_norm, epsilon=eps, delta=self.delta,
                                accountant=self.accountant.name,
                                mechanism="distributed Gaussian" + (
                                    " under secure aggregation" if secure else ""),
                                note="BatchNorm statistics inside are un-noised "
                                     "(buffers='release')" if buffers else "")
            out.append(r)
        if eps is not None and buffers:
            out.append(Release(rnd, "sum of BatchNorm statistics", len(self._buffer_keys),
                               "server", tuple(sorted(self._weights)), "server", "none",
                               "unaccounted", note="opt-in: buffers='release'"))
        return out

    def __repr__(self) -> str:
        return (f"DistributedDP(z={self.noise_multiplier}, C={self.clip_norm}, "
                f"q={self.sample_rate})")
