"""Sample-level differential privacy: each hospital trains with DP-SGD through Opacus.

Here the protected unit is one *record*: whatever the hospital's update is used for, it
changes by at most a small, quantified amount if any single record is added or removed. A
record is a patient only when each patient has one (UCI heart disease). MedMNIST's records
are *images*, and one patient may have several: this is image-level DP, and by group
privacy ``k`` images of one patient are protected at about ``k epsilon``.

Opacus does the three things DP-SGD (Abadi et al. 2016) needs:

1. ``DPDataLoader``: **Poisson sampling**, each record joins a batch with probability ``q``,
   which is what the privacy-amplification analysis assumes;
2. ``GradSampleModule``: **per-sample gradients**, so that each record's gradient can be
   clipped to norm ``C`` (bounding its influence: the *sensitivity*);
3. ``DPOptimizer``: **clip, sum, add Gaussian noise** of std ``sigma * C``, divide by the expected
   batch size, then take the ordinary optimiser step; and after each step tell the
   **RDP accountant** that one more ``(sigma, q)`` step has been spent.

A federated hospital takes part in many rounds, and every round's steps spend the same
budget. :class:`DPClient` therefore keeps ONE :class:`opacus.PrivacyEngine` (and so one
accountant) for its whole life: ``client.epsilon()`` after round 10 accounts for all the steps
of all 10 rounds it took part in. A fresh engine per round would silently reset the budget.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ..client import Client, LocalHook, TrainConfig
from ..update import ClientUpdate
from ..utils import StateDict, derive_seed, state_sub, torch_generator
from .accountant import Accountant, make_accountant
from .accounting import calibrate_noise

GradSampleMode = Literal["hooks", "ghost"]
GRAD_SAMPLE_MODES: tuple[str, ...] = ("hooks", "ghost")
"""How Opacus gets per-record gradients: ``hooks`` stores each one (the default, what notebook 05
explains); ``ghost`` (fast gradient clipping, Li et al. 2022) computes only their *norms* and
then backpropagates once more with each example's loss scaled by its clipping factor, never
storing a per-record gradient. (Opacus' ``functorch`` mode is not offered: it fails on the
empty batches Poisson sampling draws, for convolutions.)"""

__all__ = ["GRAD_SAMPLE_MODES", "make_engine", "dp_sample_rate", "dp_steps_per_round",
           "dp_local_train",
           "DPClient", "dp_clients_from", "calibrate_clients"]


def make_engine() -> PrivacyEngine:
    """An Opacus engine with the RDP accountant.

    ``secure_mode=False`` uses torch's pseudo-random generator, which lets the course seed and
    reproduce every noise draw; Opacus warns about it at every construction, and we silence
    that one warning here because it is said once, in notebook 05. A deployment must use
    ``secure_mode=True`` (cryptographic RNG, floating-point-attack-safe noise).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        return PrivacyEngine(accountant="rdp", secure_mode=False)


def dp_sample_rate(num_examples: int, batch_size: int | None) -> float:
    """Opacus' Poisson rate ``q = 1 / (batches per epoch)``; ``None`` means full batch (q = 1)."""
    if num_examples < 1:
        raise ValueError(f"num_examples must be >= 1, got {num_examples}")
    b = num_examples if batch_size is None else min(batch_size, num_examples)
    return 1.0 / math.ceil(num_examples / b)


def dp_steps_per_round(num_examples: int, config: TrainConfig) -> int:
    """Noisy steps in one round: ``config.steps``, else ``epochs`` times batches per epoch."""
    if config.steps is not None:
        return int(config.steps)
    return int(config.epochs * round(1 / dp_sample_rate(num_examples, config.batch_size)))


