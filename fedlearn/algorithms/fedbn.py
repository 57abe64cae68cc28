"""FedBN (Li et al., 2021): batch-norm layers stay at each hospital.

Under *feature skew* (each hospital's scanner gives images a different brightness, contrast
or noise) the labels mean the same everywhere but the inputs do not. A BatchNorm layer
normalises each channel with statistics of the data it sees; trained locally, its running
mean/variance and its affine scale/shift absorb exactly such per-site shifts. FedBN therefore
averages every layer *except* BatchNorm: each client keeps its own BN weights, biases and
running statistics and never uploads them. The model a hospital uses is the shared
convolutional/linear layers plus its own BN layers, so evaluation must use that personalised
model (``personal_state``, which :func:`fedlearn.run` calls when evaluating). The BN entries
are left out of the hospital's contribution altogether (not sent as zeros), so under any
aggregator they are neither summed, masked, noised nor counted in the bytes.

Running statistics are exponential averages collected *while* the weights moved during local
training, and the shared layers change again when the server averages them, so after a short
round they are stale. With ``recalibrate=True`` (the default) a hospital re-estimates its BN
statistics under the current shared weights with one forward pass over its own training
images, without labels or gradients, before using the model (AdaBN; Li et al., 2018). Nothing
leaves the hospital.

For a model without BatchNorm, FedBN is FedAvg.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from ..client import Client, LocalHook, TrainConfig
from ..strategy import FedAvg
from ..utils import StateDict, clone_state

__all__ = ["batchnorm_keys", "FedBNHook", "FedBN"]


def batchnorm_keys(model: nn.Module) -> list[str]:
    """State-dict keys of every BatchNorm layer (affine parameters and running statistics)."""
    keys = []
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            prefix = f"{name}." if name else ""
            keys += [prefix + k for k in module.state_dict()]
    return keys


class FedBNHook(LocalHook):
    """Swaps the client's own BN layers in before training and keeps them afterwards."""

    def __init__(self, strategy: FedBN, cid: int) -> None:
        self.strategy = strategy
        self.cid = cid

    def on_start(self, model: nn.Module, global_state: StateDict) -> None:
        if self.strategy.bn_keys is None:
            self.strategy.bn_keys = batchnorm_keys(model)
            self.strategy._scratch = copy.deepcopy(model)
        local = self.strategy.local_bn.get(self.cid)
        if local:
            with torch.no_grad():
                model.load_state_dict(local, strict=False)

    def on_end(self, model: nn.Module, num_steps: int) -> None:
        state = model.state_dict()
        self.strategy.local_bn[self.cid] = clone_state(
            {k: state[k] for k in self.strategy.bn_keys or []})


class FedBN(FedAvg):
    """FedAvg over every layer but BatchNorm; BN layers are personal to each client.

    ``local_bn[cid]`` holds client ``cid``'s BN state (on the hospital in a real deployment).
    A client that has never trained uses the global model's (initial) BN layers.
    ``recalibrate``: re-estimate BN statistics on the client's training data before use
    (see the module docstring).
    """

    name = "FedBN"

    def __init__(self, config: TrainConfig | None = None, *, weighted: bool = True,
                 server_lr: float = 1.0, recalibrate: bool = True) -> None:
        super().__init__(config, weighted=weighted, server_lr=server_lr)
        self.recalibrate = recalibrate
        self.bn_keys: list[str] | None = None
        self.local_bn: dict[int, StateDict] = {}
        self._clients: dict[int, Client] = {}
        self._scratch: nn.Module | None = None

    def setup(self, model: nn.Module) -> None:
        super().setup(model)
        self.bn_keys = batchnorm_keys(model)
        self._scratch = copy.deepcopy(model)

    def initialize(self, global_state: StateDict, clients: Sequence[Client]) -> None:
        self.local_bn = {}
        self._clients = {c.cid: c for c in clients}

    def local_hooks(self, rnd: int, client: Client) -> tuple[LocalHook, ...]:
        return (FedBNHook(self, client.cid),)

    def personal_keys(self) -> frozenset[str]:
        """Every BatchNorm entry: never part of a contribution, so never sent or summed."""
        return frozenset(self.bn_keys or ())

    def personal_state(self, cid: int, global_state: StateDict) -> StateDict:
        """The model client ``cid`` uses: shared layers from the server, its own BN layers."""
        local = self.local_bn.get(cid)
        if not local:
            return global_state
        state = {**global_state, **local}
        client = self._clients.get(cid)
        if self.recalibrate and client is not None and self._scratch is not None:
            state = self._recalibrated(state, client)
        return state

    @torch.no_grad()
    def _recalibrated(self, state: StateDict, client: Client, batch_size: int = 1024,
                      ) -> StateDict:
        """``state`` with BN statistics re-estimated on ``client``'s training inputs."""
        model = self._scratch
        assert model is not None
        model.load_state_dict(state)
        bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the pass, not an exponential one
        model.train()
        for xb in client.train.tensors[0].split(batch_size):
            model(xb)
        for m, mom in zip(bns, momenta, strict=True):
            m.momentum = mom
        out = clone_state(model.state_dict())
        for k in self.bn_keys or []:
            if k.endswith("num_batches_tracked"):
                out[k] = state[k].clone()
        return out
