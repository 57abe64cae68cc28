"""A Flower-native app for ``bench_frameworks.py``: what a Flower 1.42 user writes.

Flower's message API: a ClientApp whose ``train`` runs plain PyTorch local SGD on its own
partition, and a ServerApp running Flower's own :class:`flwr.serverapp.strategy.FedAvg` with
a centralised ``evaluate_fn`` (scikit-learn clinical metrics, as the plain loop computes them).
``flwr.simulation.run_simulation`` runs it on Ray: every ClientApp in a Ray worker process.
Needs ``pip install "flwr[simulation]==1.42.0"`` (Ray), see ``bench_frameworks.py``.

This module lives outside ``bench_frameworks.py`` so that Ray's worker processes can import it
(the benchmark puts ``benchmarks/`` on ``PYTHONPATH``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from _workloads import WORKLOADS, client_data, clinical_metrics, make_model
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

RESULT: dict[str, Any] = {}  # filled by the ServerApp, which runs in the driver process

client_app = ClientApp()


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    """One round of local SGD on partition ``partition-id`` (plain PyTorch, as in a tutorial)."""
    torch.set_num_threads(1)
    cfg = msg.content["config"]
    w = WORKLOADS[str(cfg["workload"])]
    pid = int(context.node_config["partition-id"])
    x, y = client_data(w.name)[0][pid]
    model = make_model(w)
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=w.lr)
    gen = torch.Generator().manual_seed(1_000_003 * int(cfg["server-round"]) + pid)
    loss_sum, steps = 0.0, 0
    for idx in torch.randperm(len(x), generator=gen).split(w.batch_size):
        opt.zero_grad()
        loss = F.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        loss_sum += loss.item()
        steps += 1
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()),
                          "metrics": MetricRecord({"num-examples": len(x),
                                                   "train_loss": loss_sum / steps})})
    return Message(content=content, reply_to=msg)


server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    """Flower's FedAvg for ``RESULT['workload']`` rounds; the final model's metrics in RESULT."""
    w = WORKLOADS[RESULT["workload"]]
    model = make_model(w)
    test = client_data(w.name)[1]

    def evaluate(rnd: int, arrays: ArrayRecord) -> MetricRecord:
        model.load_state_dict(arrays.to_torch_state_dict())
        return MetricRecord(clinical_metrics(model, test))

    strategy = FedAvg(fraction_train=w.per_round / w.num_clients, fraction_evaluate=0.0,
                      min_train_nodes=w.per_round, min_evaluate_nodes=0,
                      min_available_nodes=w.num_clients)
    result = strategy.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()),
                            num_rounds=w.rounds,
                            train_config=ConfigRecord({"workload": w.name}),
                            evaluate_fn=evaluate if w.eval_every_round else None)
    model.load_state_dict(result.arrays.to_torch_state_dict())
    RESULT["final"] = clinical_metrics(model, test)
    last = result.train_metrics_clientapp.get(w.rounds)
    RESULT["last_round_train_loss"] = float(last["train_loss"]) if last else float("nan")
