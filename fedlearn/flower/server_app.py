"""The coordinator side: a Flower ServerApp that aggregates exactly as :func:`fedlearn.run`.

Flower's message-based :class:`flwr.serverapp.strategy.FedAvg` already does everything a
round needs except the arithmetic: it samples nodes, sends the global weights, collects the
replies and waits for stragglers up to a timeout. Its averaging, however, sums float32
arrays in *arrival order*, so two runs can differ in the last bits, and it averages models
rather than deltas. :class:`FedlearnFlowerStrategy` therefore keeps Flower's machinery and
overrides one method, ``aggregate_train``: it sorts the replies by partition id, turns each
into a :class:`~fedlearn.update.ClientUpdate` (``local - global``) and hands them to the
fedlearn strategy's own :meth:`~fedlearn.strategy.Strategy.aggregate`, the code the
simulation runs. Same data, seeds and steps then give the same weights, bit for bit.

With SecAgg+ the server never sees an individual model, so there is nothing to sort: the
run goes through Flower's legacy ``DefaultWorkflow`` with ``SecAggPlusWorkflow`` (the only
form SecAgg+ has in Flower 1.42), optionally wrapped in Flower's client-side-clipping DP.

Everything the submitter needs back (final weights, per-round log, per-hospital scores) is
written to the absolute ``out-dir`` of the run config; nothing else returns from a run.
"""

from __future__ import annotations

import copy
import json
import pickle
import random
import time
import traceback
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg as FlowerFedAvg

from ..strategy import Strategy, StrategyWrapper
from ..update import ClientUpdate, validate_updates
from ..utils import StateDict, float_keys, state_sub
from .client_app import KEY_HOOKS, KEY_TRAIN_CONFIG
from .config import ModelSpec, RemoteClient, dumps_hooks, train_config_to_json

__all__ = ["app", "FedlearnFlowerStrategy", "RunRecorder", "round_instruction",
           "federated_evaluate", "check_strategy"]


class RunRecorder:
    """Writes ``result.json`` in ``out_dir`` after every event, so progress is visible live."""

    def __init__(self, out_dir: Path, names: Sequence[str]) -> None:
        self.path = out_dir / "result.json"
        self.names = list(names)
        self.data: dict[str, Any] = {"status": "running", "rounds": [], "evals": [],
                                     "stopped": None, "error": None}
        self.flush()

    def name(self, pid: int) -> str:
        return self.names[pid] if 0 <= pid < len(self.names) else f"client {pid}"

    def round(self, **row: Any) -> None:
        self.data["rounds"].append(row)
        self.flush()

    def evals(self, rnd: int, replies: Iterable[Message]) -> None:
        """One row per hospital that scored the model, keyed by its name."""
        for msg in sorted((m for m in replies if not m.has_error()),
                          key=lambda m: int(m.content["metrics"]["partition-id"])):
            m = dict(msg.content["metrics"])
            pid = int(m.pop("partition-id"))
            n = int(m.pop("num-examples"))
            self.data["evals"].append({"round": rnd, "test_set": self.name(pid),
                                       "num_examples": n, **m})
        self.flush()

    def flush(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)  # atomic: a reader never sees half a file


def round_instruction(strategy: Strategy, rnd: int, clients: Sequence[RemoteClient]
                      ) -> dict[str, Any]:
    """The fedlearn strategy's instruction for round ``rnd`` as ConfigRecord entries.

    Flower sends one message per sampled node before it knows which node holds which
    partition, so every hospital must receive the same instruction (true of FedAvg,
    FedSGD and FedProx).
    """
    instructions = strategy.configure_round(rnd, clients)  # type: ignore[arg-type]
    configs = {train_config_to_json(i.config) for i in instructions.values()}
    hooks = {dumps_hooks(i.hooks) for i in instructions.values()}
    if len(configs) != 1 or len(hooks) != 1:
        raise NotImplementedError(
            f"{type(strategy).__name__} gives hospitals different instructions in round "
            f"{rnd}; the Flower adapter sends one instruction to every node")
    entry: dict[str, Any] = {KEY_TRAIN_CONFIG: configs.pop()}
    hook_bytes = hooks.pop()
    if next(iter(instructions.values())).hooks:
        entry[KEY_HOOKS] = hook_bytes
    return entry


