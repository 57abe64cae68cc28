"""Membership inference: measuring what differential privacy is supposed to prevent.

"Was this patient's record used to train the model?" is itself sensitive (being in a
cardiology study's training set says you were a cardiology patient). A *membership inference
attack* guesses it from the model. Its success, summarised by the AUC of member vs non-member
scores (0.5 = coin flip), is an empirical lower bound on leakage, and DP caps it: an
``(epsilon, delta)``-DP training gives any attack a true-positive rate of at most
``e^epsilon * FPR + delta`` (Kairouz, Oh and Viswanath 2015).

* :func:`loss_threshold_attack` (Yeom, Giacomelli, Fredrikson and Jha 2018): training examples
  have lower loss, so the score is minus the loss. Yeom et al. call "member" when the loss is
  below the average training loss; we report that advantage and the threshold-free AUC.
* :func:`lira_attack` (Carlini et al. 2022, "Membership Inference Attacks From First
  Principles"): train *shadow models* on random halves of a population, learn for each example
  how its confidence is distributed when it is IN vs OUT of training, and score the target's
  confidence by the Gaussian likelihood ratio. Per-example calibration is what makes it
  stronger than a global loss threshold.

:func:`top_fraction_filter` is here as the counter-example notebook 05 warns about: a
heuristic that shares "only the largest entries" of an update is deterministic, hence not
differentially private at any epsilon.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve
from torch import nn
from torch.utils.data import TensorDataset

from ..utils import StateDict, as_generator

__all__ = ["MembershipResult", "per_example_loss", "logit_confidence", "loss_threshold_attack",
           "lira_attack", "top_fraction_filter"]


@dataclass
class MembershipResult:
    """Scores of a membership attack (higher = "more likely a member") and their summary.

    Attributes:
        auc: ROC AUC of member vs non-member scores (0.5 = no better than chance).
        advantage: max over thresholds of TPR - FPR (Yeom et al.'s membership advantage).
        member_scores, nonmember_scores: the raw scores.
        threshold_advantage: TPR - FPR at the attack's own threshold, when it has one.
    """

    auc: float
    advantage: float
    member_scores: np.ndarray
    nonmember_scores: np.ndarray
    threshold_advantage: float | None = None

    @classmethod
    def from_scores(cls, member: np.ndarray, nonmember: np.ndarray,
                    threshold: float | None = None) -> MembershipResult:
        member = np.asarray(member, dtype=np.float64)
        nonmember = np.asarray(nonmember, dtype=np.float64)
        if member.size == 0 or nonmember.size == 0:
            raise ValueError("need at least one member and one non-member")
        y = np.r_[np.ones(member.size), np.zeros(nonmember.size)]
        s = np.r_[member, nonmember]
        fpr, tpr, _ = roc_curve(y, s)
        thr_adv = None
        if threshold is not None:
            thr_adv = float(np.mean(member >= threshold) - np.mean(nonmember >= threshold))
        return cls(auc=float(roc_auc_score(y, s)), advantage=float(np.max(tpr - fpr)),
                   member_scores=member, nonmember_scores=nonmember,
                   threshold_advantage=thr_adv)

    def tpr_at_fpr(self, max_fpr: float) -> tuple[float, float, int, int]:
        """The attack at its best threshold that accuses at most ``max_fpr`` of the outsiders.

        Why: an attack that finds a few members with near-certainty is a privacy failure even
        when its AUC is close to 0.5, so the number to report is the TPR at a low FPR
        (Carlini et al. 2022). Returns ``(tpr, fpr, members found, outsiders accused)``; the
        counts feed a Wilson interval (:func:`fedlearn.intervals.wilson_interval`).
        """
        if not 0.0 <= max_fpr <= 1.0:
            raise ValueError(f"max_fpr must be in [0, 1], got {max_fpr}")
        m, o = self.member_scores, self.nonmember_scores
        best = (0.0, 0.0, 0, 0)
        for t in np.unique(np.r_[m, o, np.inf]):  # accuse the scores >= t
            j = int((o >= t).sum())
            if j <= max_fpr * o.size:
                k = int((m >= t).sum())
                if k > best[2]:
                    best = (k / m.size, j / o.size, k, j)
        return best

    def roc(self) -> tuple[np.ndarray, np.ndarray]:
        """False- and true-positive rates over all thresholds (for a ROC plot)."""
        y = np.r_[np.ones(self.member_scores.size), np.zeros(self.nonmember_scores.size)]
        fpr, tpr, _ = roc_curve(y, np.r_[self.member_scores, self.nonmember_scores])
        return fpr, tpr


@torch.no_grad()
def per_example_loss(model: nn.Module, data: TensorDataset) -> np.ndarray:
    """Cross-entropy of every example under ``model`` (eval mode)."""
    was = model.training
    model.eval()
    x, y = data.tensors[0], data.tensors[1]
    out = nn.functional.cross_entropy(model(x), y, reduction="none")
    model.train(was)
    return out.double().numpy()


@torch.no_grad()
def logit_confidence(model: nn.Module, data: TensorDataset) -> np.ndarray:
    """LiRA's statistic ``log(p_y / (1 - p_y))``: roughly Gaussian, unlike ``p_y`` itself.

    Computed stably from the logits as ``z_y - logsumexp(z_{-y})``.
    """
    was = model.training
    model.eval()
    x, y = data.tensors[0], data.tensors[1]
    z = model(x).double()
    zy = z.gather(1, y.view(-1, 1)).squeeze(1)
    others = z.scatter(1, y.view(-1, 1), float("-inf"))
    model.train(was)
    return (zy - torch.logsumexp(others, dim=1)).numpy()


def loss_threshold_attack(model: nn.Module, members: TensorDataset,
                          non_members: TensorDataset,
                          threshold: float | None = None) -> MembershipResult:
    """Yeom et al. (2018): a record is a member if its loss is low.

    ``threshold`` is a loss (default: the mean loss on ``members``, the attacker's estimate of
    the training loss in Yeom et al.); the AUC does not depend on it.
    """
    lm = per_example_loss(model, members)
    ln = per_example_loss(model, non_members)
    thr = float(lm.mean()) if threshold is None else float(threshold)
    return MembershipResult.from_scores(-lm, -ln, threshold=-thr)


def lira_attack(target: nn.Module, population: TensorDataset, is_member: np.ndarray,
                train_fn: Callable[[TensorDataset, int], nn.Module], n_shadow: int = 16,
                seed: int | np.random.Generator = 0,
                global_variance: bool = True) -> MembershipResult:
    """Online LiRA (Carlini et al. 2022) against ``target`` on the examples of ``population``.

    Args:
        target: the model under attack, trained on ``population[is_member]``.
        population: candidate records (members and non-members of the target).
        is_member: boolean mask of the true members (used only to score the attack).
        train_fn: ``train_fn(dataset, seed) -> model``, the same recipe as the target's (the
            standard threat model: the attacker knows the training algorithm).
        n_shadow: shadow models; each trains on an independent random half of the population,
            so every record is IN about half of them.
        global_variance: one variance per IN/OUT side pooled over examples, which Carlini et
            al. recommend when shadows are few (< 64).
    """
    is_member = np.asarray(is_member, dtype=bool)
    n = len(population)
    if is_member.shape != (n,):
        raise ValueError(f"is_member must have shape ({n},), got {is_member.shape}")
    if n_shadow < 2:
        raise ValueError(f"n_shadow must be >= 2, got {n_shadow}")
    rng = as_generator(seed)
    x, y = population.tensors[0], population.tensors[1]
    stats = np.empty((n_shadow, n))
    ins = np.zeros((n_shadow, n), dtype=bool)
    for i in range(n_shadow):
        mask = rng.random(n) < 0.5
        idx = torch.as_tensor(np.flatnonzero(mask))
        shadow = train_fn(TensorDataset(x[idx], y[idx]), int(rng.integers(2**31)))
        stats[i] = logit_confidence(shadow, population)
        ins[i] = mask
    obs = logit_confidence(target, population)
    mu_in = _masked_mean(stats, ins)
    mu_out = _masked_mean(stats, ~ins)
    if global_variance:
        sd_in = np.full(n, np.std(stats[ins] - np.broadcast_to(mu_in, stats.shape)[ins]))
        sd_out = np.full(n, np.std(stats[~ins] - np.broadcast_to(mu_out, stats.shape)[~ins]))
    else:
        sd_in, sd_out = _masked_std(stats, ins, mu_in), _masked_std(stats, ~ins, mu_out)
    sd_in = np.maximum(sd_in, 1e-6)
    sd_out = np.maximum(sd_out, 1e-6)
    score = _log_normal(obs, mu_in, sd_in) - _log_normal(obs, mu_out, sd_out)
    return MembershipResult.from_scores(score[is_member], score[~is_member], threshold=0.0)


def _masked_mean(a: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Column means over the rows where ``m`` is True; the overall mean where none is."""
    cnt = m.sum(axis=0)
    out = np.where(cnt > 0, (a * m).sum(axis=0) / np.maximum(cnt, 1), a[m].mean())
    return out


def _masked_std(a: np.ndarray, m: np.ndarray, mu: np.ndarray) -> np.ndarray:
    cnt = m.sum(axis=0)
    var = (((a - mu) ** 2) * m).sum(axis=0) / np.maximum(cnt - 1, 1)
    return np.sqrt(var)


def _log_normal(x: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    return -0.5 * ((x - mu) / sd) ** 2 - np.log(sd)


def top_fraction_filter(delta: StateDict, fraction: float) -> StateDict:
    """Keep only the ``fraction`` of entries with the largest magnitude; zero the rest.

    A common "privacy" heuristic (share only the top percentiles of an update). It is a
    deterministic function of the data, so two datasets differing in one patient that give
    different outputs are told apart with certainty: no finite epsilon holds. It reduces
    what is sent, not what can be inferred.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    flat = torch.cat([v.detach().reshape(-1) for v in delta.values()])
    k = max(1, int(round(fraction * flat.numel())))
    cutoff = flat.abs().topk(k).values.min()
    return {name: torch.where(v.abs() >= cutoff, v, torch.zeros_like(v))
            for name, v in delta.items()}
