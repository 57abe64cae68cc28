"""The case study's experiments: one function per way a consortium could train a model.

Notebook 07 and ``benchmarks/case_study.py`` compare, on the same hospitals and seeds:

* ``local``: each hospital trains alone on its own images and is scored on its own test set;
* ``pooled``: the images are centralised and one model is trained (a federation of one
  client, so the training loop is literally the same);
* federated strategies: ``FedAvg``, ``FedProx``, ``FedBN`` (personalised BatchNorm),
  ``FedAdam`` (a FedOpt server optimiser; :class:`FedAdamBN` averages BatchNorm statistics);
* the best of them wrapped in client-level DP (:class:`~fedlearn.privacy.DPFedAvg`) or in
  secure aggregation (:class:`~fedlearn.secagg.SecureAggregation`).

Every method gets the same :class:`Recipe` (model, local optimiser, rounds, augmentation) and
the same compute: R rounds of E local epochs for a federation is R x E epochs for a hospital
alone or for the pooled model. Everything is scored at the end on every hospital's
validation and test sets (:class:`StudyRun`); validation is for choices, test is reported.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd
import torch
from torch import nn

from .algorithms import FedAdam, FedBN, FedProx
from .augment import Augment
from .client import Client, TrainConfig
from .hospitals import Consortium, balanced_class_weights
from .ledger import Ledger
from .models import make_model
from .privacy import calibrate_clients, dp_clients_from, dp_threshold
from .report import Predictions, collect_predictions, metrics_table
from .run_ledger import is_dp_run
from .secagg import SecureAggregation
from .simulation import run
from .strategy import FedAvg, Strategy
from .utils import StateDict

__all__ = ["Recipe", "RECIPES", "DP_RECIPES", "StudyRun", "BASE_METHODS", "FedAdamBN",
           "buffer_keys", "make_strategy", "run_local",
           "run_pooled", "run_federated", "run_method", "run_image_dp", "study_releases",
           "with_secure_aggregation", "personal_state_fn"]

BASE_METHODS = ("local", "pooled", "FedAvg", "FedProx", "FedBN", "FedAdam")


@dataclass(frozen=True)
class Recipe:
    """How every method trains: model, local optimiser, rounds and augmentation.

    ``config.class_weights`` is filled in per run from the training labels the trainer can
    see (a hospital alone: its own; pooled and federated: the consortium's pooled counts).
    """

    rounds: int
    config: TrainConfig
    model_kwargs: Mapping[str, Any] = field(default_factory=lambda: {"norm": "batch", "width": 16})
    augment: Augment | None = None

    def build_model(self, seed: int) -> nn.Module:
        """The initial global model; the same ``seed`` gives every method the same start."""
        return make_model("cnn", seed=seed, **dict(self.model_kwargs))

    def scaled(self, rounds: int) -> Recipe:
        """The same recipe with fewer (or more) rounds, for quick live runs."""
        return replace(self, rounds=rounds)


#: The recipes of the study (chosen on validation AUROC; see benchmarks/results/case_study.md).
RECIPES: dict[str, Recipe] = {
    "pneumoniamnist": Recipe(rounds=20, config=TrainConfig(epochs=1, batch_size=32, lr=1e-3,
                                                           optimizer="adam"),
                             augment=Augment()),
    "breastmnist": Recipe(rounds=60, config=TrainConfig(epochs=3, batch_size=16, lr=1e-3,
                                                        optimizer="adam"),
                          augment=Augment(hflip=True)),
}


#: Image-level DP runs (:func:`run_image_dp`): the same model with GroupNorm (Opacus cannot
#: compute per-sample gradients through BatchNorm) and no augmentation. PneumoniaMNIST's
#: local optimiser was chosen on pooled validation AUROC (seed 0) among five settings of Adam
#: (lr 1e-3 or 3e-3 at batch 32, 3e-3 or 1e-2 at batch 128, clip norm 5 at lr 1e-3 and batch
#: 32; clip norm 1 otherwise): larger batches drown less signal in the same noise.
#: BreastMNIST's hospitals (29 to 195 images) keep the base recipe, which validated better
#: than batch 32 / lr 3e-3 / 30 rounds. Tuning on private validation data spends privacy
#: that no epsilon here counts (Papernot & Steinke 2022); a real study would tune on
#: public data or account for it.
#: what :func:`run_image_dp`'s ledger says about how its recipe was chosen
DP_TUNING = ("chosen among five DP-SGD settings on pooled validation AUROC (seed 0); no "
             "epsilon counts it")
DP_RECIPES: dict[str, Recipe] = {
    "pneumoniamnist": replace(
        RECIPES["pneumoniamnist"], augment=None, model_kwargs={"norm": "group", "width": 16},
        config=replace(RECIPES["pneumoniamnist"].config, batch_size=128, lr=1e-2)),
    "breastmnist": replace(RECIPES["breastmnist"], augment=None,
                           model_kwargs={"norm": "group", "width": 16}),
}


@dataclass
class StudyRun:
    """One method, one seed: predictions on every hospital's val and test sets.

    ``model`` is the final global model (None for ``local``); ``state_of`` returns the weights
    a hospital actually uses when they differ (FedBN, local). ``info`` holds e.g. the privacy
    budget spent; ``ledger`` lists every release of the run and of the study's own steps
    (class weights, threshold, recipe choice, the reported test metrics).
    """

    method: str
    seed: int
    val: Predictions
    test: Predictions
    model: nn.Module | None = None
    strategy: Strategy | None = None
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    threshold: float = 0.5
    #: every release of the run and of the study steps around it (:mod:`fedlearn.ledger`)
    ledger: Ledger | None = None

    def table(self, split: str = "test", threshold: float | None = None) -> pd.DataFrame:
        """Per-hospital and pooled metrics (see :func:`fedlearn.report.metrics_table`).

        ``threshold`` defaults to the run's own operating point (0.5 unless the method chose
        one on validation data, as :func:`run_image_dp` does).
        """
        if split not in ("val", "test"):
            raise ValueError(f"split must be 'val' or 'test', got {split!r}")
        t = self.threshold if threshold is None else threshold
        return metrics_table(self.val if split == "val" else self.test, t)


def personal_state_fn(strategy: Strategy | None,
                      global_state: StateDict) -> Callable[[Client], StateDict] | None:
    """Each client's own weights if ``strategy`` personalises them (FedBN), else ``None``.

    Every wrapper forwards :meth:`~fedlearn.strategy.Strategy.personal_state`, so FedBN's
    hospital-specific BatchNorm layers are found under secure aggregation or DP too.
    """
    if strategy is None or not strategy.has_personal_state():
        return None
    return lambda c: strategy.personal_state(c.cid, global_state)


def _score(model: nn.Module, consortium: Consortium,
           state_of: Callable[[Client], StateDict] | None) -> tuple[Predictions, Predictions]:
    return (collect_predictions(model, consortium.clients("val"), state_of),
            collect_predictions(model, consortium.clients("test"), state_of))


class FedAdamBN(FedAdam):
    """FedAdam on the trainable weights; BatchNorm running statistics averaged as in FedAvg.

    Adam's step ``server_lr * m / (sqrt(v) + tau)`` moves every coordinate by at most about
    ``server_lr`` per round, whatever its update. For weights that is the point; for a
    BatchNorm running variance that starts at 1 and must reach, say, 0.05 it means dozens of
    rounds of normalising activations with the wrong statistics (on PneumoniaMNIST the
    plain FedAdam model still called every X-ray pneumonia after 20 rounds). Running
    statistics are estimates, not parameters: the server averages them (Reddi et al. used
    GroupNorm, which has none).
    """

    name = "FedAdam"

    def __init__(self, config: TrainConfig | None = None, *, buffers: Sequence[str] = (),
                 **kwargs: float) -> None:
        super().__init__(config, **kwargs)  # type: ignore[arg-type]
        self.buffers = frozenset(buffers)

    def server_update(self, rnd: int, global_state: StateDict, delta: StateDict) -> StateDict:
        params = {k: v for k, v in delta.items() if k not in self.buffers}
        out = super().server_update(rnd, global_state, params)
        for k in self.buffers & delta.keys():
            out[k] = global_state[k] + delta[k].to(global_state[k].dtype)
        return out


def buffer_keys(model: nn.Module) -> list[str]:
    """Names of the model's floating-point buffers (BatchNorm running statistics)."""
    return [k for k, b in model.named_buffers() if torch.is_floating_point(b)]


