"""Run a fedlearn experiment on a Flower federation and get a :class:`~fedlearn.History` back.

:func:`run_flower` is the deployment twin of :func:`fedlearn.run`: the same clients,
strategy, rounds and seed, but every hospital is a SuperNode process reading its own data
file, the server is a SuperLink, and they talk over loopback HTTP. It writes each
hospital's partition to a private folder, starts the federation, submits the run, waits
for ``finished:completed`` and reads back what the ServerApp wrote. Every process is
stopped when it returns or raises.

:func:`run_on_federation` submits a run to a federation that is already up, so a notebook
can start the processes once and run several experiments (plain, SecAgg+, DP) on them.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..client import Client
from ..history import History
from ..strategy import Strategy
from ..utils import StateDict
from .config import (
    EVALUATE_MODES,
    DPOptions,
    ModelSpec,
    RemoteClient,
    SecAggOptions,
    save_partition,
)
from .federation import Federation

__all__ = ["FlowerResult", "run_flower", "run_on_federation", "write_partitions",
           "max_abs_diff"]


@dataclass
class FlowerResult:
    """What a finished Flower run left behind.

    Attributes:
        run_id: Flower's id of the run.
        history: rounds and evaluations as a :class:`~fedlearn.History` (its
            ``final_state`` is the final global model); ``pooled`` rows hold the
            test-size-weighted accuracy and loss, which equal the pooled values.
        status: the run's row from ``flwr ls`` (elapsed time, bytes in and out, ...).
        out_dir: where the ServerApp wrote ``final_model.pt`` and ``result.json``.
        seconds: wall time from submission to completion.
    """

    run_id: int
    history: History
    status: dict[str, Any]
    out_dir: Path
    seconds: float

    @property
    def final_state(self) -> StateDict:
        assert self.history.final_state is not None
        return self.history.final_state

    @property
    def network_bytes(self) -> int:
        """Bytes that crossed the SuperLink's network interface in this run."""
        return int(self.status.get("network-traffic", {}).get("total-bytes", 0))


def max_abs_diff(a: StateDict, b: StateDict) -> float:
    """Largest absolute difference between two models' floating-point entries."""
    if set(a) != set(b):
        raise ValueError(f"different keys: {sorted(set(a) ^ set(b))}")
    return max((float((a[k].double() - b[k].double()).abs().max()) for k in a
                if torch.is_floating_point(a[k])), default=0.0)


def write_partitions(clients: Sequence[Client], folder: str | Path) -> list[Path]:
    """One ``.pt`` file per hospital; node ``k`` will be given ``clients[k]``'s file only."""
    cids = [c.cid for c in clients]
    if cids != list(range(len(clients))):
        raise ValueError(f"client ids must be 0..{len(clients) - 1} in order (they become "
                         f"Flower partition ids), got {cids}")
    folder = Path(folder)
    return [save_partition(c, folder / f"partition-{c.cid}.pt") for c in clients]


class _Watcher:
    """Reads the ServerApp's live ``result.json``: reports new rounds, says when it ended."""

    def __init__(self, out_dir: Path, on_round: Callable[[dict[str, Any]], None] | None
                 ) -> None:
        self.path = out_dir / "result.json"
        self.on_round = on_round
        self.seen = 0

    def __call__(self) -> bool:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return False
        for row in data.get("rounds", [])[self.seen:]:
            self.seen += 1
            if self.on_round is not None:
                self.on_round(row)
        return data.get("status") != "running"


def _history(name: str, out_dir: Path) -> History:
    data = json.loads((out_dir / "result.json").read_text())
    hist = History(strategy=name, rounds=data["rounds"], stopped=data.get("stopped"))
    by_round: dict[int, list[dict[str, Any]]] = {}
    for row in data["evals"]:
        metrics = {k: v for k, v in row.items() if k not in ("round", "test_set")}
        hist.log_eval(int(row["round"]), str(row["test_set"]), metrics)
        by_round.setdefault(int(row["round"]), []).append(row)
    for rnd, rows in sorted(by_round.items()):
        n = sum(int(r["num_examples"]) for r in rows)
        if n:
            pooled = {k: sum(float(r[k]) * int(r["num_examples"]) for r in rows) / n
                      for k in ("accuracy", "loss") if all(k in r for r in rows)}
            hist.log_eval(rnd, "pooled", {**pooled, "num_examples": n})
    final = out_dir / "final_model.pt"
    hist.final_state = torch.load(final, weights_only=True) if final.exists() else None
    return hist


