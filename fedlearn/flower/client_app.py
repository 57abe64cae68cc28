"""The hospital side: a Flower ClientApp that runs :func:`fedlearn.local_train` unchanged.

Each SuperNode is started with a node config naming its partition id and the local path of
its data file; every message from the server starts a fresh ClientApp process, which

1. reads the node's own partition (and nothing else) from disk,
2. builds the model named in the run config and loads the global weights from the message,
3. trains exactly as the simulation does: :meth:`fedlearn.Client.fit` with the round's
   :class:`~fedlearn.client.TrainConfig` and the seed ``derive_seed(seed, round, cid)``,
4. replies with its *local weights* (Flower's convention) and the number of examples.

The reply carries the trained weights rather than the delta so that Flower's own strategies
and DP wrappers, which compute ``reply - global`` themselves, work unchanged; the server
recovers the delta bit for bit, because ``local - global`` is the same float32 subtraction
:func:`fedlearn.local_train` performs.

With SecAgg+ the same training runs inside Flower's legacy ``NumPyClient`` interface,
because ``secaggplus_mod`` (and ``fixedclipping_mod`` for DP) only speak that interface.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.client import NumPyClient
from flwr.client.mod import fixedclipping_mod, secaggplus_mod
from flwr.clientapp import ClientApp

from ..client import Client
from ..metrics import evaluate as evaluate_model
from ..utils import derive_seed, float_keys
from .config import ModelSpec, load_partition, loads_hooks, train_config_from_json

__all__ = ["app", "train_local", "KEY_TRAIN_CONFIG", "KEY_HOOKS", "KEY_WEIGHTED"]

KEY_TRAIN_CONFIG = "fedlearn-train-config"
KEY_HOOKS = "fedlearn-hooks"
KEY_WEIGHTED = "fedlearn-weighted"


def _partition(context: Context) -> Client:
    """This node's own data, from the path in its node config."""
    path = context.node_config.get("data-path")
    if not path:
        raise ValueError("this SuperNode has no 'data-path' in its --node-config; start it "
                         "with --node-config 'partition-id=K data-path=\"/abs/file.pt\"'")
    client = load_partition(str(path))
    pid = int(context.node_config["partition-id"])
    if client.cid != pid:
        raise ValueError(f"node config says partition-id={pid} but {path} holds client "
                         f"{client.cid}: each node must be given its own partition")
    return client


def train_local(client: Client, spec: ModelSpec, global_state: dict[str, torch.Tensor],
                config: dict[str, Any], run_seed: int) -> tuple[dict[str, torch.Tensor],
                                                                dict[str, float]]:
    """One round of local training, exactly as :func:`fedlearn.run` does it in process.

    Returns the trained (local) weights and the metrics; ``num_examples`` is among them.
    """
    torch.set_num_threads(1)  # the same arithmetic as a single-threaded simulation
    rnd = int(config["server-round"])
    train_config = train_config_from_json(str(config[KEY_TRAIN_CONFIG]))
    hooks = loads_hooks(bytes(config[KEY_HOOKS])) if KEY_HOOKS in config else ()
    model = spec.build()
    update = client.fit(model, global_state, train_config,
                        seed=derive_seed(run_seed, rnd, client.cid), hooks=hooks)
    local = {k: v.detach().clone() for k, v in model.state_dict().items()}
    metrics = {"num-examples": float(update.num_examples), "partition-id": float(client.cid),
               **{k: float(v) for k, v in update.metrics.items()}}
    return local, metrics


app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train on this hospital's data; SecAgg+ runs go through the legacy client instead."""
    if context.run_config.get("secure-aggregation"):
        dp = float(context.run_config.get("dp-clipping-norm", 0.0)) > 0
        return (_secure_dp_app if dp else _secure_app)(msg, context)
    client = _partition(context)
    spec = ModelSpec.from_json(str(context.run_config["model"]))
    global_state = msg.content["arrays"].to_torch_state_dict()
    local, metrics = train_local(client, spec, global_state, dict(msg.content["config"]),
                                 int(context.run_config["seed"]))
    metrics["num-examples"] = int(metrics["num-examples"])
    metrics["partition-id"] = int(metrics["partition-id"])
    content = RecordDict({"arrays": ArrayRecord(local), "metrics": MetricRecord(metrics)})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Score the global model on this hospital's test set (its data never leave)."""
    torch.set_num_threads(1)
    client = _partition(context)
    model = ModelSpec.from_json(str(context.run_config["model"])).build()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    metrics: dict[str, float | int] = {"partition-id": client.cid}
    if client.test is None:
        metrics["num-examples"] = 0
    else:
        scores = evaluate_model(model, client.test)
        metrics.update({k: float(v) for k, v in scores.items() if np.isfinite(v)})
        metrics["num-examples"] = len(client.test)
    return Message(content=RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)


# ------------------------------------------------------------------ SecAgg+ (legacy interface)


class _LegacyHospital(NumPyClient):
    """``fedlearn`` local training behind Flower's NumPy interface (floats as a list).

    Only the floating-point entries travel (integer buffers are counters, not weights);
    their order is the model's ``state_dict`` order on both sides.
    """

    def __init__(self, context: Context) -> None:
        self.context = context
        self.client = _partition(context)
        self.spec = ModelSpec.from_json(str(context.run_config["model"]))

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]
            ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        template = self.spec.build().state_dict()
        keys = float_keys(template)
        global_state = dict(template)
        for k, a in zip(keys, parameters, strict=True):
            global_state[k] = torch.from_numpy(np.asarray(a, dtype=np.float32).copy())
        local, metrics = train_local(self.client, self.spec, global_state, config,
                                     int(self.context.run_config["seed"]))
        # SecAgg+ multiplies each model by its weight before masking; an unweighted
        # strategy (every hospital counts once) reports weight 1.
        weight = int(metrics.pop("num-examples")) if bool(config.get(KEY_WEIGHTED, True)) else 1
        return [local[k].numpy() for k in keys], weight, {"train_loss": metrics["train_loss"]}


def _client_fn(context: Context) -> Any:
    return _LegacyHospital(context).to_client()


# Mods run outermost first: SecAgg+ masks what the clipping mod has already clipped.
_secure_app = ClientApp(client_fn=_client_fn, mods=[secaggplus_mod])
_secure_dp_app = ClientApp(client_fn=_client_fn, mods=[secaggplus_mod, fixedclipping_mod])
