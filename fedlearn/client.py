"""A hospital: its private data and the local training it runs each round.

Local training is the only place patient data is touched. It starts from the global
weights, runs E epochs (or a fixed number of steps) of minibatch SGD on the hospital's own
examples, and returns the *difference* from the global weights as a :class:`ClientUpdate`.

Algorithms that change what a client optimises (FedProx's proximal term, SCAFFOLD's
control variates, ...) plug in through :class:`LocalHook` objects rather than flags here,
so this loop stays the plain one every learner reads first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from .errors import ConfigError
from .update import ClientUpdate
from .utils import StateDict, clone_state, state_sub, torch_generator
from .validation import check_client_data, check_train_config

__all__ = ["TrainConfig", "LocalHook", "Client", "local_train", "predict_proba",
           "cross_entropy_loss",
           "clients_from_sites", "clients_from_partition"]


@dataclass(frozen=True)
class TrainConfig:
    """What the server asks a client to do in one round.

    Attributes:
        epochs: passes over the local data (McMahan et al.'s E). Ignored if ``steps`` is set.
        steps: an exact number of minibatch steps (FLamby and SCAFFOLD count steps, not epochs).
        batch_size: B; ``None`` means full batch (B = infinity in McMahan et al.'s notation).
        lr: local learning rate (finite, > 0).
        momentum, weight_decay: for the SGD optimiser; momentum in [0, 1), weight decay >= 0.
        optimizer: 'sgd' or 'adam' (Adam with ``momentum=0``: it has its own moments). A
            fresh optimiser is built each round, so no optimiser state leaks between rounds
            or hospitals.
        class_weights: optional per-class weights for the cross-entropy loss (imbalanced
            labels, e.g. pneumonia vs normal): finite, >= 0, not all zero, one per model
            output (checked against the model when :func:`fedlearn.run` starts).
        max_grad_norm: optional clipping of the gradient norm at each step (stability, not
            DP); > 0, since a negative norm would flip the gradient into ascent.

    Every field is checked at construction and an invalid one raises
    :class:`~fedlearn.errors.ConfigError` (a ``ValueError``) naming it, the value and the fix.
    """

    epochs: int = 1
    steps: int | None = None
    batch_size: int | None = 32
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    optimizer: Literal["sgd", "adam"] = "sgd"
    class_weights: tuple[float, ...] | None = None
    max_grad_norm: float | None = None

    def __post_init__(self) -> None:
        # Refuse every invalid field here, naming it and the fix (fedlearn.validation); the
        # checked values are stored back as plain int/float/tuple (NumPy scalars and arrays
        # would not serialise to JSON for Flower, nor hash).
        for name, value in check_train_config(self).items():
            object.__setattr__(self, name, value)


class LocalHook:
    """Extension point for algorithms that change the local objective.

    Override any of the three methods; the defaults do nothing, so a hook only says
    what is different about its algorithm.
    """

    def on_start(self, model: nn.Module, global_state: StateDict) -> None:
        """Called once before the first step (e.g. remember the global weights)."""

    def extra_loss(self, model: nn.Module) -> torch.Tensor | None:
        """A term added to the minibatch loss (e.g. FedProx's mu/2 ||w - w_global||^2)."""
        return None

    def after_backward(self, model: nn.Module) -> None:
        """Called after ``backward`` and before the optimiser step (e.g. SCAFFOLD's correction)."""

    def after_step(self, model: nn.Module) -> None:
        """Called after each optimiser step (e.g. Ditto's proximal step towards the global
        model, which is stable for any coupling strength, unlike a gradient penalty)."""

    def on_end(self, model: nn.Module, num_steps: int) -> None:
        """Called after the last step (e.g. update a client control variate)."""


@dataclass
class Client:
    """One hospital in a simulation: an id, a name and its private train/validation/test data.

    The data are checked at construction (:func:`fedlearn.validation.check_client_data`):
    ``TensorDataset(x, y)`` with one label per input, test inputs shaped like the training
    inputs and, with the default cross-entropy loss, labels that are 1-D ``torch.long`` class
    indices >= 0 and never -100 (torch's silent ``ignore_index``). Labels are not converted
    for you: ``y.long()`` is one call, and a silent conversion would hide float labels that
    are not whole numbers. Labels against the model's outputs are checked by ``fl.run``.

    ``val`` is the hospital's own validation split (model selection and tuning read it, never
    ``test``; :func:`fedlearn.splits.with_validation` carves it from ``train``). ``personal``
    is what personalised algorithms keep *at the hospital* between rounds (Ditto's personal
    model, FedPer's head, ...), keyed by the algorithm's name: it is never sent, and it lives
    here rather than on the server's strategy object.
    """

    cid: int
    train: TensorDataset
    test: TensorDataset | None = None
    name: str = ""
    meta: dict[str, object] = field(default_factory=dict)
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    """Local loss; ``None`` means cross-entropy (with ``TrainConfig.class_weights``)."""
    val: TensorDataset | None = None
    personal: dict[str, object] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.name:
            self.name = f"client {self.cid}"
        if len(self.train) == 0:
            raise ConfigError(f"{self.name} has no training examples; drop this hospital or "
                              "give it data")
        check_client_data(self)  # shapes, label dtype and sign, test inputs vs training inputs
        if self.val is not None:
            _check_val(self)

    @property
    def num_train(self) -> int:
        return len(self.train)

    def fit(self, model: nn.Module, global_state: StateDict, config: TrainConfig, seed: int,
            hooks: Sequence[LocalHook] = ()) -> ClientUpdate:
        """Load the global weights into ``model``, train locally, return the update."""
        return local_train(model, global_state, self.train, config, seed=seed, hooks=hooks,
                           cid=self.cid, loss_fn=self.loss_fn)


def _check_val(client: Client) -> None:
    """The validation split must look like the training split (a pair, same input shape)."""
    val = client.val
    tensors = getattr(val, "tensors", None)
    if not isinstance(val, TensorDataset) or tensors is None or len(tensors) != 2:
        raise ConfigError(f"{client.name}: val must be a TensorDataset(x, y), got "
                          f"{type(val).__name__}; build it like the training set")
    xv, yv = tensors
    x = client.train.tensors[0]
    if xv.shape[1:] != x.shape[1:] or len(xv) != len(yv):
        raise ConfigError(f"{client.name}: validation inputs have shape {tuple(xv.shape)} with "
                          f"{len(yv)} labels but training inputs {tuple(x.shape[1:])} per "
                          "example; preprocess the validation split exactly like the training "
                          "split, with one label per input")


def cross_entropy_loss(class_weights: Sequence[float] | None = None,
                       ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Mean cross-entropy, optionally weighted per class.

    With weights c_y the loss is ``sum_i c_{y_i} l_i / B`` (divided by the batch size),
    not torch's ``sum_i c_{y_i} l_i / sum_i c_{y_i}``. Only the former is an average over
    examples, so that the pooled objective still splits as ``sum_k (n_k/n) F_k`` and FedSGD
    remains exactly gradient descent on the class-weighted pooled risk; torch's
    normalisation would silently cancel the weights at a hospital that sees one class only.
    """
    if class_weights is None:
        return nn.functional.cross_entropy
    w = torch.tensor(list(class_weights), dtype=torch.float32)

    def weighted(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if logits.shape[-1] != len(w):
            raise ConfigError(f"class_weights has {len(w)} weight(s) but the model has "
                              f"{logits.shape[-1]} outputs; give exactly one weight per class")
        return (nn.functional.cross_entropy(logits, y, reduction="none") * w[y]).mean()

    return weighted


def _batches(n: int, batch_size: int | None, gen: torch.Generator) -> list[torch.Tensor]:
    """Index batches for one shuffled epoch (the last batch may be smaller)."""
    perm = torch.randperm(n, generator=gen)
    b = n if batch_size is None else batch_size
    return list(perm.split(b))


def local_train(model: nn.Module, global_state: StateDict, data: TensorDataset,
                config: TrainConfig, seed: int, hooks: Sequence[LocalHook] = (),
                cid: int = 0,
                loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                ) -> ClientUpdate:
    """Run one round of local training and return ``local - global`` as an update.

    Batches are drawn by indexing the data tensors directly (no DataLoader): for small
    in-memory medical datasets this is several times faster and exactly reproducible
    from ``seed``.
    """
    x, y = data.tensors[0], data.tensors[1]
    n = len(x)
    own = {t.data_ptr() for t in model.state_dict().values()}
    if any(v.data_ptr() in own for v in global_state.values()):
        # ``global_state`` is the model's own ``state_dict()``: its tensors would change in
        # place during training and the delta would silently come out as zero.
        global_state = clone_state(global_state)
    model.load_state_dict(global_state)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if loss_fn is None:
        loss_fn = cross_entropy_loss(config.class_weights)
    gen = torch_generator(seed)
    for h in hooks:
        h.on_start(model, global_state)

    total_steps = config.steps if config.steps is not None else None
    steps = 0
    loss_sum = 0.0
    epoch = 0
    while True:
        if total_steps is None and epoch >= config.epochs:
            break
        if total_steps is not None and steps >= total_steps:
            break
        for idx in _batches(n, config.batch_size, gen):
            if total_steps is not None and steps >= total_steps:
                break
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            for h in hooks:
                extra = h.extra_loss(model)
                if extra is not None:
                    loss = loss + extra
            loss.backward()
            for h in hooks:
                h.after_backward(model)
            if config.max_grad_norm is not None:
                nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            opt.step()
            for h in hooks:
                h.after_step(model)
            steps += 1
            loss_sum += float(loss.detach())
        epoch += 1
    for h in hooks:
        h.on_end(model, steps)
    delta = state_sub(model.state_dict(), global_state)
    # no step, no loss: NaN (not 0.0, which would read as a perfect fit)
    metrics = {"train_loss": loss_sum / steps if steps else float("nan"),
               "num_steps": float(steps)}
    return ClientUpdate(cid=cid, delta=delta, num_examples=n, metrics=metrics)


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """Class probabilities (softmax of the logits) in eval mode, batched to bound memory."""
    was_training = model.training
    model.eval()
    out = [torch.softmax(model(xb), dim=1) for xb in x.split(batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def clients_from_sites(sites: Sequence[object]) -> list[Client]:
    """Clients from objects with ``name``, ``train`` and ``test`` (e.g. ``fedlearn.data.Site``)."""
    return [Client(cid=i, train=s.train, test=s.test, name=s.name)  # type: ignore[attr-defined]
            for i, s in enumerate(sites)]


def clients_from_partition(train: TensorDataset, parts: Sequence[Sequence[int]],
                           test: TensorDataset | None = None,
                           test_parts: Sequence[Sequence[int]] | None = None,
                           names: Sequence[str] | None = None) -> list[Client]:
    """Clients holding the index subsets ``parts`` of one dataset.

    Each client's test set is its own slice of ``test`` when ``test_parts`` is given
    (hospital-specific evaluation), else the whole shared ``test`` set, else none.
    """
    xs, ys = train.tensors[0], train.tensors[1]
    clients = []
    for i, idx in enumerate(parts):
        ix = torch.as_tensor(np.asarray(idx, dtype=np.int64))
        tr = TensorDataset(xs[ix], ys[ix])
        te = test
        if test is not None and test_parts is not None:
            tix = torch.as_tensor(np.asarray(test_parts[i], dtype=np.int64))
            te = TensorDataset(test.tensors[0][tix], test.tensors[1][tix])
        name = names[i] if names is not None else f"hospital {i}"
        clients.append(Client(cid=i, train=tr, test=te, name=name))
    return clients
