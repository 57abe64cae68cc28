"""Privacy accounting: how much epsilon a sequence of noisy steps has spent.

Every DP training run in the course is a sequence of *subsampled Gaussian* steps: each step
includes each record (a patient, or a whole hospital) with probability ``q`` and adds Gaussian
noise with standard deviation ``z`` times the sensitivity. The total privacy loss after ``T``
steps is computed here in three ways, so notebook 05 can show why the choice matters:

* **basic composition**: epsilons add up, ``T * eps_step`` (with ``delta`` split over steps);
* **advanced composition** (Dwork, Rothblum and Vadhan 2010): grows like ``sqrt(T)``;
* **Renyi DP** (Mironov 2017; Mironov, Talwar and Zhang 2019): track the Renyi divergence of
  every order alpha, which adds up *exactly* under composition, and convert to
  ``(epsilon, delta)`` once at the end. This is what Opacus' :class:`RDPAccountant` does, and
  the only accountant we use for real guarantees. We call Opacus for the RDP of the subsampled
  Gaussian rather than re-deriving it; the only formula written here is the one-line
  conversion of Abadi et al.'s moments accountant, to reproduce their number.

Abadi et al. (2016) report epsilon = 1.26 for q = 0.01, sigma = 4, T = 10,000, delta = 1e-5.
With the same integer orders and their conversion ``eps = min_a RDP(a) + log(1/delta)/(a-1)``
we get 1.259; Opacus' RDP accountant gives 1.035 because it uses fractional orders and the
tighter conversion of Balle et al. (2020, Thm. 21). Both are valid upper bounds; the smaller
one is simply a better analysis of the same noise.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence

import numpy as np
from opacus.accountants import RDPAccountant
from opacus.accountants.analysis import rdp as rdp_analysis
from opacus.accountants.utils import get_noise_multiplier

__all__ = [
    "ALPHAS",
    "CALIBRATION_ALPHAS",
    "rdp_epsilon",
    "history_epsilon",
    "accountant_epsilon",
    "accountant_after",
    "moments_accountant_epsilon",
    "basic_composition_epsilon",
    "advanced_composition_epsilon",
    "calibrate_noise",
    "gaussian_sigma",
    "epsilons_over_steps",
]

#: RDP orders searched for the best conversion. Opacus' default stops at 63, where the optimum
#: lands for very small epsilons (strong noise, few steps); extending it only tightens bounds.
ALPHAS: list[float] = list(RDPAccountant.DEFAULT_ALPHAS) + [80, 96, 128, 192, 256, 512, 1024]
#: Integer orders only: exact and fast in Opacus, used inside noise calibration searches.
CALIBRATION_ALPHAS: list[float] = [float(a) for a in range(2, 65)] + [80, 96, 128, 192, 256,
                                                                      512, 1024]


def _check(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> None:
    if not noise_multiplier >= 0:
        raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier}")
    if not 0 < sample_rate <= 1:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")


@functools.lru_cache(maxsize=4096)
def _rdp_per_step(noise_multiplier: float, sample_rate: float) -> np.ndarray:
    """RDP of ONE subsampled Gaussian step at every order of :data:`ALPHAS` (from Opacus).

    RDP composes additively, so ``T`` steps cost ``T`` times this vector; caching it per
    ``(sigma, q)`` makes epsilon queries cheap (the fractional orders are slow to evaluate).
    A negative value is a numerical failure (we saw one for a fractional order above 63 at
    q = 0.5), never a real RDP: such orders are dropped rather than trusted.
    """
    rdp = rdp_analysis.compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=1,
                                   orders=ALPHAS)
    rdp = np.where(np.asarray(rdp) >= 0, rdp, np.inf)
    rdp.setflags(write=False)
    return rdp


def history_epsilon(history: Sequence[tuple[float, float, int]], delta: float) -> float:
    """Epsilon of an accountant history ``[(sigma, q, steps), ...]`` (RDP, Balle et al. 2020).

    The RDP values and the conversion are Opacus' (``compute_rdp``, ``get_privacy_spent``);
    only the per-step RDP is cached.
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if not history or all(int(t) == 0 for _, _, t in history):
        return 0.0
    rdp = sum(int(t) * _rdp_per_step(float(s), float(q)) for s, q, t in history)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the")
        eps, _ = rdp_analysis.get_privacy_spent(orders=ALPHAS, rdp=rdp, delta=delta)
    return float(eps)


def accountant_epsilon(accountant: RDPAccountant, delta: float) -> float:
    """Epsilon spent so far by an Opacus RDP accountant, searched over :data:`ALPHAS`."""
    return history_epsilon(accountant.history, delta)


def accountant_after(accountant: RDPAccountant, noise_multiplier: float, sample_rate: float,
                     steps: int) -> RDPAccountant:
    """A *copy* of ``accountant`` with ``steps`` more steps: what-if accounting for budgets.

    The original is untouched, so a budget guard can ask "what would one more round cost?"
    without spending anything.
    """
    out = RDPAccountant()
    out.history = [tuple(h) for h in accountant.history]
    if steps > 0:
        out.history.append((float(noise_multiplier), float(sample_rate), int(steps)))
    return out


def rdp_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """Epsilon of ``steps`` subsampled Gaussian steps, from Opacus' RDP accountant."""
    _check(noise_multiplier, sample_rate, steps, delta)
    if steps == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    acc = accountant_after(RDPAccountant(), noise_multiplier, sample_rate, steps)
    return accountant_epsilon(acc, delta)