def make_strategy(method: str, config: TrainConfig, buffers: Sequence[str] = (),
                  **options: float) -> Strategy:
    """A base federated strategy by name, with the study's default hyperparameters.

    Options: ``mu`` (FedProx, default 0.01), ``server_lr`` (FedAdam, default 3e-3).
    ``buffers`` (see :func:`buffer_keys`) are averaged, not Adam-stepped, by FedAdam.
    """
    if method == "FedAvg":
        return FedAvg(config)
    if method == "FedProx":
        return FedProx(config, mu=float(options.get("mu", 0.01)))
    if method == "FedBN":
        return FedBN(config)
    if method == "FedAdam":
        return FedAdamBN(config, buffers=buffers,
                         server_lr=float(options.get("server_lr", 3e-3)))
    raise ValueError(f"unknown federated method {method!r}; choose FedAvg, FedProx, FedBN, "
                     "FedAdam")


def study_releases(ledger: Ledger, consortium: Consortium, *, dp: bool,
                   class_weights: bool = True, tuned: str | None = None) -> None:
    """Add the releases the study makes around a run to its ``ledger``.

    * ``class_weights``: the loss weights come from the *pooled* training label counts, which
      each hospital sent exactly (2 counts each);
    * ``tuned``: the recipe was chosen on validation data (say how): a release that private
      selection (Papernot and Steinke 2022) could account for, and this study does not;
    * the test metrics the study reports for the final model: a function of every hospital's
      test images that no epsilon covers (they are not training images).
    """
    everyone = tuple(range(len(consortium)))
    clear = "unaccounted" if dp else "unprotected"
    if class_weights:
        ledger.add_study_release("training label counts (class weights)", everyone,
                                 numbers=2 * len(consortium), status=clear, mechanism="none",
                                 seen_by="server", source="hospital",
                                 note="exact counts set the loss weights")
    if tuned:
        ledger.add_study_release("recipe chosen on validation", everyone, status=clear,
                                 mechanism="none", note=tuned)
    ledger.add_study_release("test metrics of the final model", everyone, status=clear,
                             mechanism="none", note="the study's reported result")


