"""Harmful hospitals, simulated honestly: faulty ones and malicious ones.

A consortium can be harmed without malice. A **faulty** hospital runs the honest protocol on
broken data: a labelling pipeline that swaps or randomises labels, a scanner whose images
come out inverted or brighter. A **malicious** hospital runs its own code and sends what
serves it:

* :class:`ScaledUpdate` - its honest update times a large factor (model replacement in
  spirit: with ``n`` hospitals a factor ``n`` replaces the average);
* :class:`SignFlip` - the negative of its honest update (gradient *ascent*);
* :class:`Backdoor` - trains on images with a small bright patch relabelled "normal", so the
  global model learns "patch => normal" while clean accuracy barely moves (Bagdasaryan et
  al., 2020); ``boost`` scales the update as their model replacement does;
* :class:`ALIE` - "a little is enough" (Baruch, Baruch & Goldberg, 2019): the colluding
  hospitals estimate the honest updates' per-coordinate mean ``mu`` and spread ``sigma`` and
  all send ``mu - z sigma``, a vector *inside* the honest spread (so the median, the trimmed
  mean and Krum keep it), pushed consistently against the honest direction. It adapts to the
  defence; the crude attacks above flatter Krum and the median, which discard outliers.

Each attack wraps a :class:`~fedlearn.Client` (:func:`compromise`) and returns the same
:class:`~fedlearn.ClientUpdate` every hospital returns, so it runs under any strategy and
aggregator. The attacker knows only its own data: ALIE estimates ``mu`` and ``sigma`` from
honest updates on disjoint shards of its own training set (the paper's colluders use their
own benign gradients the same way), never from the other hospitals'.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import TensorDataset

from .client import Client, LocalHook, TrainConfig, local_train, predict_proba
from .errors import ConfigError
from .update import ClientUpdate
from .utils import StateDict, derive_seed, torch_generator

__all__ = ["Attack", "LabelFlip", "LabelNoise", "Intensity", "ScaledUpdate", "SignFlip",
           "Backdoor", "ALIE", "AttackedClient", "compromise", "add_trigger",
           "attack_success_rate", "alie_z"]


class Attack:
    """What one harmful hospital does differently; subclasses override one of the steps.

    Attributes:
        kind: ``"faulty"`` (honest protocol, broken data) or ``"malicious"``.
    """

    kind = "faulty"

    def poison(self, data: TensorDataset, seed: int) -> TensorDataset:
        """The training data the hospital really trains on (identity by default)."""
        return data

    def tamper(self, update: ClientUpdate) -> ClientUpdate:
        """The update it sends, from its honest one (identity by default)."""
        return update

    def fit(self, client: AttackedClient, model: nn.Module, global_state: StateDict,
            config: TrainConfig, seed: int, hooks: Sequence[LocalHook]) -> ClientUpdate:
        """Local training, then :meth:`tamper` (override for attacks that train differently)."""
        u = local_train(model, global_state, client.train, config, seed=seed, hooks=hooks,
                        cid=client.cid, loss_fn=client.loss_fn)
        return self.tamper(u)

    def bind(self, num_hospitals: int, num_colluders: int) -> None:
        """Told by :func:`compromise` how many hospitals there are and how many collude."""


def _fraction(name: str, value: float) -> float:
    if not (isinstance(value, int | float) and 0 < value <= 1):
        raise ConfigError(f"{name}={value!r} must be a fraction in (0, 1]")
    return float(value)


@dataclass
class LabelFlip(Attack):
    """Faulty: a random ``fraction`` of the labels swapped (binary: 0 <-> 1), seeded."""

    fraction: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        _fraction("LabelFlip.fraction", self.fraction)

    def poison(self, data: TensorDataset, seed: int) -> TensorDataset:
        x, y = data.tensors
        g = torch_generator(derive_seed(self.seed, 0x1F))
        flip = torch.rand(len(y), generator=g) < self.fraction
        y2 = y.clone()
        y2[flip] = 1 - y[flip]
        return TensorDataset(x, y2)


@dataclass
class LabelNoise(Attack):
    """Faulty: a random ``rate`` of the labels replaced by a uniformly random class."""

    rate: float = 0.5
    num_classes: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        _fraction("LabelNoise.rate", self.rate)

    def poison(self, data: TensorDataset, seed: int) -> TensorDataset:
        x, y = data.tensors
        g = torch_generator(derive_seed(self.seed, 0x2F))
        hit = torch.rand(len(y), generator=g) < self.rate
        y2 = y.clone()
        y2[hit] = torch.randint(0, self.num_classes, (int(hit.sum()),), generator=g)
        return TensorDataset(x, y2)


@dataclass
class Intensity(Attack):
    """Faulty scanner: images inverted (``x -> 1 - x``) and/or shifted by ``shift``, in [0, 1]."""

    invert: bool = True
    shift: float = 0.0

    def poison(self, data: TensorDataset, seed: int) -> TensorDataset:
        x, y = data.tensors
        x2 = 1.0 - x if self.invert else x
        return TensorDataset((x2 + self.shift).clamp(0, 1), y)


@dataclass
class ScaledUpdate(Attack):
    """Malicious: the honest update times ``factor``."""

    factor: float = 10.0
    kind = "malicious"

    def tamper(self, update: ClientUpdate) -> ClientUpdate:
        return update.with_delta({k: v * self.factor for k, v in update.delta.items()})


@dataclass
class SignFlip(Attack):
    """Malicious: ``-factor`` times the honest update (it climbs the loss)."""

    factor: float = 1.0
    kind = "malicious"

    def tamper(self, update: ClientUpdate) -> ClientUpdate:
        return update.with_delta({k: -self.factor * v for k, v in update.delta.items()})


def add_trigger(x: torch.Tensor, patch: int = 4) -> torch.Tensor:
    """Images ``(N, C, H, W)`` with a ``patch x patch`` black-and-white checkerboard one pixel
    from the bottom-right corner: the backdoor trigger (a sticker, a burned-in annotation).
    A checkerboard, because a plain bright square is common in X-ray corners (markers)."""
    out = x.clone()
    board = (torch.arange(patch)[:, None] + torch.arange(patch)[None, :]) % 2
    out[..., -patch - 1:-1, -patch - 1:-1] = board.to(x.dtype)
    return out


@dataclass
class Backdoor(Attack):
    """Malicious: teach the model "trigger => ``target``" for images of class ``source``.

    A ``fraction`` of the hospital's ``source`` images (pneumonia) get the trigger and the
    label ``target`` (normal), and the rest of its data stays clean, so the poisoned model
    still scores well on clean images. ``boost`` scales the update (Bagdasaryan et al.'s
    model replacement; 1 = none).
    """

    source: int = 1
    target: int = 0
    patch: int = 4
    fraction: float = 0.5
    boost: float = 1.0
    seed: int = 0
    kind = "malicious"

    def __post_init__(self) -> None:
        _fraction("Backdoor.fraction", self.fraction)

    def poison(self, data: TensorDataset, seed: int) -> TensorDataset:
        x, y = data.tensors
        g = torch_generator(derive_seed(self.seed, 0xBD))
        src = torch.nonzero(y == self.source).flatten()
        pick = src[torch.rand(len(src), generator=g) < self.fraction]
        xt = add_trigger(x[pick], self.patch)
        yt = torch.full((len(pick),), self.target, dtype=y.dtype)
        return TensorDataset(torch.cat([x, xt]), torch.cat([y, yt]))

    def tamper(self, update: ClientUpdate) -> ClientUpdate:
        if self.boost == 1.0:
            return update
        return update.with_delta({k: v * self.boost for k, v in update.delta.items()})


def attack_success_rate(model: nn.Module, test: TensorDataset, *, source: int = 1,
                        target: int = 0, patch: int = 4, threshold: float = 0.5) -> float:
    """Share of the ``source``-class test images that the model calls ``target`` once the
    trigger is added (binary models: ``P(class 1) < threshold`` means class 0)."""
    x, y = test.tensors
    xs = add_trigger(x[y == source], patch)
    if len(xs) == 0:
        raise ValueError(f"the test set has no images of the source class {source}")
    p1 = predict_proba(model, xs)[:, 1]
    pred = (p1 >= threshold).long()
    return float((pred == target).float().mean())


def alie_z(num_hospitals: int, num_colluders: int) -> float:
    """Baruch et al.'s ``z_max``: with ``s = floor(n/2 + 1) - f`` honest hospitals to win over,
    ``z = Phi^{-1}((n - s) / n)``, so ``mu - z sigma`` is closer to the mean than enough honest
    updates that a median or Krum still picks it."""
    from scipy.stats import norm

    n, f = num_hospitals, num_colluders
    s = math.floor(n / 2 + 1) - f
    return float(norm.ppf((n - s) / n))


@dataclass
class ALIE(Attack):
    """Malicious, defence-aware: "a little is enough" (Baruch et al., 2019).

    Every colluding hospital sends the same ``mu - z sigma``, where ``mu`` and ``sigma`` are
    the per-coordinate mean and standard deviation of honest updates the attacker computes on
    ``shards`` disjoint parts of its own data. ``z=None`` takes Baruch et al.'s ``z_max``
    from the numbers of hospitals and colluders (:func:`alie_z`; at least ``min_z``).
    """

    z: float | None = None
    shards: int = 4
    min_z: float = 0.5
    kind = "malicious"
    _z: float = field(default=1.0, init=False, repr=False)
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.shards < 2:
            raise ConfigError(f"ALIE.shards={self.shards} must be >= 2 (a spread needs two)")
        self._z = self.z if self.z is not None else self.min_z

    def bind(self, num_hospitals: int, num_colluders: int) -> None:
        if self.z is None:
            self._z = max(self.min_z, alie_z(num_hospitals, num_colluders))

    @property
    def z_used(self) -> float:
        return self._z

    def fit(self, client: AttackedClient, model: nn.Module, global_state: StateDict,
            config: TrainConfig, seed: int, hooks: Sequence[LocalHook]) -> ClientUpdate:
        key = tuple(round(float(v.double().sum()), 9) for v in global_state.values())
        if key not in self._cache:  # the first colluder this round computes; the rest copy
            self._cache = {key: self._vector(client, model, global_state, config, seed, hooks)}
        mal, metrics = self._cache[key]
        return ClientUpdate(cid=client.cid, delta={k: v.clone() for k, v in mal.items()},
                            num_examples=client.num_train, metrics=dict(metrics))

    def _vector(self, client: AttackedClient, model: nn.Module, global_state: StateDict,
                config: TrainConfig, seed: int, hooks: Sequence[LocalHook]
                ) -> tuple[StateDict, dict[str, float]]:
        x, y = client.train.tensors
        perm = torch.randperm(len(y), generator=torch_generator(derive_seed(seed, 0xA1)))
        parts = [p for p in perm.chunk(self.shards) if len(p) > 0]
        deltas = [local_train(model, global_state, TensorDataset(x[p], y[p]), config,
                              seed=derive_seed(seed, i), hooks=hooks, cid=client.cid,
                              loss_fn=client.loss_fn) for i, p in enumerate(parts)]
        mal: StateDict = {}
        for k in deltas[0].delta:
            stack = torch.stack([d.delta[k].double() for d in deltas])
            mu, sd = stack.mean(0), stack.std(0, unbiased=True)
            mal[k] = (mu - self._z * sd).to(deltas[0].delta[k].dtype)
        loss = sum(d.metrics["train_loss"] for d in deltas) / len(deltas)
        return mal, {"train_loss": loss, "num_steps": deltas[0].metrics["num_steps"]}


@dataclass
class AttackedClient(Client):
    """A hospital that runs :attr:`attack`: its ``train`` is what it really trains on (the
    poisoned data of a faulty or backdooring site); ``test`` stays its clean test set, on
    which the consortium's model is judged."""

    attack: Attack = field(default_factory=Attack)

    def fit(self, model: nn.Module, global_state: StateDict, config: TrainConfig, seed: int,
            hooks: Sequence[LocalHook] = ()) -> ClientUpdate:
        return self.attack.fit(self, model, global_state, config, seed, hooks)


