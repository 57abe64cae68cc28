"""One accountant interface for every DP mechanism of the course.

DP-SGD at a hospital, central DP-FedAvg on the server, distributed DP under secure
aggregation, and a noised histogram or count all spend privacy. Each of them reports its
steps to an :class:`Accountant` it is *given* (or creates from a name), so that:

* one :class:`~fedlearn.privacy.BudgetGuard` can guard any of them (every mechanism answers
  ``epsilon_after(extra_rounds)`` through its accountant);
* the back-end is a choice, not a rewrite: ``"rdp"`` (Mironov 2017, the conversion of
  Balle et al. 2020; the course's default) or ``"prv"`` (Gopi, Lee and Wutschitz 2021: the
  privacy-loss distribution computed numerically, usually a tighter epsilon for the same
  noise). Both are Opacus' own accountants; this class only records steps and asks them.

Two kinds of event are recorded:

* a **subsampled Gaussian** step ``(noise_multiplier, sample_rate)``: the one DP-SGD and
  DP-FedAvg are made of, composed by the back-end (RDP or PRV);
* a **pure epsilon** release (the Laplace mechanism of a noised histogram, a discrete-Laplace
  count): ``(epsilon, 0)``-DP by itself, added on top by basic composition. This is valid for
  any back-end and tight enough for the one or two such releases a study makes.

So ``epsilon(delta) = eps_gaussian(delta) + sum(pure epsilons)``.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

__all__ = ["Accountant", "BACKENDS", "make_accountant"]

Backend = Literal["rdp", "prv"]
BACKENDS: tuple[str, ...] = ("rdp", "prv")


class Accountant:
    """Records a mechanism's releases; answers what they cost and what more would cost.

    Args:
        backend: ``"rdp"`` or ``"prv"`` (both Opacus accountants).
        name: what it accounts for, for messages and the release ledger (e.g.
            ``"DP-SGD at Guangzhou-A"``).
    """

    def __init__(self, backend: Backend = "rdp", name: str = "") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}; "
                             "'rdp' is the course's default")
        from opacus.accountants import PRVAccountant, RDPAccountant

        self.backend = backend
        self.name = name
        #: the Opacus accountant; Opacus' DP optimiser steps it directly (DP-SGD)
        self.opacus = RDPAccountant() if backend == "rdp" else PRVAccountant()
        self.pure: list[tuple[float, str]] = []

    # ------------------------------------------------------------------ recording
    def gaussian(self, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        """Record ``steps`` subsampled Gaussian steps."""
        if not (noise_multiplier >= 0 and math.isfinite(noise_multiplier)):
            raise ValueError(f"noise_multiplier must be a finite number >= 0, "
                             f"got {noise_multiplier}")
        if not 0 < sample_rate <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        if steps == 0:
            return
        hist = self.opacus.history
        if hist and hist[-1][0] == noise_multiplier and hist[-1][1] == sample_rate:
            hist[-1] = (noise_multiplier, sample_rate, hist[-1][2] + int(steps))
        else:
            hist.append((float(noise_multiplier), float(sample_rate), int(steps)))

    def pure_epsilon(self, epsilon: float, what: str = "") -> None:
        """Record one ``(epsilon, 0)``-DP release (e.g. a Laplace-noised histogram)."""
        if not (epsilon > 0 and math.isfinite(epsilon)):
            raise ValueError(f"epsilon must be a finite number > 0, got {epsilon}")
        self.pure.append((float(epsilon), what))

    # ------------------------------------------------------------------ queries
    @property
    def history(self) -> list[tuple[float, float, int]]:
        """The Gaussian steps, as Opacus keeps them: ``[(sigma, q, steps), ...]``."""
        return self.opacus.history

    @property
    def steps(self) -> int:
        return sum(int(t) for _, _, t in self.opacus.history)

    def __len__(self) -> int:
        return len(self.opacus.history) + len(self.pure)

    def _gaussian_epsilon(self, history: list[tuple[float, float, int]], delta: float) -> float:
        if not history or all(int(t) == 0 for _, _, t in history):
            return 0.0
        if any(s == 0 for s, _, t in history if t > 0):
            return math.inf
        if self.backend == "rdp":
            from .accounting import history_epsilon

            return history_epsilon(history, delta)
        from opacus.accountants import PRVAccountant

        acc = PRVAccountant()
        acc.history = list(history)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=RuntimeWarning)
            return float(acc.get_epsilon(delta))

    def epsilon(self, delta: float) -> float:
        """Epsilon spent so far at ``delta`` (Gaussian part plus every pure release)."""
        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta}")
        return self._gaussian_epsilon(self.opacus.history, delta) + sum(e for e, _ in self.pure)

    def epsilon_after(self, noise_multiplier: float, sample_rate: float, steps: int,
                      delta: float) -> float:
        """Epsilon if ``steps`` more Gaussian steps were taken (nothing is recorded)."""
        ghost = self.copy()
        ghost.gaussian(noise_multiplier, sample_rate, steps)
        return ghost.epsilon(delta)

    def copy(self) -> Accountant:
        out = Accountant(self.backend, self.name)
        out.opacus.history = [tuple(h) for h in self.opacus.history]
        out.pure = list(self.pure)
        return out

    def __deepcopy__(self, memo: dict) -> Accountant:
        return self.copy()

    def reset(self) -> None:
        """Forget every step (a new run starts a new budget)."""
        self.opacus.history = []
        self.pure = []

    def __repr__(self) -> str:
        return (f"Accountant({self.backend!r}, name={self.name!r}, gaussian steps={self.steps}, "
                f"pure releases={len(self.pure)})")


def make_accountant(accountant: Accountant | str | None, name: str = "") -> Accountant:
    """The accountant a mechanism was given, or a new one of the named back-end."""
    if isinstance(accountant, Accountant):
        return accountant
    if accountant is None:
        return Accountant("rdp", name)
    if isinstance(accountant, str):
        return Accountant(accountant, name)  # type: ignore[arg-type]
    raise TypeError(f"accountant must be an Accountant, 'rdp' or 'prv', got "
                    f"{type(accountant).__name__}")