def check_strategy(strategy: Strategy, clients: Sequence[RemoteClient]) -> None:
    """Fail before submitting a run whose ServerApp would refuse ``strategy``."""
    _check_supported(strategy)
    round_instruction(copy.deepcopy(strategy), 1, clients)


def _check_supported(strategy: Strategy) -> None:
    """Refuse strategies the deployment cannot run as they say, before anything starts.

    The hospitals send their local weights, the server aggregates them in the clear (or with
    Flower's SecAgg+, see :mod:`.secure`): a strategy that needs state exchanged beyond the
    weights, or an aggregator layer of fedlearn's own (secure sums, DP, compression), runs in
    ``fl.run`` only.
    """
    from ..aggregators.base import Plain

    core = strategy
    while isinstance(core, StrategyWrapper):  # wrappers forward every hook: judge the core
        core = core.inner
    for extra in ("process_update", "personal_state", "download_nbytes"):
        if getattr(type(core), extra) is not getattr(Strategy, extra):
            raise NotImplementedError(
                f"{type(strategy).__name__} defines {extra}(), which needs state exchanged "
                "beyond weights (control variates, local layers); it runs in fl.run only")
    if not isinstance(strategy.aggregator, Plain):
        raise NotImplementedError(
            f"{getattr(strategy, 'name', type(strategy).__name__)} sums with "
            f"{strategy.aggregator.describe()}; the Flower deployment aggregates in the clear, "
            "or under Flower's own SecAgg+ (run it with secure aggregation switched on: "
            "FedAvg/FedProx only). fedlearn's aggregator layers run in fl.run only.")


class FedlearnFlowerStrategy(FlowerFedAvg):
    """Flower's FedAvg for sampling and messaging, fedlearn's strategy for the arithmetic."""

    def __init__(self, strategy: Strategy, clients: Sequence[RemoteClient], min_nodes: int,
                 recorder: RunRecorder, evaluate_every_round: bool = False) -> None:
        _check_supported(strategy)
        super().__init__(fraction_train=1.0,
                         fraction_evaluate=1.0 if evaluate_every_round else 0.0,
                         min_train_nodes=min_nodes, min_evaluate_nodes=min_nodes,
                         min_available_nodes=min_nodes)
        self.fl_strategy = strategy
        self.clients = list(clients)
        self.recorder = recorder
        self._global: StateDict | None = None
        self._t0 = time.perf_counter()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        reason = self.fl_strategy.stop_reason(server_round)
        if reason is not None or self.recorder.data["stopped"]:
            if not self.recorder.data["stopped"]:  # e.g. a privacy budget is spent
                self.recorder.data["stopped"] = f"stopped before round {server_round}: {reason}"
                self.recorder.flush()
            return []  # no messages: the remaining rounds keep the model unchanged
        self._global = arrays.to_torch_state_dict()
        self._t0 = time.perf_counter()
        if KEY_HOOKS in config:  # the config record is reused across rounds
            del config[KEY_HOOKS]
        config.update(round_instruction(self.fl_strategy, server_round, self.clients))
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        if self.recorder.data["stopped"]:
            return None, None
        valid, errors = self._check_and_log_replies(list(replies), is_train=True)
        failed = [str(m.error.reason) for m in errors]
        if not valid or self._global is None:
            # fl.run would raise here too: a round in which nobody trained is a fault to
            # report, not a round to skip silently (Flower's FedAvg would carry on).
            self.recorder.round(round=server_round, participants=[], num_examples=0,
                                failures=failed, seconds=time.perf_counter() - self._t0)
            raise RuntimeError(f"round {server_round}: no hospital replied with an update; "
                               f"errors: {failed}")
        # Arrival order is a race; partition order is what the simulation uses.
        valid.sort(key=lambda m: int(next(iter(m.content.metric_records.values()))
                                     ["partition-id"]))
        updates = []
        for msg in valid:
            metrics = dict(next(iter(msg.content.metric_records.values())))
            local = next(iter(msg.content.array_records.values())).to_torch_state_dict()
            updates.append(ClientUpdate(
                cid=int(metrics.pop("partition-id")), delta=state_sub(local, self._global),
                num_examples=int(metrics.pop("num-examples")),
                metrics={k: float(v) for k, v in metrics.items()}))  # type: ignore[arg-type]
        validate_updates(updates, {k: self._global[k] for k in float_keys(self._global)})
        new_state = self.fl_strategy.aggregate(server_round, self._global, updates)
        n = sum(u.num_examples for u in updates)
        loss = sum(u.metrics.get("train_loss", float("nan")) * u.num_examples
                   for u in updates) / max(n, 1)
        self.recorder.round(round=server_round, participants=[u.cid for u in updates],
                            num_examples=n, train_loss=float(loss), failures=failed,
                            seconds=time.perf_counter() - self._t0)
        return ArrayRecord(new_state), MetricRecord({"train_loss": float(loss)})

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]
                           ) -> MetricRecord | None:
        replies = list(replies)
        self.recorder.evals(server_round, replies)
        return super().aggregate_evaluate(server_round, replies)


