"""SecAgg+ (and central DP on top of it) through Flower's legacy workflow API.

In Flower 1.42 secure aggregation exists only as ``SecAggPlusWorkflow`` driven by the
legacy ``DefaultWorkflow`` with a legacy strategy, and as ``secaggplus_mod`` on the client
(see :mod:`fedlearn.flower.client_app`). This module assembles those pieces:

* a legacy ``FedAvg`` that sends the fedlearn instruction each round and logs who reported;
* optionally ``DifferentialPrivacyClientSideFixedClipping`` around it, whose clients clip
  their updates (``fixedclipping_mod``, *before* SecAgg+ masks them) and whose server adds
  Gaussian noise to the unmasked average; server-side clipping would clip the aggregate,
  not each hospital, and give no guarantee, so it is not offered here;
* ``SecAggPlusWorkflow`` as the fit step: each hospital's weights are quantised, masked
  with pairwise and private masks, and only their sum is revealed.

The result equals plain FedAvg up to quantisation (and the DP noise, when enabled).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, Context
from flwr.common import FitRes, Parameters, Scalar, ndarrays_to_parameters
from flwr.server import LegacyContext, ServerConfig
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import DifferentialPrivacyClientSideFixedClipping
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import Grid

from ..strategy import FedAvg, Strategy
from ..utils import StateDict, float_keys
from .client_app import KEY_WEIGHTED
from .config import RemoteClient
from .server_app import RunRecorder, round_instruction

__all__ = ["run_secure", "check_secure_strategy"]

MAIN_PARAMS_RECORD = "parameters"  # where DefaultWorkflow keeps the global model


def check_secure_strategy(strategy: Strategy) -> None:
    """SecAgg+ reveals only the (weighted) mean of the local models: FedAvg with lr 1."""
    if not isinstance(strategy, FedAvg) or type(strategy).combine is not FedAvg.combine \
            or type(strategy).server_update is not FedAvg.server_update \
            or type(strategy).aggregate is not Strategy.aggregate or strategy.server_lr != 1.0:
        raise NotImplementedError(
            f"secure aggregation needs plain FedAvg averaging (a fedlearn FedAvg, FedSGD or "
            f"FedProx with server_lr=1); {strategy!r} aggregates differently")


class _LoggingFedAvg(LegacyFedAvg):
    """Legacy FedAvg that records each round (who reported, how many examples)."""

    def __init__(self, recorder: RunRecorder, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.recorder = recorder

    def aggregate_fit(self, server_round: int, results: list[tuple[ClientProxy, FitRes]],
                      failures: list[Any]) -> tuple[Parameters | None, dict[str, Scalar]]:
        # With SecAgg+ every result carries the same, already aggregated, parameters.
        n = sum(r.num_examples for _, r in results)
        loss = sum(float(r.metrics.get("train_loss", float("nan"))) * r.num_examples
                   for _, r in results) / max(n, 1)
        self.recorder.round(round=server_round, num_participants=len(results),
                            num_examples=n, train_loss=loss,
                            failures=[str(f) for f in failures])
        return super().aggregate_fit(server_round, results, failures)


def run_secure(grid: Grid, context: Context, strategy: Strategy,
               clients: Sequence[RemoteClient], initial: StateDict, recorder: RunRecorder
               ) -> ArrayRecord:
    """Run every round with SecAgg+ (plus DP if the run config asks) and return the model."""
    check_secure_strategy(strategy)
    rc = context.run_config
    rounds, m = int(rc["num-rounds"]), int(rc["min-nodes"])
    keys = float_keys(initial)

    def fit_config(rnd: int) -> dict[str, Scalar]:
        entry = round_instruction(strategy, rnd, clients)
        entry.update({"server-round": rnd, KEY_WEIGHTED: bool(strategy.weighted)})
        return entry

    legacy: Any = _LoggingFedAvg(
        recorder, fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=m,
        min_evaluate_clients=0, min_available_clients=m, on_fit_config_fn=fit_config,
        initial_parameters=ndarrays_to_parameters([initial[k].numpy() for k in keys]))
    clip = float(rc.get("dp-clipping-norm", 0.0))
    if clip > 0:
        legacy = DifferentialPrivacyClientSideFixedClipping(
            legacy, noise_multiplier=float(rc["dp-noise-multiplier"]), clipping_norm=clip,
            num_sampled_clients=len(clients))  # every node is sampled each round
    ctx = LegacyContext(context=context, config=ServerConfig(num_rounds=rounds),
                        strategy=legacy)
    workflow = DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(
        num_shares=int(rc["secagg-num-shares"]),
        reconstruction_threshold=int(rc["secagg-threshold"]),
        max_weight=float(rc["secagg-max-weight"]),
        clipping_range=float(rc["secagg-clipping-range"]),
        timeout=float(rc["round-timeout"])))
    workflow(grid, ctx)
    done = len(recorder.data["rounds"])
    if done < rounds:
        raise RuntimeError(f"SecAgg+ completed {done} of {rounds} rounds: the protocol halts "
                           "when fewer than the reconstruction threshold of nodes answer")
    arrays = ctx.state.array_records[MAIN_PARAMS_RECORD].to_numpy_ndarrays()
    final = dict(initial)
    for k, a in zip(keys, arrays, strict=True):
        final[k] = torch.from_numpy(np.asarray(a, dtype=np.float32).reshape(initial[k].shape))
    return ArrayRecord(final)