def run_federated(consortium: Consortium, recipe: Recipe, strategy: Strategy, seed: int,
                  name: str | None = None, tuned: str | None = None) -> StudyRun:
    """Train ``strategy`` over the consortium's hospitals and score every hospital.

    ``tuned`` says how the recipe was chosen on validation data, if it was (for the ledger).
    """
    t0 = time.perf_counter()
    model = recipe.build_model(seed)
    clients = consortium.clients("test", augment=recipe.augment)
    history = run(model, clients, strategy, rounds=recipe.rounds, eval_every=0, seed=seed,
                  progress=False)
    state = history.final_state or model.state_dict()
    val, test = _score(model, consortium, personal_state_fn(strategy, state))
    info: dict[str, Any] = {"rounds_run": len(history.rounds),
                            "aggregation": history.measurements}
    if history.stopped:
        info["stopped"] = history.stopped
    ledger = history.release_ledger
    study_releases(ledger, consortium, dp=is_dp_run(strategy, clients),
                   class_weights=strategy_config_weights(strategy), tuned=tuned)
    return StudyRun(name or getattr(strategy, "name", type(strategy).__name__), seed, val, test,
                    model, strategy, time.perf_counter() - t0, info, ledger=ledger)


def strategy_config_weights(strategy: Strategy) -> bool:
    """Whether the strategy's local loss uses class weights (set from pooled counts)."""
    cfg = getattr(strategy, "config", None)
    inner = getattr(strategy, "inner", None)
    while cfg is None and inner is not None:
        cfg = getattr(inner, "config", None)
        inner = getattr(inner, "inner", None)
    return getattr(cfg, "class_weights", None) is not None