def run_on_federation(fed: Federation, strategy: Strategy, rounds: int, model: ModelSpec, *,
                      names: Sequence[str] | None = None, seed: int = 0,
                      min_nodes: int | None = None, evaluate: str = "final",
                      secagg: SecAggOptions | None = None, dp: DPOptions | None = None,
                      initial_state: StateDict | None = None, out_dir: str | Path | None = None,
                      round_timeout: float = 600.0, run_timeout: float = 1800.0,
                      on_round: Callable[[dict[str, Any]], None] | None = None
                      ) -> FlowerResult:
    """Submit one experiment to a running federation and wait for its results.

    ``min_nodes`` (default: every node) is how many hospitals must be online for a round
    to start; the round then aggregates every hospital that replies before
    ``round_timeout`` (a hospital that died is reported unavailable by the SuperLink once
    it misses its heartbeats, about a minute), so a value below the number of nodes lets
    the run survive a hospital going down. ``dp`` requires ``secagg`` (clients clip
    before masking).
    ``on_round`` is called with each round's log row as soon as the ServerApp writes it.
    """
    if evaluate not in EVALUATE_MODES:
        raise ValueError(f"evaluate must be one of {EVALUATE_MODES}, got {evaluate!r}")
    if dp is not None and secagg is None:
        raise ValueError("DP here is Flower's client-side clipping, which runs inside SecAgg+;"
                         " pass secagg=SecAggOptions() as well")
    n_nodes = len(fed.data_paths)
    min_nodes = n_nodes if min_nodes is None else min_nodes
    if not 1 <= min_nodes <= n_nodes:
        raise ValueError(f"min_nodes must be in [1, {n_nodes}], got {min_nodes}")
    names = list(names) if names is not None else [f"client {k}" for k in range(n_nodes)]
    if len(names) != n_nodes:
        raise ValueError(f"{len(names)} names for {n_nodes} nodes")
    from .server_app import check_strategy  # noqa: PLC0415 - imports flwr

    check_strategy(strategy, [RemoteClient(k, n) for k, n in enumerate(names)])
    if secagg is not None:
        from .secure import check_secure_strategy  # noqa: PLC0415

        check_secure_strategy(strategy)
    out = Path(out_dir) if out_dir is not None else fed.state_dir / f"run-{time.time_ns()}"
    out = out.absolute()
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("result.json", "final_model.pt"):  # never mistake an old run's files
        (out / stale).unlink(missing_ok=True)
    strategy_path = out / "strategy.pkl"
    strategy_path.write_bytes(pickle.dumps(strategy))
    init_path = ""
    if initial_state is not None:
        torch.save({k: v.detach().clone() for k, v in initial_state.items()}, out / "init.pt")
        init_path = str(out / "init.pt")
    run_config: dict[str, Any] = {
        "out-dir": str(out), "num-rounds": int(rounds), "seed": int(seed),
        "min-nodes": int(min_nodes), "round-timeout": float(round_timeout),
        "evaluate": evaluate, "model": model.to_json(), "strategy-path": str(strategy_path),
        "init-path": init_path, "client-names": json.dumps(names),
        "secure-aggregation": secagg is not None}
    if secagg is not None:
        run_config.update({"secagg-num-shares": secagg.num_shares,
                           "secagg-threshold": secagg.reconstruction_threshold,
                           "secagg-max-weight": float(secagg.max_weight),
                           "secagg-clipping-range": float(secagg.clipping_range),
                           "round-timeout": float(min(round_timeout, secagg.timeout))})
    if dp is not None:
        run_config.update({"dp-clipping-norm": float(dp.clipping_norm),
                           "dp-noise-multiplier": float(dp.noise_multiplier)})
    t0 = time.perf_counter()
    run_id = fed.submit(run_config)
    status = fed.wait(run_id, timeout=run_timeout, maybe_done=_Watcher(out, on_round))
    seconds = time.perf_counter() - t0
    hist = _history(getattr(strategy, "name", type(strategy).__name__), out)
    return FlowerResult(run_id=run_id, history=hist, status=status, out_dir=out,
                        seconds=seconds)


@contextlib.contextmanager
def _workdir(workdir: str | Path | None) -> Iterator[Path]:
    """``workdir`` itself, or a temporary folder that is removed afterwards."""
    if workdir is not None:
        path = Path(workdir).absolute()
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="fedlearn-flower-") as tmp:
        yield Path(tmp)


def run_flower(clients: Sequence[Client], strategy: Strategy, rounds: int, model: ModelSpec,
               *, workdir: str | Path | None = None, port: int | None = None,
               node_ports: Sequence[int] | None = None, connect_timeout: float = 180.0,
               quiet: bool = True, secure: bool = False, **kwargs: Any) -> FlowerResult:
    """Like :func:`fedlearn.run`, but on a real Flower federation of separate processes.

    Starts one SuperLink and ``len(clients)`` SuperNodes on loopback, runs the experiment
    (keyword arguments as in :func:`run_on_federation`) and stops every process, also
    when something fails. ``workdir`` (default: a temporary folder, deleted afterwards)
    receives the partition files, Flower's state, the logs and the results. ``secure=True``
    runs a :class:`~fedlearn.flower.secure_federation.SecureFederation` instead (TLS from a
    CA created in the workdir, every hospital's key registered): the same results.
    """
    with _workdir(workdir) as root:
        paths = write_partitions(clients, root / "data")
        cls = Federation
        if secure:
            from .secure_federation import SecureFederation

            cls = SecureFederation
        with cls(paths, root / "state", port=port, node_ports=node_ports,
                 connect_timeout=connect_timeout, quiet=quiet) as fed:
            if kwargs.get("names") is None:
                kwargs["names"] = [c.name for c in clients]
            if kwargs.get("out_dir") is None:
                kwargs["out_dir"] = root / "out"
            result = run_on_federation(fed, strategy, rounds, model, **kwargs)
        if workdir is None:  # the folder disappears: keep the results in memory only
            result.out_dir = Path()
        return result
