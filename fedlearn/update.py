"""The one object a client sends back each round.

A hospital never sends data, only a :class:`ClientUpdate`: the *change* it made to the
global model (a delta over named tensors), how many examples it trained on (the weight
n_k in FedAvg), and a few metrics. Every later stage acts on this object alone: clipping
and noise (differential privacy), masking (secure aggregation), compression and server
optimisers. Keeping it one small dataclass is what lets those stages compose.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from .utils import StateDict, state_nbytes, state_norm

__all__ = ["ClientUpdate", "InvalidUpdateError", "validate_updates"]


class InvalidUpdateError(ValueError):
    """An update the server must not aggregate (NaN/inf values, wrong keys or shapes)."""


@dataclass
class ClientUpdate:
    """What client ``cid`` returns after local training.

    Attributes:
        cid: the client's id.
        delta: ``local_weights - global_weights`` for every floating-point entry.
        num_examples: examples the client trained on this round (FedAvg's weight).
        metrics: e.g. ``train_loss``, ``num_steps``; plain floats.
        nbytes: bytes this update costs on the wire (defaults to the raw float size;
            compression schemes overwrite it).
    """

    cid: int
    delta: StateDict
    num_examples: int
    metrics: dict[str, float] = field(default_factory=dict)
    nbytes: int | None = None

    def __post_init__(self) -> None:
        if self.num_examples < 0:
            raise InvalidUpdateError(f"client {self.cid}: num_examples must be >= 0, "
                                     f"got {self.num_examples}")
        if self.nbytes is None:
            self.nbytes = state_nbytes(self.delta)

    @property
    def norm(self) -> float:
        """L2 norm of the whole delta (the quantity DP clipping bounds)."""
        return state_norm(self.delta)

    def with_delta(self, delta: StateDict) -> ClientUpdate:
        """A copy with a new delta (clipping, noise and masking return new updates)."""
        return replace(self, delta=delta, nbytes=state_nbytes(delta))

    def check(self, template: StateDict | None = None) -> None:
        """Raise :class:`InvalidUpdateError` if this update is unsafe to aggregate."""
        for k, v in self.delta.items():
            if not torch.isfinite(v).all():
                bad = int((~torch.isfinite(v)).sum())
                raise InvalidUpdateError(
                    f"client {self.cid}: update entry {k!r} has {bad} NaN/inf value(s); "
                    "a diverged client (learning rate too high?) would poison the global model")
        if template is not None:
            missing = [k for k in template if k not in self.delta]
            extra = [k for k in self.delta if k not in template]
            if missing or extra:
                raise InvalidUpdateError(f"client {self.cid}: update keys do not match the model "
                                         f"(missing {missing}, unexpected {extra})")
            for k, v in template.items():
                if self.delta[k].shape != v.shape:
                    raise InvalidUpdateError(
                        f"client {self.cid}: entry {k!r} has shape {tuple(self.delta[k].shape)}, "
                        f"the model has {tuple(v.shape)}")


def validate_updates(updates: list[ClientUpdate], template: StateDict | None = None) -> None:
    """Check every update (finite, consistent keys/shapes, positive total weight)."""
    if not updates:
        raise InvalidUpdateError("no client updates to aggregate")
    for u in updates:
        u.check(template if template is not None else updates[0].delta)
