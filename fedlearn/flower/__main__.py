"""``python -m fedlearn.flower run``: one experiment on a real Flower federation, end to end.

Starts one SuperLink and ``--nodes`` SuperNodes on loopback (each reading only its own
hospital's data file), runs FedAvg for ``--rounds`` rounds, prints each round as it ends,
the final per-hospital scores and the network traffic, and stops every process it started,
whatever happens (errors, Ctrl-C, SIGTERM). Examples::

    python -m fedlearn.flower run --nodes 3 --rounds 2 --compare
    python -m fedlearn.flower run --nodes 2 --rounds 1 --secure   # TLS + registered keys
    python -m fedlearn.flower run --nodes 3 --rounds 1 --secagg --dp-clip 0.3 --dp-noise 0.5
    python -m fedlearn.flower run --data breastmnist --model cnn --nodes 3 --epochs 1 --port 0

``--compare`` also runs the in-process simulation (:func:`fedlearn.run`) with the same
data, seeds and steps and prints the largest weight difference (0 without SecAgg+).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..client import Client, TrainConfig, clients_from_partition, clients_from_sites
from ..partition import iid_partition
from ..strategy import FedAvg, Strategy
from .config import EVALUATE_MODES, DPOptions, ModelSpec, SecAggOptions
from .federation import FederationError
from .runner import max_abs_diff, run_flower

DATASETS = ("heart", "breastmnist", "pneumoniamnist")


def make_clients(data: str, nodes: int, seed: int = 0, max_train: int | None = None
                 ) -> tuple[list[Client], dict[str, Any]]:
    """The hospitals of a demo federation and the model keyword arguments their data need.

    ``heart``: the first ``nodes`` of the four UCI hospitals (their natural split).
    MedMNIST flags: the official train/test splits, each cut IID into ``nodes`` hospitals
    (optionally only ``max_train`` training images, drawn with ``seed``).
    """
    from .. import data as fl_data  # noqa: PLC0415 - loaders are only needed here

    if data == "heart":
        sites = fl_data.load_heart_disease(progress=False)
        if not 1 <= nodes <= len(sites):
            raise ValueError(f"the heart data have {len(sites)} hospitals; --nodes {nodes}")
        return clients_from_sites(sites[:nodes]), {"in_features": 13}
    if data not in DATASETS:
        raise ValueError(f"unknown data {data!r}; choose one of {DATASETS}")
    ds = fl_data.load_medmnist(data, progress=False)
    train, test = ds.train, ds.test
    if max_train is not None and max_train < len(train):
        keep = torch.as_tensor(np.sort(np.random.default_rng(seed).choice(
            len(train), max_train, replace=False)))
        train = torch.utils.data.TensorDataset(train.tensors[0][keep], train.tensors[1][keep])
    parts = iid_partition(len(train), nodes, seed)
    test_parts = iid_partition(len(test), nodes, seed)
    clients = clients_from_partition(train, parts, test, test_parts)
    return clients, {"in_features": 28 * 28, "in_channels": 1}


def _model_spec(name: str, data_kwargs: dict[str, Any], seed: int) -> ModelSpec:
    if name == "cnn":
        return ModelSpec("cnn", {"in_channels": data_kwargs.get("in_channels", 1),
                                 "norm": "group"}, seed=seed)
    return ModelSpec(name, {"in_features": data_kwargs["in_features"]}, seed=seed)


def _strategy(args: argparse.Namespace) -> Strategy:
    cfg = TrainConfig(epochs=args.epochs, steps=args.steps, batch_size=args.batch_size,
                      lr=args.lr, momentum=args.momentum, optimizer=args.optimizer)
    if args.proximal_mu is not None:
        from ..algorithms.fedprox import FedProx  # noqa: PLC0415

        return FedProx(cfg, mu=args.proximal_mu, weighted=not args.unweighted)
    return FedAvg(cfg, weighted=not args.unweighted)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fedlearn.flower", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="start a federation, run an experiment, stop it")
    r.add_argument("--nodes", type=int, default=3, help="hospitals (SuperNodes)")
    r.add_argument("--rounds", type=int, default=2)
    r.add_argument("--data", choices=DATASETS, default="heart")
    r.add_argument("--max-train", type=int, default=None, help="MedMNIST: subsample train")
    r.add_argument("--model", choices=("logreg", "mlp", "cnn"), default="logreg")
    r.add_argument("--steps", type=int, default=10, help="local steps (0: use --epochs)")
    r.add_argument("--epochs", type=int, default=1)
    r.add_argument("--batch-size", type=int, default=8)
    r.add_argument("--lr", type=float, default=0.05)
    r.add_argument("--momentum", type=float, default=0.0)
    r.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    r.add_argument("--unweighted", action="store_true", help="average with 1/K, not n_k/n")
    r.add_argument("--proximal-mu", type=float, default=None, help="FedProx instead of FedAvg")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--min-nodes", type=int, default=None,
                   help="replies a round needs (default: all); fewer survives node failures")
    r.add_argument("--evaluate", choices=EVALUATE_MODES, default="final")
    r.add_argument("--secagg", action="store_true", help="Flower's SecAgg+ workflow")
    r.add_argument("--secagg-shares", type=int, default=3)
    r.add_argument("--secagg-threshold", type=int, default=2)
    r.add_argument("--dp-clip", type=float, default=None,
                   help="central DP: clients clip updates to this L2 norm (implies --secagg)")
    r.add_argument("--dp-noise", type=float, default=1.0, help="DP noise multiplier z")
    r.add_argument("--secure", action="store_true",
                   help="TLS from a fresh CA and SuperNode authentication (registered keys) "
                        "instead of --insecure; keys live in the workdir")
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--port", type=int, default=19100, help="SuperLink port (0: a free one)")
    r.add_argument("--node-ports", type=int, nargs="*", default=None,
                   help="one local API port per SuperNode (default: SuperLink port + 1, ...)")
    r.add_argument("--workdir", type=Path, default=None,
                   help="keep partitions, Flower state, logs and results here")
    r.add_argument("--out-dir", type=Path, default=None, help="where the ServerApp writes")
    r.add_argument("--connect-timeout", type=float, default=180.0)
    r.add_argument("--round-timeout", type=float, default=600.0)
    r.add_argument("--run-timeout", type=float, default=1800.0)
    r.add_argument("--compare", action="store_true",
                   help="also run fedlearn.run in process and compare the final weights")
    return p


def _raise_exit(signum: int, _frame: object) -> None:
    """SIGTERM/SIGHUP become SystemExit, so the federation's cleanup runs."""
    raise SystemExit(128 + signum)


