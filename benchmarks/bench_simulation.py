"""How much does fedlearn's simulation cost compared with a hand-written PyTorch FedAvg loop?

The course asks learners to use ``fl.run(model, clients, fl.FedAvg(...))`` instead of writing
the loop themselves. That is only a good trade if the abstraction (client updates as deltas,
validation, float64 aggregation, history logging) costs little next to the training itself.
This script times three implementations doing the same federated training:

* ``fedlearn``: ``fl.run`` with ``fl.FedAvg`` (``eval_every=0``, ``progress=False``);
* ``plain``: the loop a typical PyTorch tutorial writes - per client a ``deepcopy`` of the
  global model, a shuffling ``DataLoader`` over the client's ``TensorDataset`` with a seeded
  generator, SGD, then a sample-weighted average of the state dicts. The target is
  fedlearn <= 1.10x this loop;
* ``plain_index`` (ablation): the same loop with batches taken by indexing the tensors with a
  seeded ``randperm``, as fedlearn does. Its batch order equals fedlearn's, so its final model
  must match fedlearn's up to float rounding; the time ratio against it isolates fedlearn's
  own bookkeeping from the (DataLoader vs indexing) difference.

Same work on every side: SmallCNN (same initial weights) on PneumoniaMNIST 28x28, the same
IID split, E local epochs, batch size B, SGD with the same lr, all clients every round, no
evaluation inside the timed region. Every run reports its last-round training loss and its
final model's test metrics (official test split, untimed, same code for all) to show that the
three did the same learning. The plain loops borrow only ``fedlearn.utils.derive_seed`` for their
per-(round, client) shuffling seeds.

Run (needs the MedMNIST file, e.g. ``FEDLEARN_DATA_DIR=/work/shared/data``)::

    python benchmarks/bench_simulation.py --quick           # smoke test: 10 clients, 1 round
    python benchmarks/bench_simulation.py                   # 10 and 50 clients, 3 rounds, 3 repeats
    python benchmarks/bench_simulation.py --threads 1 --repeats 5 \
        --out benchmarks/results/bench_simulation.json     # shared machine; store the results
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fedlearn as fl
from fedlearn.utils import derive_seed

METHODS = ("fedlearn", "plain", "plain_index")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "bench_simulation.json"
Trainer = Callable[[nn.Module, list[fl.Client], int], float]


# ---------------------------------------------------------------------- the three implementations


def train_fedlearn(model: nn.Module, clients: list[fl.Client], rounds: int, *,
                   config: fl.TrainConfig, seed: int) -> float:
    """fedlearn's simulation; ``model`` ends holding the final global weights.

    Every trainer returns the last round's training loss (per-client mean over minibatches,
    then sample-weighted over clients, as fedlearn's History logs it) to check same work.
    """
    hist = fl.run(model, clients, fl.FedAvg(config), rounds=rounds, eval_every=0,
                  progress=False, seed=seed)
    return float(hist.rounds[-1]["train_loss"])


def _weighted_average(states: Sequence[dict[str, torch.Tensor]],
                      sizes: Sequence[int]) -> dict[str, torch.Tensor]:
    """FedAvg's server step as tutorials write it: sum_k (n_k / n) * w_k, key by key."""
    total = sum(sizes)
    return {key: sum(sd[key] * (n / total) for sd, n in zip(states, sizes, strict=True))
            for key in states[0]}


def train_plain(model: nn.Module, clients: list[fl.Client], rounds: int, *, epochs: int,
                batch_size: int, lr: float, seed: int) -> float:
    """The tutorial FedAvg loop: deepcopy, DataLoader, SGD, weighted state-dict average."""
    for rnd in range(1, rounds + 1):
        states, sizes, losses = [], [], []
        for client in clients:
            local = copy.deepcopy(model)
            local.train()
            opt = torch.optim.SGD(local.parameters(), lr=lr)
            gen = torch.Generator().manual_seed(derive_seed(seed, rnd, client.cid))
            loader = DataLoader(client.train, batch_size=batch_size, shuffle=True, generator=gen)
            running_loss, steps = 0.0, 0
            for _ in range(epochs):
                for xb, yb in loader:
                    opt.zero_grad()
                    loss = F.cross_entropy(local(xb), yb)
                    loss.backward()
                    opt.step()
                    running_loss += loss.item()
                    steps += 1
            states.append(local.state_dict())
            sizes.append(len(client.train))
            losses.append(running_loss / steps)
        model.load_state_dict(_weighted_average(states, sizes))
    return float(np.average(losses, weights=sizes))


