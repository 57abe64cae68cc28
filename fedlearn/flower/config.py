"""What travels between the coordinator and the hospitals, and in which form.

A Flower deployment ships three kinds of things, and this module gives each one a plain,
inspectable form:

* **code**: the Flower app (``fedlearn/flower/app``), plus ``fedlearn`` and torch installed
  at every site. A model is therefore named, not sent: a :class:`ModelSpec` (``"logreg"``
  with its keyword arguments) that both sides build with :func:`fedlearn.make_model`.
* **configuration**: the run config (one flat TOML table) the coordinator submits, and each
  node's own node config (its partition id and the *local* path of its data).
* **weights and instructions**: the global weights and, every round, the strategy's
  :class:`~fedlearn.client.TrainConfig` as JSON. Local hooks (FedProx's proximal term) are
  objects; they travel pickled, and the client only unpickles classes from ``fedlearn``
  (:func:`loads_hooks`), because unpickling arbitrary data from a server runs its code.

Patient data never appear in any of these: each node reads its partition file from its own
disk (:func:`save_partition` / :func:`load_partition`).
"""

from __future__ import annotations

import dataclasses
import io
import json
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from ..client import Client, LocalHook, TrainConfig
from ..models import make_model

__all__ = ["ModelSpec", "SecAggOptions", "DPOptions", "RemoteClient", "save_partition",
           "load_partition", "train_config_to_json", "train_config_from_json", "dumps_hooks",
           "loads_hooks", "EVALUATE_MODES"]

#: When the ServerApp asks the hospitals to score the global model on their test sets.
EVALUATE_MODES = ("none", "final", "every")


@dataclass(frozen=True)
class ModelSpec:
    """A model by name, built identically by the ServerApp and every ClientApp.

    ``seed`` fixes the initial weights, so the coordinator and an in-process simulation
    (``make_model(name, seed=seed, **kwargs)``) start from the same global model.
    """

    name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0

    def build(self) -> nn.Module:
        """A fresh model with the spec's initial weights."""
        return make_model(self.name, seed=self.seed, **dict(self.kwargs))

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "kwargs": dict(self.kwargs), "seed": self.seed})

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        d = json.loads(text)
        return cls(name=d["name"], kwargs=d.get("kwargs", {}), seed=int(d.get("seed", 0)))


@dataclass(frozen=True)
class SecAggOptions:
    """Flower's SecAgg+ workflow (Bell et al., 2020): the server sees only the weighted sum.

    Each client's weights, multiplied by ``num_examples / max_weight``, are clipped to
    ``[-clipping_range, clipping_range]`` and quantised to ``quantization_range`` levels
    before masking, so the result differs from plain FedAvg by the quantisation error
    (about ``2 * clipping_range / quantization_range`` per client and coordinate).
    ``reconstruction_threshold`` of the ``num_shares`` key shares must survive a dropout.
    """

    num_shares: int = 3
    reconstruction_threshold: int = 2
    max_weight: float = 1000.0
    clipping_range: float = 8.0
    quantization_range: int = 4194304
    timeout: float = 120.0


@dataclass(frozen=True)
class DPOptions:
    """Central DP with client-side clipping (Flower's ``fixedclipping_mod`` + wrapper).

    Every client clips its update ``w_k - w`` to L2 norm ``clipping_norm`` before it is
    masked; the server adds Gaussian noise of standard deviation
    ``noise_multiplier * clipping_norm / num_sampled_clients`` to the average. This is the
    mechanism of McMahan et al. (2018), with one caveat: Flower averages with *sample*
    weights, so hospital k's influence is ``n_k / n * clipping_norm``, not ``C / m``. Quote a
    privacy budget only for an unweighted strategy (``fl.FedAvg(config, weighted=False)``:
    every hospital then reports weight 1 and the sensitivity is ``C / m``).
    """

    noise_multiplier: float
    clipping_norm: float

    def __post_init__(self) -> None:
        if self.noise_multiplier < 0:
            raise ValueError(f"noise_multiplier must be >= 0, got {self.noise_multiplier}")
        if not self.clipping_norm > 0:
            raise ValueError(f"clipping_norm must be > 0, got {self.clipping_norm}")

    def noise_std(self, num_clients: int) -> float:
        """Standard deviation of the noise added to each coordinate of the average."""
        return self.noise_multiplier * self.clipping_norm / num_clients


@dataclass(frozen=True)
class RemoteClient:
    """What the server knows of a hospital before it replies: an id and a name, no data.

    Passed to ``Strategy.configure_round`` in place of a :class:`~fedlearn.client.Client`,
    which in a deployment lives on another machine.
    """

    cid: int
    name: str


# ----------------------------------------------------------------------------- partitions


def save_partition(client: Client, path: str | Path) -> Path:
    """Write one hospital's data to ``path`` (a ``.pt`` file of tensors, ids and names only).

    The file is what that hospital's SuperNode is given in its node config; it is loaded
    with ``weights_only=True``, so it can hold no code.
    """
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "cid": int(client.cid), "name": client.name,
        "train_x": client.train.tensors[0], "train_y": client.train.tensors[1],
    }
    if client.test is not None:
        payload["test_x"], payload["test_y"] = client.test.tensors[0], client.test.tensors[1]
    torch.save(payload, path)
    return path


def load_partition(path: str | Path) -> Client:
    """The :class:`~fedlearn.client.Client` saved by :func:`save_partition`."""
    d = torch.load(Path(path), weights_only=True)
    test = TensorDataset(d["test_x"], d["test_y"]) if "test_x" in d else None
    return Client(cid=int(d["cid"]), train=TensorDataset(d["train_x"], d["train_y"]),
                  test=test, name=str(d["name"]))


# ----------------------------------------------------------------------------- instructions


def train_config_to_json(config: TrainConfig) -> str:
    """The instruction of one round as JSON (it goes into the message's ConfigRecord)."""
    return json.dumps(dataclasses.asdict(config))


def train_config_from_json(text: str) -> TrainConfig:
    d = json.loads(text)
    if d.get("class_weights") is not None:
        d["class_weights"] = tuple(float(w) for w in d["class_weights"])
    return TrainConfig(**d)


class _FedlearnOnlyUnpickler(pickle.Unpickler):
    """Refuses every global outside ``fedlearn`` and a few harmless builtins."""

    _BUILTINS = {("builtins", n) for n in ("tuple", "list", "dict", "set", "frozenset",
                                             "float", "int", "str", "bool", "object")}
    _BUILTINS |= {("copyreg", "_reconstructor"), ("copyreg", "__newobj__")}

    def find_class(self, module: str, name: str) -> Any:
        if module == "fedlearn" or module.startswith("fedlearn.") or (module, name) in \
                self._BUILTINS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to unpickle {module}.{name}: a client only accepts fedlearn hooks")


def dumps_hooks(hooks: Sequence[LocalHook]) -> bytes:
    """Local hooks (e.g. FedProx's proximal term) as bytes for the ConfigRecord."""
    return pickle.dumps(tuple(hooks), protocol=4)


def loads_hooks(data: bytes) -> tuple[LocalHook, ...]:
    """Inverse of :func:`dumps_hooks`, accepting only classes defined in ``fedlearn``."""
    if not data:
        return ()
    hooks = _FedlearnOnlyUnpickler(io.BytesIO(data)).load()
    if not isinstance(hooks, tuple) or not all(isinstance(h, LocalHook) for h in hooks):
        raise pickle.UnpicklingError("hooks must be a tuple of fedlearn LocalHook objects")
    return hooks