def federated_evaluate(grid: Grid, arrays: ArrayRecord, rnd: int, min_nodes: int,
                       timeout: float, recorder: RunRecorder) -> None:
    """Ask every hospital to score ``arrays`` on its own test set; record the answers."""
    asker = FlowerFedAvg(fraction_evaluate=1.0, min_evaluate_nodes=min_nodes,
                         min_available_nodes=min_nodes)
    messages = asker.configure_evaluate(rnd, arrays, ConfigRecord(), grid)
    recorder.evals(rnd, grid.send_and_receive(messages, timeout=timeout))


def _seed_all(seed: int) -> None:
    """Flower samples with ``random`` and draws DP noise from numpy's global generator."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.set_num_threads(1)


def _run_plain(grid: Grid, strategy: Strategy, clients: Sequence[RemoteClient],
               initial: StateDict, rc: dict[str, Any], recorder: RunRecorder) -> ArrayRecord:
    min_nodes = int(rc["min-nodes"])
    flower = FedlearnFlowerStrategy(strategy, clients, min_nodes, recorder,
                                    evaluate_every_round=rc["evaluate"] == "every")
    strategy.start(initial, clients)  # type: ignore[arg-type]
    result = flower.start(grid=grid, initial_arrays=ArrayRecord(initial),
                          num_rounds=int(rc["num-rounds"]), train_config=ConfigRecord(),
                          timeout=float(rc["round-timeout"]))
    return result.arrays


def _write_outputs(out_dir: Path, final: StateDict, recorder: RunRecorder) -> None:
    torch.save(final, out_dir / "final_model.pt")
    recorder.data["status"] = "completed"
    recorder.flush()


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the experiment described by the run config and write its results to out-dir."""
    rc = dict(context.run_config)
    out_dir = Path(str(rc["out-dir"]))
    if not out_dir.is_absolute():
        raise ValueError(f"out-dir must be an absolute path (the ServerApp runs in the "
                         f"SuperLink's folder), got {out_dir!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    names = json.loads(str(rc["client-names"]))
    recorder = RunRecorder(out_dir, names)
    try:
        _seed_all(int(rc["seed"]))
        spec = ModelSpec.from_json(str(rc["model"]))
        with open(str(rc["strategy-path"]), "rb") as f:  # the coordinator's own file
            strategy = pickle.load(f)
        init_path = str(rc.get("init-path", ""))
        initial = (torch.load(init_path, weights_only=True) if init_path
                   else spec.build().state_dict())
        clients = [RemoteClient(cid=i, name=n) for i, n in enumerate(names)]
        if rc.get("secure-aggregation"):
            from .secure import run_secure  # the legacy API is only imported when used

            final_arrays = run_secure(grid, context, strategy, clients, initial, recorder)
        else:
            final_arrays = _run_plain(grid, strategy, clients, initial, rc, recorder)
        final = final_arrays.to_torch_state_dict()
        # "every" is done inside Flower's round loop, except on the SecAgg+ path
        evaluated = rc["evaluate"] == "every" and not rc.get("secure-aggregation")
        if rc["evaluate"] != "none" and not evaluated:
            last = max([r["round"] for r in recorder.data["rounds"]], default=0)
            federated_evaluate(grid, ArrayRecord(final), last, int(rc["min-nodes"]),
                               float(rc["round-timeout"]), recorder)
        _write_outputs(out_dir, final, recorder)
    except BaseException as exc:
        recorder.data["status"] = "failed"
        recorder.data["error"] = "".join(traceback.format_exception(exc))
        recorder.flush()
        raise