def train_plain_index(model: nn.Module, clients: list[fl.Client], rounds: int, *, epochs: int,
                      batch_size: int, lr: float, seed: int) -> float:
    """The same loop, batching by tensor indexing with fedlearn's batch order (ablation)."""
    local = copy.deepcopy(model)
    for rnd in range(1, rounds + 1):
        global_state = {k: v.clone() for k, v in model.state_dict().items()}
        states, sizes, losses = [], [], []
        for client in clients:
            x, y = client.train.tensors
            local.load_state_dict(global_state)
            local.train()
            opt = torch.optim.SGD(local.parameters(), lr=lr)
            gen = torch.Generator().manual_seed(derive_seed(seed, rnd, client.cid))
            running_loss, steps = 0.0, 0
            for _ in range(epochs):
                for idx in torch.randperm(len(x), generator=gen).split(batch_size):
                    opt.zero_grad()
                    loss = F.cross_entropy(local(x[idx]), y[idx])
                    loss.backward()
                    opt.step()
                    running_loss += loss.item()
                    steps += 1
            states.append({k: v.clone() for k, v in local.state_dict().items()})
            sizes.append(len(x))
            losses.append(running_loss / steps)
        model.load_state_dict(_weighted_average(states, sizes))
    return float(np.average(losses, weights=sizes))


# ------------------------------------------------------------------------------------ harness


def _loadavg() -> list[float] | None:
    """1/5/15-minute load averages: above the core count, other processes shared the CPU."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def machine_info(threads: int) -> dict[str, object]:
    """What a reader needs to compare these numbers with theirs."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       cpu)
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu": cpu, "logical_cores": os.cpu_count(), "usable_cores": affinity,
        "torch_threads": threads, "python": platform.python_version(),
        "platform": platform.platform(), "torch": torch.__version__, "numpy": np.__version__,
        "fedlearn": fl.__version__,
        "loadavg_start": _loadavg(),
    }


def make_clients(train: TensorDataset, num_clients: int, seed: int) -> list[fl.Client]:
    """IID split into ``num_clients`` hospitals; setup shared by all methods, never timed."""
    parts = fl.partition.iid_partition(len(train), num_clients, seed=seed)
    return fl.clients_from_partition(train, parts)