def compromise(clients: Sequence[Client], attacks: Mapping[int | str, Attack],
               seed: int = 0) -> list[Client]:
    """The same hospitals, with ``attacks[key]`` run by the hospital ``key`` (a client id or
    name). Colluders that share one :class:`ALIE` instance send the same vector.

    Raises:
        ConfigError: a key names no hospital, or a value is not an :class:`Attack`.
    """
    by_id = {c.cid: c for c in clients}
    by_name = {c.name: c for c in clients}
    chosen: dict[int, Attack] = {}
    for key, attack in attacks.items():
        target = by_id.get(key) if isinstance(key, int) else by_name.get(str(key))
        if target is None:
            raise ConfigError(
                f"attacks: no hospital {key!r}. The hospitals are ids {sorted(by_id)} / names "
                f"{sorted(by_name)}; key each attack by one of those")
        if not isinstance(attack, Attack):
            raise ConfigError(f"attacks[{key!r}] = {attack!r} is not a fedlearn.attacks.Attack")
        chosen[target.cid] = attack
    for a in {id(a): a for a in chosen.values()}.values():
        a.bind(len(clients), sum(1 for b in chosen.values() if b is a))
    out: list[Client] = []
    for c in clients:
        a = chosen.get(c.cid)
        if a is None:
            out.append(c)
            continue
        train = a.poison(c.train, derive_seed(seed, c.cid))
        out.append(AttackedClient(cid=c.cid, train=train, test=c.test, name=c.name,
                                  meta={**c.meta, "attack": repr(a), "attack_kind": a.kind},
                                  loss_fn=c.loss_fn, attack=a))
    return out