def _optimizer(params: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def dp_local_train(model: nn.Module, global_state: StateDict, data: TensorDataset,
                   config: TrainConfig, *, engine: PrivacyEngine, noise_multiplier: float,
                   max_grad_norm: float, seed: int, cid: int = 0,
                   poisson_sampling: bool = True,
                   grad_sample_mode: GradSampleMode = "hooks") -> ClientUpdate:
    """One round of DP-SGD local training through Opacus; returns ``local - global``.

    ``engine``'s accountant records every noisy step, so pass the same engine every round.
    ``model`` is modified in place (load the global weights, train); its Opacus hooks are
    removed before returning. ``config.max_grad_norm`` is ignored: the DP clipping norm
    ``max_grad_norm`` replaces it. Batch order and noise are drawn from ``seed``.

    The loss is the per-example cross-entropy (times its class weight, if any) averaged over
    the batch actually drawn; Opacus then divides the noisy *sum* of clipped gradients by the
    *expected* batch size ``q n``, so that the batch size itself leaks nothing.

    ``grad_sample_mode`` is how Opacus obtains the per-record gradient norms; the clipped,
    noised gradient and the privacy accounting are the same in every mode, only the cost
    differs (see :data:`GRAD_SAMPLE_MODES`).
    """
    if grad_sample_mode not in GRAD_SAMPLE_MODES:
        raise ValueError(f"grad_sample_mode must be one of {GRAD_SAMPLE_MODES}, "
                         f"got {grad_sample_mode!r}")
    if not noise_multiplier >= 0:
        raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier}")
    if not max_grad_norm > 0:
        raise ValueError(f"max_grad_norm must be > 0, got {max_grad_norm}")
    n = len(data)
    model.load_state_dict(global_state)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = _optimizer(params, config)
    batch = n if config.batch_size is None else min(config.batch_size, n)
    loader = DataLoader(data, batch_size=batch, shuffle=True,
                        generator=torch_generator(derive_seed(seed, 0)))
    weight = (torch.tensor(config.class_weights, dtype=torch.float32)
              if config.class_weights is not None else None)
    loss_fn = nn.CrossEntropyLoss(weight=weight, reduction="none")
    total = dp_steps_per_round(n, config)
    common = dict(module=model, optimizer=opt, data_loader=loader,
                  noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
                  poisson_sampling=poisson_sampling,
                  noise_generator=torch_generator(derive_seed(seed, 1)))
    ghost = grad_sample_mode == "ghost"
    if ghost:
        # Opacus calls the criterion with reduction="none" and averages over the batch drawn:
        # the same per-example (class-weighted) loss and mean as below.
        mean_fn = nn.CrossEntropyLoss(weight=weight, reduction="mean")
        private, dp_opt, dp_loss, dp_loader = engine.make_private(
            **common, criterion=mean_fn, grad_sample_mode="ghost")
    else:
        private, dp_opt, dp_loader = engine.make_private(**common,
                                                         grad_sample_mode=grad_sample_mode)
    steps, loss_sum = 0, 0.0
    try:
        with warnings.catch_warnings():
            # torch warns that Opacus' backward hooks fire "with respect to module outputs"
            # because the inputs need no gradient: expected, per-sample grads are unaffected.
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            while steps < total:
                for xb, yb in dp_loader:
                    if steps >= total:
                        break
                    dp_opt.zero_grad(set_to_none=True)
                    if ghost and len(yb) > 0:
                        loss = dp_loss(private(xb), yb)  # its backward() clips, in two passes
                    else:
                        per_example = loss_fn(private(xb), yb)
                        loss = per_example.sum() / max(len(yb), 1)  # empty Poisson batches
                    loss.backward()
                    dp_opt.step()
                    steps += 1
                    loss_sum += float(loss.detach())
    finally:
        private.cleanup()
    delta = state_sub(model.state_dict(), global_state)
    metrics = {"train_loss": loss_sum / steps if steps else math.nan,
               "num_steps": float(steps),
               "noise_multiplier": float(noise_multiplier),
               "sample_rate": float(dp_loader.sample_rate) if poisson_sampling
               else 1.0 / max(len(loader), 1)}
    return ClientUpdate(cid=cid, delta=delta, num_examples=n, metrics=metrics)