def _timed(fn: Callable[[], float]) -> tuple[float, float, float]:
    """Run ``fn`` once; wall-clock and process-CPU seconds.

    CPU time is reported next to wall time because on a shared machine a single-threaded run
    loses wall time while descheduled, but not CPU time.
    """
    gc.collect()
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def _max_abs_diff(a: nn.Module, b: nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max(float((sa[k] - sb[k]).abs().max()) for k in sa)


def bench_clients(num_clients: int, args: argparse.Namespace, train: TensorDataset,
                  test: TensorDataset) -> dict[str, object]:
    """Time every method ``args.repeats`` times on ``num_clients`` clients."""
    clients = make_clients(train, num_clients, args.seed)
    init = fl.make_model("cnn", seed=args.seed, in_channels=1, num_classes=2)
    config = fl.TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
    hp = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed}
    trainers: dict[str, Trainer] = {
        "fedlearn": lambda m, c, r: train_fedlearn(m, c, r, config=config, seed=args.seed),
        "plain": lambda m, c, r: train_plain(m, c, r, **hp),
        "plain_index": lambda m, c, r: train_plain_index(m, c, r, **hp),
    }
    for trainer in trainers.values():  # warm-up (allocator, oneDNN primitives), untimed
        trainer(copy.deepcopy(init), clients[:2], 1)

    wall: dict[str, list[float]] = {m: [] for m in METHODS}
    cpu: dict[str, list[float]] = {m: [] for m in METHODS}
    finals: dict[str, nn.Module] = {}
    train_loss: dict[str, float] = {}
    for rep in range(args.repeats):
        order = METHODS[rep % len(METHODS):] + METHODS[:rep % len(METHODS)]  # rotate the order
        for name in order:
            finals[name] = model = copy.deepcopy(init)
            train_loss[name], w, c = _timed(lambda n=name, m=model: trainers[n](m, clients,
                                                                                 args.rounds))
            wall[name].append(w)
            cpu[name].append(c)

    res: dict[str, object] = {
        "clients": num_clients,
        "examples_per_client": [min(c.num_train for c in clients),
                                max(c.num_train for c in clients)],
        "steps_per_round": sum(-(-c.num_train // args.batch_size) for c in clients) * args.epochs,
    }
    for name in METHODS:
        metrics = fl.evaluate(finals[name], test)
        res[name] = {
            "wall_s": wall[name], "cpu_s": cpu[name],
            "wall_median_s": statistics.median(wall[name]), "wall_min_s": min(wall[name]),
            "cpu_median_s": statistics.median(cpu[name]),
            "last_round_train_loss": train_loss[name], "test_loss": metrics["loss"],
            "test_accuracy": metrics["accuracy"], "test_auroc": metrics["auroc"],
        }
    for base in ("plain", "plain_index"):
        for stat in ("wall_median_s", "wall_min_s", "cpu_median_s"):
            key = f"ratio_fedlearn_over_{base}_{stat.removesuffix('_s')}"
            res[key] = res["fedlearn"][stat] / res[base][stat]  # type: ignore[index]
        for clock, times in (("wall", wall), ("cpu", cpu)):  # runs of one repeat are adjacent
            res[f"ratio_fedlearn_over_{base}_{clock}_paired_median"] = statistics.median(
                f / b for f, b in zip(times["fedlearn"], times[base], strict=True))
    res["max_abs_param_diff_fedlearn_vs_plain_index"] = _max_abs_diff(finals["fedlearn"],
                                                                      finals["plain_index"])
    res["max_abs_param_diff_fedlearn_vs_plain"] = _max_abs_diff(finals["fedlearn"],
                                                                finals["plain"])
    return res


def markdown_table(results: Sequence[dict], target: float, repeats: int) -> str:
    """The results as a Markdown table: median seconds and ratios fedlearn / baseline.

    No verdict is given from fewer than 3 repeats: one run on a busy machine can be off by 10 %.
    """
    lines = [
        "| clients | steps/round | fedlearn wall s | plain wall s | ratio wall | fedlearn CPU s | "
        "plain CPU s | ratio CPU | target | ratio CPU vs plain_index | max abs dw vs plain_index "
        "| test acc f / p / pi | last-round train loss f / p / pi |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---:|---:|:---:|:---:|",
    ]
    for r in results:
        f, p, pi = r["fedlearn"], r["plain"], r["plain_index"]
        ratio_w = r["ratio_fedlearn_over_plain_wall_median"]
        ratio_c = r["ratio_fedlearn_over_plain_cpu_median"]
        verdict = ("met" if max(ratio_w, ratio_c) <= target else "MISSED") if repeats >= 3 \
            else "n/a (< 3 repeats)"
        lines.append(
            f"| {r['clients']} | {r['steps_per_round']} | {f['wall_median_s']:.2f} | "
            f"{p['wall_median_s']:.2f} | {ratio_w:.3f} | {f['cpu_median_s']:.2f} | "
            f"{p['cpu_median_s']:.2f} | {ratio_c:.3f} | {verdict} | "
            f"{r['ratio_fedlearn_over_plain_index_cpu_median']:.3f} | "
            f"{r['max_abs_param_diff_fedlearn_vs_plain_index']:.1e} | "
            f"{f['test_accuracy']:.3f} / {p['test_accuracy']:.3f} / {pi['test_accuracy']:.3f} | "
            f"{f['last_round_train_loss']:.4f} / {p['last_round_train_loss']:.4f} / "
            f"{pi['last_round_train_loss']:.4f} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--clients", type=int, nargs="+", default=[10, 50],
                   help="numbers of clients to benchmark (each IID split is timed)")
    p.add_argument("--rounds", type=int, default=3, help="federated rounds per run")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per method; median shown")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (1 if shared)")
    p.add_argument("--batch-size", type=int, default=32, help="local minibatch size B")
    p.add_argument("--epochs", type=int, default=1, help="local epochs per round")
    p.add_argument("--lr", type=float, default=0.05, help="local SGD learning rate")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the initial model, the split and the batch orders")
    p.add_argument("--target", type=float, default=1.10, help="acceptable fedlearn/plain ratio")
    p.add_argument("--data-root", default=None, help="folder with pneumoniamnist.npz "
                   "(None: FEDLEARN_DATA_DIR, then the cache)")
    p.add_argument("--out", type=Path, default=None,
                   help="write the results as JSON here and a .md table beside it (the stored "
                   f"results live in {DEFAULT_OUT.relative_to(DEFAULT_OUT.parents[2])}); "
                   "without --out nothing is written, so a trial run cannot overwrite them")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 10 clients, 1 round, 1 repeat")
    args = p.parse_args(argv)
    if args.quick:
        args.clients, args.rounds, args.repeats = [10], 1, 1
    if min(args.clients) < 1 or args.rounds < 1 or args.repeats < 1 or args.threads < 1:
        p.error("--clients, --rounds, --repeats and --threads must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    data = fl.data.load_medmnist("pneumoniamnist", root=args.data_root, progress=False)
    info = machine_info(args.threads)
    print(f"{info['cpu']}, {info['usable_cores']} usable cores, torch {info['torch']}, "
          f"{args.threads} thread(s); PneumoniaMNIST train {len(data.train)}, "
          f"test {len(data.test)}; {args.rounds} round(s), E={args.epochs}, "
          f"B={args.batch_size}, lr={args.lr}, {args.repeats} repeat(s)", flush=True)
    results = []
    for k in args.clients:
        r = bench_clients(k, args, data.train, data.test)
        results.append(r)
        print(f"  {k} clients: fedlearn {r['fedlearn']['wall_median_s']:.2f}s, "
              f"plain {r['plain']['wall_median_s']:.2f}s, "
              f"ratio {r['ratio_fedlearn_over_plain_wall_median']:.3f} (wall), "
              f"{r['ratio_fedlearn_over_plain_cpu_median']:.3f} (CPU)", flush=True)
    info["loadavg_end"] = _loadavg()
    table = markdown_table(results, args.target, args.repeats)
    print()
    print(table)
    if args.out is not None:
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        record = {
            "benchmark": "bench_simulation",
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "dataset": {"flag": "pneumoniamnist", "train": len(data.train),
                        "test": len(data.test)},
            "machine": info, "settings": settings, "results": results,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
        md = args.out.with_suffix(".md")
        md.write_text(
            f"# bench_simulation ({record['date']})\n\n"
            f"`{record['command']}` - {info['cpu']}, {info['usable_cores']} usable cores, "
            f"torch {info['torch']}, {args.threads} thread(s), {args.rounds} rounds, "
            f"E={args.epochs}, B={args.batch_size}, lr={args.lr}, median of {args.repeats}; "
            f"load average {info['loadavg_start']} -> {info['loadavg_end']}.\n\n"
            f"Seconds are medians over repeats; ratio = fedlearn / baseline (target <= "
            f"{args.target} on both clocks). f = fedlearn, p = plain (DataLoader tutorial "
            f"loop), pi = plain_index (same loop, fedlearn's batching). See README.md.\n\n"
            f"{table}\n")
        print(f"\nwrote {args.out} and {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
