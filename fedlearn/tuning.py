"""Federated hyper-parameter tuning on validation data only, with early stopping on rounds.

The tuner is the server's analyst: it proposes a configuration, the federation trains with
it, and each hospital reports *one number per round*: the score of its own model on its own
validation data (``Client.val``, or a fold of k-fold cross-validation inside its training
data, :func:`fedlearn.splits.kfold`). The tuner combines them weighted by validation size
(a hospital with 6 validation patients should not count as much as one with 50) and never
sees a test set: it builds its own clients from ``train`` and ``val`` only, and asking it for
``split="test"`` is an error.

Early stopping on rounds: a run stops once the validation score has not improved for
``patience`` rounds; the trial remembers its best round, which becomes part of the recipe
(``rounds`` to retrain with).

Two traps the course shows (notebook 09): with a tiny validation set (BreastMNIST: 78
images) the best of many configurations is mostly the luckiest, so its validation score is
optimistic and its choice unstable; repeating seeds or cross-validating averages that noise.
And under differential privacy, tuning itself spends privacy: every trial's validation
scores are releases computed from the same patients. This module does not account for it
(no private selection, e.g. Papernot & Steinke 2022): a recipe chosen here must be listed as
*unaccounted* in a release ledger: :meth:`TuningResult.record_in` adds both rows.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from torch import nn

from .client import Client
from .errors import ConfigError
from .evaluation import own_model_scores
from .ledger import Ledger
from .simulation import run as fl_run
from .splits import kfold
from .strategy import Strategy, StrategyWrapper

__all__ = ["grid", "EarlyStopping", "Trial", "TuningResult", "validation_curve", "tune"]


def grid(space: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of a small search space ``{name: [values]}``, in order."""
    if not space:
        return [{}]
    for name, values in space.items():
        if isinstance(values, str) or not isinstance(values, Sequence) or not values:
            raise ConfigError(f"search space entry {name!r} must be a non-empty list of "
                              f"values, got {values!r}")
    names = list(space)
    return [dict(zip(names, combo, strict=True))
            for combo in itertools.product(*(space[n] for n in names))]


class EarlyStopping(StrategyWrapper):
    """Stops a run once ``observe``d scores have not improved for ``patience`` rounds."""

    def __init__(self, inner: Strategy, patience: int, min_delta: float = 0.0) -> None:
        super().__init__(inner)
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ConfigError(f"patience must be an integer >= 1 (rounds), got {patience!r}")
        self.patience = patience
        self.min_delta = float(min_delta)
        self.best = -math.inf
        self.best_round = 0
        self.last_round = 0

    def observe(self, rnd: int, score: float) -> None:
        self.last_round = rnd
        if not math.isnan(score) and score > self.best + self.min_delta:
            self.best, self.best_round = score, rnd

    def stop_reason(self, rnd: int) -> str | None:
        inner = self.inner.stop_reason(rnd)
        if inner is not None:
            return inner
        if self.last_round - self.best_round >= self.patience:
            return (f"early stopping: no validation improvement for {self.patience} rounds "
                    f"(best {self.best:.4f} at round {self.best_round})")
        return None


def _weighted(scores: pd.DataFrame, metric: str) -> float:
    ok = scores[metric].notna()
    w = scores.loc[ok, "n"].astype(float)
    return float((scores.loc[ok, metric] * w).sum() / w.sum()) if w.sum() > 0 else math.nan


def validation_curve(make_strategy: Callable[[], Strategy], make_model: Callable[[int], nn.Module],
                     clients: Sequence[Client], rounds: int, *, seed: int = 0,
                     metric: str = "accuracy", patience: int | None = None
                     ) -> list[float]:
    """The validation-size-weighted score of the hospitals' own models after every round.

    ``clients`` must have ``val``; their ``test`` is never read (the runs use copies holding
    ``train`` and ``val`` only).
    """
    own = [_train_val_only(c) for c in clients]
    strategy = make_strategy()
    stopper = EarlyStopping(strategy, patience) if patience is not None else None
    curve: list[float] = []

    def score(rnd: int, model: nn.Module, history: Any) -> None:
        s = _weighted(own_model_scores(model, own, strategy, split="val"), metric)
        curve.append(s)
        if stopper is not None:
            stopper.observe(rnd, s)

    fl_run(make_model(seed), own, stopper if stopper is not None else strategy, rounds,
           seed=seed, eval_every=0, progress=False, callback=score)
    return curve


def _train_val_only(c: Client) -> Client:
    if c.val is None:
        raise ConfigError(f"{c.name} has no validation split; give every hospital one "
                          "(fedlearn.splits.with_validation) or tune with split='cv'")
    return Client(cid=c.cid, train=c.train, test=None, name=c.name, meta=dict(c.meta),
                  loss_fn=c.loss_fn, val=c.val)


@dataclass
class Trial:
    """One configuration: its mean best validation score over runs and its best round."""

    params: dict[str, Any]
    score: float
    best_round: int
    curves: list[list[float]] = field(default_factory=list, repr=False)