def _ports(args: argparse.Namespace) -> tuple[int | None, list[int] | None]:
    if args.port == 0:
        return None, args.node_ports
    node_ports = args.node_ports or [args.port + 1 + k for k in range(args.nodes)]
    return args.port, node_ports


def cmd_run(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    clients, data_kwargs = make_clients(args.data, args.nodes, args.seed, args.max_train)
    spec = _model_spec(args.model, data_kwargs, args.seed)
    if args.steps == 0:
        args.steps = None
    strategy = _strategy(args)
    secure = args.secagg or args.dp_clip is not None
    secagg = SecAggOptions(num_shares=args.secagg_shares,
                           reconstruction_threshold=args.secagg_threshold) if secure else None
    dp = DPOptions(args.dp_noise, args.dp_clip) if args.dp_clip is not None else None
    port, node_ports = _ports(args)
    print(f"{len(clients)} hospitals: " + ", ".join(f"{c.name} ({c.num_train} train)"
                                                   for c in clients))
    print(f"strategy {strategy!r}; model {spec.name}; {args.rounds} rounds; "
          f"SecAgg+ {'on' if secagg else 'off'}; DP {dp if dp else 'off'}", flush=True)

    def on_round(row: dict[str, Any]) -> None:
        who = (f"hospitals {row['participants']}" if "participants" in row
               else f"{row.get('num_participants')} hospitals (SecAgg+)")
        print(f"  round {row['round']}: {who}, {row['num_examples']} examples, "
              f"train loss {row.get('train_loss', float('nan')):.4f}"
              + (f", failures {row['failures']}" if row.get("failures") else ""), flush=True)

    res = run_flower(clients, strategy, args.rounds, spec, workdir=args.workdir, port=port,
                     node_ports=node_ports, connect_timeout=args.connect_timeout, quiet=False,
                     secure=args.secure,
                     seed=args.seed, min_nodes=args.min_nodes, evaluate=args.evaluate,
                     secagg=secagg, dp=dp, out_dir=args.out_dir,
                     round_timeout=args.round_timeout, run_timeout=args.run_timeout,
                     on_round=on_round)
    print(f"run {res.run_id} finished:completed in {res.seconds:.0f} s; "
          f"{res.network_bytes} bytes through the SuperLink")
    evals = res.history.to_dataframe()
    if not evals.empty:
        cols = [c for c in ("round", "test_set", "num_examples", "accuracy", "auroc")
                if c in evals.columns]
        print(evals[cols].round(4).to_string(index=False))
    if args.workdir is not None or args.out_dir is not None:
        print(f"results in {res.out_dir}")
    if args.compare:
        from ..simulation import run  # noqa: PLC0415

        sim = run(spec.build(), clients, strategy, args.rounds, seed=args.seed,
                  progress=False, eval_every=0)
        assert sim.final_state is not None
        diff = max_abs_diff(res.final_state, sim.final_state)
        print(f"max |w_flower - w_simulation| = {diff:.3g}"
              + (" (SecAgg+ quantisation / DP noise expected)" if secure else ""))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_exit)
    try:
        return cmd_run(args)
    except (FederationError, ValueError, NotImplementedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: federation stopped", file=sys.stderr)
        return 130
    except SystemExit:
        print("terminated by a signal: federation stopped", file=sys.stderr)
        raise


if __name__ == "__main__":
    sys.exit(main())