@dataclass
class DPClient(Client):
    """A hospital that trains with DP-SGD and keeps its own privacy ledger across rounds.

    It has every attribute of :class:`~fedlearn.client.Client`, and these:

    Attributes:
        noise_multiplier: sigma, the noise std in units of ``max_grad_norm``.
        max_grad_norm: C, the per-record gradient clipping norm.
        delta: the delta at which this hospital reports epsilon (keep it well below 1/n).
        grad_sample_mode: how Opacus gets per-record gradients (:data:`GRAD_SAMPLE_MODES`);
            ``"ghost"`` gives the same clipped, noised gradients and the same epsilon for less
            time and memory.
        record_unit: what one training record is, for the release ledger: ``"image"``
            (MedMNIST: one patient may have several images; ``k`` of them are protected at
            about ``k epsilon``), ``"patient"`` (one row per patient, UCI heart disease) or
            ``"record"`` (the default, when nobody said).
        accountant: the :class:`~fedlearn.privacy.Accountant` every DP-SGD step reports to,
            for this hospital's whole life (give one to compose with another mechanism on
            the same images), or its back-end ``"rdp"`` (default) / ``"prv"``.
        engine: the Opacus engine; its accountant is :attr:`accountant`'s Opacus back-end.
        rounds: how many rounds this hospital has trained in.
    """

    noise_multiplier: float = 1.0
    max_grad_norm: float = 1.0
    delta: float = 1e-5
    grad_sample_mode: GradSampleMode = "hooks"
    accountant: Accountant | str = "rdp"  # type: ignore[assignment]
    record_unit: str = "record"
    engine: PrivacyEngine = field(init=False, repr=False)
    rounds: int = field(init=False, default=0)
    #: a DP hospital: the run releases only what is accounted unless told otherwise
    is_dp = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.noise_multiplier >= 0:
            raise ValueError(f"noise_multiplier must be >= 0, got {self.noise_multiplier}")
        if not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0, got {self.max_grad_norm}")
        if not 0 < self.delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {self.delta}")
        if self.grad_sample_mode not in GRAD_SAMPLE_MODES:
            raise ValueError(f"grad_sample_mode must be one of {GRAD_SAMPLE_MODES}, "
                             f"got {self.grad_sample_mode!r}")
        from ..ledger import UNITS

        if self.record_unit not in UNITS[1:4]:
            raise ValueError(f"record_unit must be one of {UNITS[1:4]}, got "
                             f"{self.record_unit!r}")
        self.accountant = make_accountant(self.accountant, f"DP-SGD at {self.name}")
        self.engine = make_engine()
        self.engine.accountant = self.accountant.opacus  # Opacus' optimiser steps it

    def fit(self, model: nn.Module, global_state: StateDict, config: TrainConfig, seed: int,
            hooks: Sequence[LocalHook] = ()) -> ClientUpdate:
        """DP-SGD on a private copy of ``model``; the update carries the epsilon spent so far.

        Local hooks are refused: FedProx's term or SCAFFOLD's correction would change the
        gradient outside Opacus' per-sample clipping, so the DP analysis would not cover them.
        """
        if hooks:
            raise ValueError(f"{self.name}: DPClient runs plain DP-SGD and cannot apply local "
                             f"hooks {[type(h).__name__ for h in hooks]}: they would modify "
                             "gradients outside the clipped, noised sum the guarantee covers")
        worker = copy.deepcopy(model)  # Opacus attaches hooks; keep the shared worker clean
        update = dp_local_train(worker, global_state, self.train, config, engine=self.engine,
                                noise_multiplier=self.noise_multiplier,
                                max_grad_norm=self.max_grad_norm, seed=seed, cid=self.cid,
                                grad_sample_mode=self.grad_sample_mode)
        self.rounds += 1
        update.metrics["epsilon"] = self.epsilon()
        return update

    def epsilon(self, delta: float | None = None) -> float:
        """Epsilon spent over every round so far (0 before the first round)."""
        return self.accountant.epsilon(self.delta if delta is None else delta)

    def sample_rate(self, config: TrainConfig) -> float:
        return dp_sample_rate(self.num_train, config.batch_size)

    def epsilon_after(self, extra_rounds: int, config: TrainConfig,
                      delta: float | None = None) -> float:
        """Epsilon if this hospital trained ``extra_rounds`` more rounds of ``config``."""
        steps = extra_rounds * dp_steps_per_round(self.num_train, config)
        return self.accountant.epsilon_after(self.noise_multiplier, self.sample_rate(config),
                                             steps, self.delta if delta is None else delta)


def dp_clients_from(clients: Sequence[Client], noise_multiplier: float | Sequence[float],
                    max_grad_norm: float = 1.0, delta: float = 1e-5,
                    grad_sample_mode: GradSampleMode = "hooks",
                    record_unit: str = "record") -> list[DPClient]:
    """DP versions of ``clients`` (same ids, names and data), each with a fresh ledger.

    ``noise_multiplier`` may be one value or one per client (see :func:`calibrate_clients`);
    ``grad_sample_mode="ghost"`` is the fast path (same maths, see :data:`GRAD_SAMPLE_MODES`);
    ``record_unit`` names what one record is (``"image"`` for MedMNIST), for the ledger.
    """
    sigmas = ([float(noise_multiplier)] * len(clients)
              if isinstance(noise_multiplier, int | float) else list(noise_multiplier))
    if len(sigmas) != len(clients):
        raise ValueError(f"{len(sigmas)} noise multipliers for {len(clients)} clients")
    return [DPClient(cid=c.cid, train=c.train, test=c.test, name=c.name, meta=dict(c.meta),
                     noise_multiplier=s, max_grad_norm=max_grad_norm, delta=delta,
                     grad_sample_mode=grad_sample_mode, record_unit=record_unit)
            for c, s in zip(clients, sigmas, strict=True)]


def calibrate_clients(clients: Sequence[Client], target_epsilon: float, delta: float,
                      config: TrainConfig, rounds: int) -> list[float]:
    """Per-hospital sigma so that ``rounds`` rounds of ``config`` spend exactly the target.

    Hospitals differ in size, so the same batch size means different sampling rates and step
    counts; each gets the smallest noise that keeps *its* patients within
    ``(target_epsilon, delta)`` after all ``rounds`` (assuming it takes part in every one).
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    return [calibrate_noise(target_epsilon, delta, dp_sample_rate(c.num_train, config.batch_size),
                            rounds * dp_steps_per_round(c.num_train, config)) for c in clients]