@dataclass
class TuningResult:
    trials: list[Trial]

    @property
    def best(self) -> Trial:
        """The highest validation score (ties: the earliest trial, i.e. the grid order)."""
        return max(self.trials, key=lambda t: (-math.inf if math.isnan(t.score) else t.score))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([{**t.params, "val_score": t.score, "best_round": t.best_round}
                             for t in self.trials])

    def record_in(self, ledger: Ledger, about: Sequence[int], *, dp: bool) -> None:
        """List what the tuning released in ``ledger`` (e.g. the final run's
        ``history.release_ledger``): every hospital's validation score of every round of every
        trial, and the chosen recipe. No mechanism protects either, so in a DP study both are
        ``unaccounted`` (private selection would be needed to account for them)."""
        status = "unaccounted" if dp else "unprotected"
        runs = sum(len(curve) for t in self.trials for curve in t.curves)
        ledger.add_study_release(
            "validation scores (tuning)", about, numbers=runs * len(about), status=status,
            mechanism="none", seen_by="server", source="hospital",
            note=f"{len(self.trials)} trials, one score per hospital per round")
        best = self.best
        ledger.add_study_release(
            "recipe chosen on validation", about, status=status, mechanism="none",
            note=f"best of {len(self.trials)} trials: {best.params}, round {best.best_round}; "
                 "no private selection")


def tune(make_strategy: Callable[..., Strategy], make_model: Callable[[int], nn.Module],
         clients: Sequence[Client], space: Mapping[str, Sequence[Any]], *, rounds: int,
         split: str = "val", k: int = 5, seeds: Sequence[int] = (0,),
         metric: str = "accuracy", patience: int | None = None, fold_seed: int = 0,
         sampler: str = "grid", n_trials: int = 10) -> TuningResult:
    """Search ``make_strategy(**params)`` on validation scores only (grid or Optuna's TPE).

    Args:
        make_strategy: builds a fresh strategy from one point of ``space``.
        make_model: builds the initial model from a seed.
        clients: the hospitals (their ``test`` is never read).
        split: ``"val"`` (each hospital's ``Client.val``) or ``"cv"`` (stratified ``k``-fold
            inside each hospital's training data). ``"test"`` is refused.
        seeds: training seeds averaged per configuration (repeats shrink the noise).
        patience: early stopping on rounds (None: run all ``rounds``).
        sampler: ``"grid"`` (every point of ``space``) or ``"tpe"`` (Optuna's Tree-structured
            Parzen Estimator, the ecosystem's standard, for ``n_trials`` trials over the same
            values, seeded with ``fold_seed``).

    A trial's score is the mean over (fold, seed) runs of each run's best weighted
    validation score; its ``best_round`` is the median of the runs' best rounds.
    """
    if split == "test":
        raise ConfigError("the tuner reads validation data only: split='test' would select "
                          "hyper-parameters on the test sets and make every reported test "
                          "score optimistic; use split='val' (Client.val) or split='cv'")
    if split == "val":
        federations = [list(clients)]
    elif split == "cv":
        federations = kfold([_train_only(c) for c in clients],
                            k=k, seed=fold_seed)
    else:
        raise ConfigError(f"split must be 'val' or 'cv', got {split!r}")
    def evaluate(params: dict[str, Any]) -> Trial:
        curves, bests, best_rounds = [], [], []
        for fed in federations:
            for seed in seeds:
                curve = validation_curve(lambda p=params: make_strategy(**p), make_model, fed,
                                         rounds, seed=seed, metric=metric, patience=patience)
                finite = [(s, r) for r, s in enumerate(curve, start=1) if not math.isnan(s)]
                s, r = max(finite, key=lambda t: (t[0], -t[1])) if finite else (math.nan, 0)
                curves.append(curve)
                bests.append(s)
                best_rounds.append(r)
        return Trial(dict(params), statistics.fmean(bests),
                     int(statistics.median(best_rounds)), curves)

    if sampler == "grid":
        trials = [evaluate(params) for params in grid(space)]
    elif sampler == "tpe":
        trials = _tpe(evaluate, space, n_trials, fold_seed)
    else:
        raise ConfigError(f"sampler must be 'grid' or 'tpe', got {sampler!r}")
    return TuningResult(trials)


def _tpe(evaluate: Callable[[dict[str, Any]], Trial], space: Mapping[str, Sequence[Any]],
         n_trials: int, seed: int) -> list[Trial]:
    """Optuna TPE over the categorical ``space`` (imported here: only this sampler needs it)."""
    import optuna

    grid(space)  # the same checks of the space
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ConfigError(f"n_trials must be an integer >= 1, got {n_trials!r}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed))
    trials: list[Trial] = []

    def objective(t: Any) -> float:
        params = {name: values[t.suggest_categorical(name, list(range(len(values))))]
                  for name, values in space.items()}
        trials.append(evaluate(params))
        return trials[-1].score

    study.optimize(objective, n_trials=n_trials)
    return trials


def _train_only(c: Client) -> Client:
    return Client(cid=c.cid, train=c.train, test=None, name=c.name, meta=dict(c.meta),
                  loss_fn=c.loss_fn)