def moments_accountant_epsilon(noise_multiplier: float, sample_rate: float, steps: int,
                               delta: float, max_order: int = 64) -> float:
    """Epsilon as Abadi et al.'s (2016) moments accountant computes it.

    Their log-moment of order lambda is ``lambda * RDP(lambda + 1)`` and their tail bound gives
    ``eps = min_lambda (alpha(lambda) + log(1/delta)) / lambda``, i.e. the classical RDP
    conversion ``RDP(a) + log(1/delta) / (a - 1)`` over *integer* orders ``a``. The RDP values
    themselves come from Opacus.
    """
    _check(noise_multiplier, sample_rate, steps, delta)
    if steps == 0:
        return 0.0
    orders = np.arange(2, max_order + 1, dtype=float)
    rdp = rdp_analysis.compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier,
                                   steps=steps, orders=orders)
    return float(np.min(rdp + math.log(1 / delta) / (orders - 1)))


def _per_step_epsilon(noise_multiplier: float, sample_rate: float, delta_step: float) -> float:
    return rdp_epsilon(noise_multiplier, sample_rate, 1, delta_step)


def basic_composition_epsilon(noise_multiplier: float, sample_rate: float, steps: int,
                              delta: float) -> float:
    """``T`` times the epsilon of one step, each step given ``delta / T``.

    The textbook bound (Dwork and Roth 2014, Thm. 3.16): simple and far too pessimistic for
    the thousands of steps of DP-SGD.
    """
    _check(noise_multiplier, sample_rate, steps, delta)
    if steps == 0:
        return 0.0
    return steps * _per_step_epsilon(noise_multiplier, sample_rate, delta / steps)


def advanced_composition_epsilon(noise_multiplier: float, sample_rate: float, steps: int,
                                 delta: float) -> float:
    """Advanced composition (Dwork, Rothblum and Vadhan 2010; Dwork and Roth Thm. 3.20).

    ``T`` steps of ``(eps0, delta0)`` are ``(eps0 sqrt(2T log(1/delta')) + T eps0 (e^eps0 - 1),
    T delta0 + delta')``; we give half of ``delta`` to ``delta'`` and half to the steps.
    """
    _check(noise_multiplier, sample_rate, steps, delta)
    if steps == 0:
        return 0.0
    d_prime = delta / 2
    eps0 = _per_step_epsilon(noise_multiplier, sample_rate, delta / (2 * steps))
    return float(eps0 * math.sqrt(2 * steps * math.log(1 / d_prime))
                 + steps * eps0 * math.expm1(eps0))


def calibrate_noise(target_epsilon: float, delta: float, sample_rate: float, steps: int,
                    tolerance: float = 0.01) -> float:
    """The noise multiplier that spends (at most) ``target_epsilon`` in ``steps`` steps.

    A thin wrapper over Opacus' ``get_noise_multiplier`` (the search behind
    ``make_private_with_epsilon``) fixed to the RDP accountant. The search uses the integer
    orders of :data:`CALIBRATION_ALPHAS`, which are fast to evaluate; a coarser grid can only
    over-estimate epsilon, so the sigma found is safe and the epsilon later reported on the
    full grid is at or slightly below the target. Calibrate for the *whole* run: every round
    a hospital takes part in adds steps to the same budget.
    """
    _check(1.0, sample_rate, steps, delta)
    if not target_epsilon > 0:
        raise ValueError(f"target_epsilon must be > 0, got {target_epsilon}")
    if steps == 0:
        raise ValueError("steps must be >= 1 to calibrate noise")
    with warnings.catch_warnings():  # an optimum at the grid's edge is still a valid bound
        warnings.filterwarnings("ignore", message="Optimal order is the")
        return float(get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta,
                                          sample_rate=sample_rate, steps=steps,
                                          accountant="rdp", epsilon_tolerance=tolerance,
                                          alphas=CALIBRATION_ALPHAS))


def gaussian_sigma(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """Noise std of the classic Gaussian mechanism (Dwork and Roth 2014, Thm. A.1).

    ``sigma = sensitivity * sqrt(2 log(1.25 / delta)) / epsilon`` gives ``(epsilon, delta)``-DP
    for one release when ``epsilon < 1``. Larger epsilons need the analytic calibration of
    Balle and Wang (2018); we refuse them rather than return an invalid guarantee.
    """
    if not 0 < epsilon < 1:
        raise ValueError(f"the classic Gaussian mechanism needs 0 < epsilon < 1, got {epsilon}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if not sensitivity > 0:
        raise ValueError(f"sensitivity must be > 0, got {sensitivity}")
    return float(sensitivity * math.sqrt(2 * math.log(1.25 / delta)) / epsilon)


def epsilons_over_steps(noise_multiplier: float, sample_rate: float, steps: Sequence[int],
                        delta: float) -> dict[str, list[float]]:
    """Basic, advanced and RDP epsilon at each entry of ``steps`` (for the notebook's plot)."""
    return {
        "basic": [basic_composition_epsilon(noise_multiplier, sample_rate, t, delta)
                  for t in steps],
        "advanced": [advanced_composition_epsilon(noise_multiplier, sample_rate, t, delta)
                     for t in steps],
        "rdp": [rdp_epsilon(noise_multiplier, sample_rate, t, delta) for t in steps],
    }
