"""Checks at the boundary: refuse a bad configuration before any training, with the fix.

A federated run spends minutes before a bad setting would surface, and then it surfaces as
torch's words, not the user's: ``Target 5 is out of bounds``, ``expected target dtype to be
Long``, ``Expected more than 1 value per channel when training``, ``mat1 and mat2 shapes
cannot be multiplied``. Worse, some settings fail silently: a negative clipping norm turns
training into gradient ascent, label -100 is torch's ``ignore_index`` and those patients are
simply never trained on. Every check here raises :class:`~fedlearn.errors.ConfigError` (a
``ValueError``) naming the parameter or hospital, the value, and the fix.

Three places call it, each where the value enters:

* :class:`~fedlearn.TrainConfig` checks its own fields (:func:`check_train_config`);
* :class:`~fedlearn.Client` checks its tensors at construction (:func:`check_client_data`):
  shapes, label dtype and sign, the test set's feature shape against the training inputs;
* :func:`fedlearn.run` calls :func:`validate_run` first, where the model meets the data and
  the configuration: labels against the model's number of outputs, ``class_weights``
  against it, the inputs against the model (one forward pass of one example), and BatchNorm
  against minibatches of a single example.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .errors import ConfigError

if TYPE_CHECKING:
    from .client import Client, TrainConfig

__all__ = ["IGNORE_INDEX", "check_train_config", "check_client_data", "model_num_outputs",
           "validate_run"]

#: torch's ``cross_entropy(ignore_index=-100)``: examples with this label are skipped silently.
IGNORE_INDEX = -100

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


# ----------------------------------------------------------------------------- TrainConfig


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _int_field(name: str, value: object, minimum: int, fix: str) -> int:
    if not _is_int(value) or int(value) < minimum:  # type: ignore[call-overload]
        raise ConfigError(f"TrainConfig.{name} must be an integer >= {minimum}, "
                          f"got {value!r}; {fix}")
    return int(value)  # type: ignore[call-overload]


def _real_field(name: str, value: object, ok: bool, rule: str, fix: str) -> float:
    if not _is_real(value) or not math.isfinite(float(value)) or not ok:  # type: ignore[arg-type]
        raise ConfigError(f"TrainConfig.{name} must be {rule}, got {value!r}; {fix}")
    return float(value)  # type: ignore[arg-type]


def _finite_real(value: object) -> float:
    return float(value) if _is_real(value) and math.isfinite(float(value)) else math.nan  # type: ignore[arg-type]


def check_train_config(cfg: TrainConfig) -> dict[str, Any]:
    """Check every field of ``cfg``; return them normalised to plain ``int``/``float``/tuple.

    NumPy scalars become Python numbers and ``class_weights`` a tuple of floats, so a config
    serialises to JSON (Flower messages) and hashes (it is a frozen dataclass).
    """
    out: dict[str, Any] = {}
    if cfg.steps is None:
        out["epochs"] = _int_field("epochs", cfg.epochs, 1,
                                   "use epochs=1 or more, or set steps= for a fixed step count")
    else:
        out["epochs"] = _int_field("epochs", cfg.epochs, 0, "use epochs=1 (ignored with steps)")
        out["steps"] = _int_field("steps", cfg.steps, 0,
                                  "use steps=None to count epochs instead, or steps >= 1")
    if cfg.batch_size is not None:
        out["batch_size"] = _int_field("batch_size", cfg.batch_size, 1,
                                       "use batch_size >= 1, or None for full batch")
    lr = _finite_real(cfg.lr)
    out["lr"] = _real_field("lr", cfg.lr, lr > 0, "a finite number > 0",
                            "e.g. lr=0.01 for SGD or 1e-3 for Adam")
    m = _finite_real(cfg.momentum)
    out["momentum"] = _real_field("momentum", cfg.momentum, 0 <= m < 1, "in [0, 1)",
                                  "momentum=0 is plain SGD, 0.9 is the usual heavy ball")
    wd = _finite_real(cfg.weight_decay)
    out["weight_decay"] = _real_field("weight_decay", cfg.weight_decay, wd >= 0,
                                      "a finite number >= 0", "use 0 for none, e.g. 1e-4")
    if cfg.optimizer not in ("sgd", "adam"):
        raise ConfigError(f"TrainConfig.optimizer must be 'sgd' or 'adam', got "
                          f"{cfg.optimizer!r}")
    if cfg.optimizer == "adam" and out["momentum"] != 0:
        raise ConfigError(f"TrainConfig.momentum={cfg.momentum!r} has no effect with "
                          "optimizer='adam' (Adam has its own moment estimates); use "
                          "momentum=0 with Adam, or optimizer='sgd'")
    if cfg.max_grad_norm is not None:
        g = _finite_real(cfg.max_grad_norm)
        out["max_grad_norm"] = _real_field(
            "max_grad_norm", cfg.max_grad_norm, g > 0, "a finite number > 0, or None",
            "a negative norm flips every gradient (gradient ascent) and 0 stops training; "
            "use e.g. max_grad_norm=1.0, or None for no clipping")
    if cfg.class_weights is not None:
        out["class_weights"] = _class_weights(cfg.class_weights)
    return out


def _class_weights(value: object) -> tuple[float, ...]:
    fix = ("give one finite weight >= 0 per class, at least one > 0, e.g. (1.0, 3.0) or "
           "fedlearn.hospitals.balanced_class_weights(labels)")
    if isinstance(value, torch.Tensor | Sequence) and not isinstance(value, str | bytes):
        items = value.tolist() if isinstance(value, torch.Tensor) else list(value)
    elif hasattr(value, "tolist"):  # a NumPy array
        items = value.tolist()  # type: ignore[union-attr]
    else:
        raise ConfigError(f"TrainConfig.class_weights must be a sequence of numbers, got "
                          f"{value!r}; {fix}")
    if not isinstance(items, list):
        raise ConfigError(f"TrainConfig.class_weights must be a sequence of numbers, got "
                          f"{value!r}; {fix}")
    if not items:
        raise ConfigError(f"TrainConfig.class_weights is empty ({value!r}); {fix}, or None "
                          "for an unweighted loss")
    bad = [w for w in items if not _is_real(w) or not math.isfinite(float(w)) or float(w) < 0]
    if bad:
        raise ConfigError(f"TrainConfig.class_weights={tuple(items)!r} has invalid weight(s) "
                          f"{bad}: a negative weight makes the model unlearn that class and "
                          f"NaN/inf poisons the loss; {fix}")
    if not any(float(w) > 0 for w in items):
        raise ConfigError(f"TrainConfig.class_weights={tuple(items)!r} are all zero, so the "
                          f"loss is 0 and nothing is learned; {fix}")
    return tuple(float(w) for w in items)


# ----------------------------------------------------------------------------- client data


def _who(client: Client) -> str:
    return f"hospital {client.name!r} (cid {client.cid})"


def _pair(who: str, what: str, data: object) -> tuple[torch.Tensor, torch.Tensor]:
    tensors = getattr(data, "tensors", None)
    if (not isinstance(tensors, tuple) or len(tensors) < 2
            or not all(isinstance(t, torch.Tensor) for t in tensors[:2])):
        raise ConfigError(f"{who}: the {what} set must be a TensorDataset(inputs, labels), got "
                          f"{type(data).__name__}; build it with "
                          "torch.utils.data.TensorDataset(x, y)")
    x, y = tensors[0], tensors[1]
    if x.dim() == 0 or y.dim() == 0 or len(x) != len(y):
        raise ConfigError(f"{who}: the {what} set has {tuple(x.shape)} inputs but "
                          f"{tuple(y.shape)} labels; give exactly one label per example "
                          "(the first dimensions must agree)")
    return x, y


def _class_labels(who: str, what: str, y: torch.Tensor, long_only: bool) -> None:
    """Labels that cross-entropy reads as class indices: 1-D, integer, >= 0, never -100."""
    if y.dim() != 1:
        hint = ("flatten them with y.view(-1) (MedMNIST stores labels as (n, 1))"
                if y.dim() == 2 and y.shape[1] == 1 else "give one class index per example")
        raise ConfigError(f"{who}: {what} labels must be a 1-D tensor of class indices, got "
                          f"shape {tuple(y.shape)}; {hint}")
    integral = not (y.is_floating_point() or y.is_complex()) and y.dtype != torch.bool
    if (long_only and y.dtype != torch.long) or not integral:
        raise ConfigError(f"{who}: {what} labels have dtype {y.dtype}, but cross-entropy needs "
                          "class indices of dtype torch.long (int64); convert them with "
                          "y.long() (after checking they are whole numbers 0..C-1)")
    if y.numel() == 0:
        return
    ignored = (y == IGNORE_INDEX).nonzero().flatten()
    if len(ignored):
        raise ConfigError(f"{who}: {len(ignored)} {what} label(s) are {IGNORE_INDEX} (first at "
                          f"index {int(ignored[0])}); torch's cross-entropy treats "
                          f"{IGNORE_INDEX} as ignore_index and silently skips those examples "
                          "(all of them gives train_loss = nan); remove those examples or "
                          "give them a real class 0..C-1")
    low = int(y.min())
    if low < 0:
        raise ConfigError(f"{who}: {what} labels must be class indices >= 0, got {low} (at "
                          f"index {int((y == low).nonzero()[0])}); relabel the classes as "
                          "0..C-1")


def check_client_data(client: Client) -> None:
    """What :class:`~fedlearn.Client` checks at construction (and :func:`validate_run` again).

    Always: the datasets are ``TensorDataset(x, y)`` with one label per input, and the test
    set's inputs have the training inputs' shape. With the default loss (cross-entropy,
    ``loss_fn=None``): labels are 1-D class indices >= 0 and not -100; training labels must be
    ``torch.long`` (test labels any integer dtype). A custom ``loss_fn`` (survival models,
    multi-label) defines its own targets, so only the shapes are checked.
    """
    who = _who(client)
    x, y = _pair(who, "training", client.train)
    default_loss = client.loss_fn is None
    if default_loss:
        _class_labels(who, "training", y, long_only=True)
    if client.test is None:
        return
    xt, yt = _pair(who, "test", client.test)
    if xt.shape[1:] != x.shape[1:]:
        raise ConfigError(f"{who}: test inputs have shape {tuple(xt.shape[1:])} per example but "
                          f"training inputs {tuple(x.shape[1:])}; the model would fail (or "
                          "score the wrong features) at evaluation; preprocess the test set "
                          "exactly like the training set")
    if default_loss:
        _class_labels(who, "test", yt, long_only=False)


# ----------------------------------------------------------------------------- model meets data


def model_num_outputs(model: nn.Module) -> int | None:
    """The number of logits ``model`` returns, read from its structure (None if unknown).

    fedlearn's models store ``num_classes``; otherwise the last ``nn.Linear`` decides.
    """
    n = getattr(model, "num_classes", None)
    if _is_int(n):
        return int(n)  # type: ignore[arg-type]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return int(linears[-1].out_features) if linears else None


def _probe(who: str, model: nn.Module, x: torch.Tensor) -> tuple[int | None, list[str]]:
    """One forward pass of one example in eval mode (no state changes).

    Returns the number of outputs and the BatchNorm layers that would see a single value per
    channel for a minibatch of one in training mode (``prod(spatial dims) == 1``), which is
    exactly when torch raises ``Expected more than 1 value per channel when training``.
    """
    shapes: dict[str, tuple[int, ...]] = {}

    def recorder(name: str) -> Any:
        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            shapes.setdefault(name, tuple(inputs[0].shape))  # returns None: inputs unchanged
        return hook

    handles = [m.register_forward_pre_hook(recorder(name))
               for name, m in model.named_modules() if isinstance(m, _BATCH_NORMS)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x[:1])
    except Exception as exc:  # any failure here is the model not fitting the data
        first = str(exc).splitlines()[0][:300] if str(exc) else ""
        raise ConfigError(f"{who}: the model cannot process its training inputs of shape "
                          f"{tuple(x.shape[1:])} per example ({type(exc).__name__}: {first}); "
                          "build the model for this input size (e.g. in_features=...) or fix "
                          "the data") from exc
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    outputs = int(out.shape[1]) if isinstance(out, torch.Tensor) and out.dim() == 2 else None
    single = [name for name, s in shapes.items() if math.prod(s[2:]) == 1]
    return outputs, single


def _batch_of_one(n: int, cfg: TrainConfig) -> bool:
    """Whether :func:`fedlearn.local_train` would run a minibatch of exactly one example."""
    if cfg.steps == 0:
        return False
    b = n if cfg.batch_size is None else min(cfg.batch_size, n)
    if b == 1:
        return True
    if n % b != 1:
        return False
    # the short batch is the last, ceil(n / b)-th, of every epoch; steps= may stop before it
    return cfg.steps is None or cfg.steps >= math.ceil(n / b)


def _safe_batch_size(sizes: Sequence[int], b: int) -> int | None:
    """The batch size nearest ``b`` that leaves no minibatch of one at any hospital."""
    for step in range(1, 4 * b + 1):
        for cand in (b + step, b - step):
            if cand >= 2 and all(n % cand != 1 and n >= 2 for n in sizes):
                return cand
    return None


def _batch_of_one_error(risky: Sequence[tuple[Client, int]], layer: str, cfg: TrainConfig,
                        sizes: Sequence[int]) -> ConfigError:
    """The error for hospitals whose training would run a BatchNorm minibatch of one."""
    c, n = risky[0]
    b = n if cfg.batch_size is None else min(cfg.batch_size, n)
    if n == 1:
        cause, fix = ("it has a single training example",
                      "drop or merge this hospital, ")
    else:
        cause = (f"batch_size={cfg.batch_size} gives minibatches of one example" if b == 1 else
                 f"its {n} training examples leave a last minibatch of exactly one with "
                 f"batch_size={cfg.batch_size} ({n} % {b} = 1)")
        safe = _safe_batch_size(sizes, b)
        fix = (f"use batch_size={safe} (no minibatch of one at any hospital), " if safe else
               "use a batch size that leaves no single example over, ")
    others = f"; also affected: {[k.name for k, _ in risky[1:]]}" if len(risky) > 1 else ""
    return ConfigError(
        f"{_who(c)}: {cause}, and BatchNorm layer {layer!r} cannot normalise a single example "
        "in training mode (torch: 'Expected more than 1 value per channel when training'); "
        f"{fix}or replace BatchNorm by GroupNorm (norm='group'){others}")


def _check_count(name: str, value: object, fix: str) -> None:
    if not _is_int(value) or int(value) < 0:  # type: ignore[call-overload]
        raise ConfigError(f"{name} must be an integer >= 0, got {value!r}; {fix}")


def validate_run(model: nn.Module, clients: Sequence[Client], strategy: object = None, *,
                 rounds: int = 1, eval_every: int = 1, fraction: float = 1.0,
                 min_clients: int = 1) -> None:
    """Everything :func:`fedlearn.run` can check before round 0: raise with the fix.

    ``strategy.config`` (when it is a :class:`~fedlearn.TrainConfig`) is the local training
    every hospital is asked to run; strategies that vary it per round are checked against
    this one. The checks, in order: run arguments; each hospital's tensors
    (:func:`check_client_data`); one forward pass of one training example per input shape
    (the model must accept the inputs); labels within the model's outputs; ``class_weights``
    of the model's length; no BatchNorm minibatch of a single example.
    """
    from .client import TrainConfig  # client.py imports this module

    _check_count("rounds", rounds, "use rounds=0 to only evaluate the initial model")
    _check_count("eval_every", eval_every,
                      "use eval_every=0 to never evaluate, or k to evaluate every k rounds")
    if not _is_real(fraction) or not 0 < float(fraction) <= 1:  # type: ignore[arg-type]
        raise ConfigError(f"fraction must be in (0, 1], got {fraction!r}; it is the share of "
                          "hospitals sampled each round (1.0 = all)")
    if not _is_int(min_clients) or int(min_clients) < 1:  # type: ignore[call-overload]
        raise ConfigError(f"min_clients must be an integer >= 1, got {min_clients!r}; a round "
                          "needs at least one hospital")
    if not clients:
        raise ConfigError("no clients: pass at least one fedlearn.Client")
    config = getattr(strategy, "config", None)
    config = config if isinstance(config, TrainConfig) else None

    probed: dict[tuple[tuple[int, ...], torch.dtype], tuple[int | None, list[str]]] = {}
    risky: list[tuple[Client, int]] = []
    bn_layers: list[str] = []
    for c in clients:
        check_client_data(c)
        who = _who(c)
        x, y = c.train.tensors[0], c.train.tensors[1]
        key = (tuple(x.shape[1:]), x.dtype)
        if key not in probed:
            probed[key] = _probe(who, model, x)
        outputs, single = probed[key]
        if c.loss_fn is None and outputs is not None:
            sets = [("training", y)] + ([("test", c.test.tensors[1])] if c.test is not None
                                        else [])
            for what, labels in sets:
                top = int(labels.max()) if labels.numel() else -1
                if top >= outputs:
                    raise ConfigError(
                        f"{who}: {what} label {top} is out of range for a model with "
                        f"{outputs} outputs (valid classes 0..{outputs - 1}); relabel the "
                        f"classes as 0..{outputs - 1}, or build the model with "
                        f"num_classes={top + 1}")
            if config is not None and config.class_weights is not None \
                    and len(config.class_weights) != outputs:
                raise ConfigError(
                    f"TrainConfig.class_weights={config.class_weights} has "
                    f"{len(config.class_weights)} weight(s) but the model has {outputs} "
                    f"outputs (classes); give exactly one weight per class ({outputs} values, "
                    "e.g. fedlearn.hospitals.balanced_class_weights(labels, "
                    f"num_classes={outputs}))")
        if single and config is not None and _batch_of_one(len(x), config):
            risky.append((c, len(x)))
            bn_layers = single
    if risky and config is not None:
        raise _batch_of_one_error(risky, bn_layers[0], config, [len(k.train) for k in clients])