def run_pooled(consortium: Consortium, recipe: Recipe, seed: int) -> StudyRun:
    """Centralised training on every hospital's images: a federation of one client."""
    t0 = time.perf_counter()
    cfg = replace(recipe.config, class_weights=consortium.class_weights())
    model = recipe.build_model(seed)
    pooled = Client(0, consortium.pooled("train"), name="pooled data")
    if recipe.augment is not None:
        from .augment import AugmentedClient
        pooled = AugmentedClient(0, pooled.train, name=pooled.name, augment=recipe.augment)
    if cfg.steps is not None:  # as many minibatch steps per round as all hospitals together
        cfg = replace(cfg, steps=cfg.steps * len(consortium))
    run(model, [pooled], FedAvg(cfg), rounds=recipe.rounds, eval_every=0, seed=seed,
        progress=False)
    val, test = _score(model, consortium, None)
    return StudyRun("pooled", seed, val, test, model, None, time.perf_counter() - t0)


def run_local(consortium: Consortium, recipe: Recipe, seed: int,
              only: Sequence[str] | None = None) -> StudyRun:
    """Each hospital alone: its own model, class weights from its own labels, own test set.

    ``only`` restricts the run to the named hospitals (a quick live subset); the others are
    then absent from the predictions.
    """
    t0 = time.perf_counter()
    if only is not None:
        unknown = set(only) - set(consortium.names)
        if unknown:
            raise ValueError(f"unknown hospital(s) {sorted(unknown)}; have {consortium.names}")
    states: dict[str, StateDict] = {}
    model = recipe.build_model(seed)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    chosen = [c for c in consortium.clients("test", augment=recipe.augment)
              if only is None or c.name in only]
    for client in chosen:
        weights = balanced_class_weights(client.train.tensors[1].numpy(), 2)
        cfg = replace(recipe.config, class_weights=weights)
        model.load_state_dict(init)
        run(model, [client], FedAvg(cfg), rounds=recipe.rounds, eval_every=0, seed=seed,
            progress=False)
        states[client.name] = {k: v.clone() for k, v in model.state_dict().items()}
    names = set(states)
    val = collect_predictions(model, [c for c in consortium.clients("val") if c.name in names],
                              lambda c: states[c.name])
    test = collect_predictions(model, [c for c in consortium.clients("test") if c.name in names],
                               lambda c: states[c.name])
    return StudyRun("local", seed, val, test, None, None, time.perf_counter() - t0,
                    {"states": states})


