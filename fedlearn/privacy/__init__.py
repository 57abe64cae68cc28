"""Differential privacy for federated learning, and the attacks that measure it.

Two questions decide which tool to use: *whom* do we protect, and *how much*?

* a **record** (sample-level DP): each hospital trains with DP-SGD through Opacus
  (:class:`DPClient`); the epsilon each hospital reports covers every round it joined. A
  record is an *image* in MedMNIST (image-level DP: a patient with ``k`` images is protected
  at about ``k epsilon``) and a patient in UCI heart disease;
* a **hospital** (client-level DP): the server clips and noises the hospitals' updates
  (:class:`DPFedAvg`, McMahan et al. 2018), wrapping any strategy.

"How much" is an ``(epsilon, delta)``: every mechanism reports to an :class:`Accountant`
(:mod:`.accountant`; Opacus' RDP or PRV accountant behind it), enforced by
:class:`BudgetGuard` and listed, with everything else a run releases, in its ledger
(:mod:`fedlearn.ledger`). :mod:`.threshold` picks a decision
threshold from noisy validation histograms; :mod:`.scratch` writes DP-SGD out by hand for
teaching; :mod:`.attacks` runs membership inference to show what DP buys.
"""

from . import accountant, accounting, attacks, budget, client_dp, dpsgd, scratch, threshold
from .accountant import Accountant
from .accounting import (
    calibrate_noise,
    gaussian_sigma,
    moments_accountant_epsilon,
    rdp_epsilon,
)
from .attacks import (
    MembershipResult,
    lira_attack,
    loss_threshold_attack,
    per_example_loss,
    top_fraction_filter,
)
from .budget import (
    BudgetExceededError,
    BudgetGuard,
    HospitalLedgers,
    PrivacyBudget,
    rounds_within_budget,
)
from .client_dp import AdaptiveClipping, DPFedAvg, clip_update
from .dpsgd import DPClient, calibrate_clients, dp_clients_from, dp_local_train, make_engine
from .threshold import ThresholdChoice, dp_threshold

__all__ = [
    "accountant", "accounting", "attacks", "budget", "client_dp", "dpsgd", "scratch",
    "threshold", "Accountant",
    "calibrate_noise", "gaussian_sigma", "moments_accountant_epsilon", "rdp_epsilon",
    "MembershipResult", "lira_attack", "loss_threshold_attack", "per_example_loss",
    "top_fraction_filter",
    "BudgetExceededError", "BudgetGuard", "HospitalLedgers", "PrivacyBudget",
    "rounds_within_budget",
    "AdaptiveClipping", "DPFedAvg", "clip_update",
    "DPClient", "calibrate_clients", "dp_clients_from", "dp_local_train", "make_engine",
    "ThresholdChoice", "dp_threshold",
]