def run_image_dp(consortium: Consortium, recipe: Recipe, seed: int, epsilon: float, *,
                 delta: float = 1e-5, clip_norm: float = 1.0,
                 threshold_epsilon: float | None = 1.0, name: str | None = None,
                 tuned: str | None = DP_TUNING) -> StudyRun:
    """FedAvg where every hospital trains with DP-SGD (Opacus): image-level DP.

    The protected unit is one *image*, not one hospital, and not one patient: MedMNIST's
    records are images, and a patient with ``k`` images is protected at about ``k epsilon``.
    Each hospital's noise multiplier is calibrated (:func:`~fedlearn.privacy.calibrate_clients`)
    so that its own ``recipe.rounds`` rounds spend at most ``(epsilon, delta)``, whatever the
    others do. Noise is added to a batch *sum* of clipped per-image gradients, so it shrinks
    relative to the signal as the batch grows; that is why this works with six hospitals
    when client-level DP (noise relative to *one* hospital's update) cannot. Opacus has no
    per-sample rule for BatchNorm, so ``recipe``'s model must use ``norm="group"`` (or none);
    images are not augmented (augmentation and DP-SGD compose, but each augmented copy would
    have to count as the same image). ``info`` holds every hospital's epsilon spent.

    Per-image clipping gives every clipped image the same pull, which undoes the
    class-weighted loss: the model ranks well but calls nearly everyone sick at 0.5. With
    ``threshold_epsilon`` the operating point is chosen (Youden's J) from the hospitals'
    Laplace-noised validation histograms (:func:`fedlearn.privacy.dp_threshold`), each
    ``(threshold_epsilon, 0)``-DP for the validation images, and charged to the same
    hospital's accountant as its training (the ledger adds them: a patient may have images in
    both splits). ``None`` keeps 0.5.

    The ledger (``StudyRun.ledger``) lists what no epsilon covers: the pooled label counts
    behind the class weights, the recipe chosen on validation (``tuned``), and the reported
    test metrics.
    """
    if not epsilon > 0 or math.isinf(epsilon):
        raise ValueError(f"epsilon must be a finite number > 0, got {epsilon}")
    if recipe.model_kwargs.get("norm", "batch") == "batch":
        raise ValueError("DP-SGD needs per-sample gradients, which BatchNorm does not have: "
                         "use a recipe with model_kwargs norm='group'")
    t0 = time.perf_counter()
    cfg = replace(recipe.config, class_weights=consortium.class_weights())
    plain = consortium.clients("test")
    sigmas = calibrate_clients(plain, epsilon, delta, cfg, recipe.rounds)
    clients = dp_clients_from(plain, sigmas, max_grad_norm=clip_norm, delta=delta,
                              record_unit="image")
    model = recipe.build_model(seed)
    history = run(model, clients, FedAvg(cfg), rounds=recipe.rounds, eval_every=0, seed=seed,
                  progress=False)
    val, test = _score(model, consortium, None)
    info: dict[str, Any] = {
        "rounds_run": len(history.rounds), "delta": delta, "clip_norm": clip_norm,
        "noise_multiplier": {c.name: round(s, 4) for c, s in zip(clients, sigmas, strict=True)},
        "epsilon_training": max(round(c.epsilon(), 4) for c in clients)}
    ledger = history.release_ledger
    threshold = 0.5
    if threshold_epsilon is not None:
        by_name = {c.name: c for c in clients}
        chosen = [by_name[n] for n in val]
        choice = dp_threshold(list(val.values()), threshold_epsilon, seed=seed,
                              accountants=[c.accountant for c in chosen])
        threshold = choice.threshold
        for c in chosen:
            ledger.add_study_release(
                "noised validation histogram (threshold)", (c.cid,), numbers=2 * 40,
                status="dp", mechanism="Laplace", seen_by="server", unit="image",
                source="hospital",
                sigma=math.sqrt(2) / threshold_epsilon, sensitivity=1.0, epsilon=c.epsilon(),
                delta=c.delta, accountant=c.accountant.name,
                note=f"adds epsilon {threshold_epsilon:g} on validation images")
        info.update(threshold=threshold, threshold_epsilon=threshold_epsilon,
                    threshold_rule=choice.rule)
    spent = {c.name: round(c.epsilon(), 4) for c in clients}
    info.update(epsilon=max(spent.values()), epsilon_per_hospital=spent)
    study_releases(ledger, consortium, dp=True, tuned=tuned)
    return StudyRun(name or f"FedAvg + DP-SGD (eps={epsilon:g} per image)", seed, val, test,
                    model, None, time.perf_counter() - t0, info, threshold, ledger)


def with_secure_aggregation(inner: Strategy, *, clip: float = 2.0,
                            seed: int = 0) -> SecureAggregation:
    """``inner`` aggregated with Bonawitz et al.'s masking (32-bit ring, t = 2/3 of clients)."""
    return SecureAggregation(inner, clip=clip, bits=32, threshold=2 / 3, seed=seed)


def run_method(method: str, consortium: Consortium, recipe: Recipe, seed: int,
               **options: float) -> StudyRun:
    """Run one of :data:`BASE_METHODS` (``options`` as for :func:`make_strategy`)."""
    if method == "local":
        return run_local(consortium, recipe, seed)
    if method == "pooled":
        return run_pooled(consortium, recipe, seed)
    cfg = replace(recipe.config, class_weights=consortium.class_weights())
    strategy = make_strategy(method, cfg, buffer_keys(recipe.build_model(seed)), **options)
    return run_federated(consortium, recipe, strategy, seed, name=method)
