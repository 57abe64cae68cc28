"""fedlearn (both engines) vs a plain PyTorch loop vs Flower 1.42's simulation, whole process.

Every measurement is one fresh Python process doing the whole job - imports, data, training,
evaluation - because that is what a learner (or a Flower ClientApp, for every message) pays.
The parent times it from outside: wall clock, CPU seconds and peak resident memory of the
*whole process tree* (Ray starts a GCS server, a raylet and one worker per ClientApp: we poll
the tree with psutil every 50 ms, summing RSS across processes for the peak and each process's
last CPU times for the total; for a single process the kernel's exact ``wait4`` figures are
used too). Workloads (same model, data, steps and seeds everywhere) are in ``_workloads.py``.

Frameworks:

* ``fedlearn``: ``fl.run(..., fl.FedAvg(cfg))``, the sequential engine;
* ``fedlearn_vec``: the same with ``engine="vectorized"`` (``torch.func`` over all clients);
* ``plain``: the loop a PyTorch tutorial writes (deepcopy, DataLoader, SGD, weighted average of
  state dicts), with the same clinical metrics computed with scikit-learn;
* ``flower``: Flower's own FedAvg in ``flwr.simulation.run_simulation`` on Ray, a ClientApp per
  client running plain PyTorch SGD (``_flower_app.py``), centralised evaluation.

fedlearn and plain run on ``--threads`` torch threads (1 by default); Ray is given the machine's
cores (``--ray-cpus``, 2) with one CPU per ClientApp, i.e. two clients train in parallel.

Flower needs Ray, which is not a fedlearn dependency::

    .venv/bin/pip install "flwr[simulation]==1.42.0"    # adds ray (and msgpack)

Run (PneumoniaMNIST for the ``cnn`` workload: ``FEDLEARN_DATA_DIR=/work/shared/data``)::

    python benchmarks/bench_frameworks.py --quick                 # smoke test, nothing stored
    python benchmarks/bench_frameworks.py --repeats 3 --out benchmarks/results/bench_frameworks.json
    python benchmarks/bench_frameworks.py --workloads flute --frameworks flower --repeats 3

A stored file is merged per (workload, framework): re-running one cell replaces only it
(``--append`` adds the new runs to it instead).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

FRAMEWORKS = ("fedlearn", "fedlearn_vec", "plain", "flower")
WORKLOAD_NAMES = ("cnn", "logreg200", "lr1000", "flute")
DEFAULT_OUT = HERE / "results" / "bench_frameworks.json"


# ----------------------------------------------------------------- child: one whole job


def _accuracy(model, test) -> float:  # type: ignore[no-untyped-def]
    import torch

    with torch.no_grad():
        pred = torch.cat([model(xb).argmax(1) for xb in test[0].split(4096)])
    return float((pred == test[1]).float().mean())


def child_plain(w, threads: int) -> dict:  # type: ignore[no-untyped-def]
    """The tutorial loop (as ``bench_simulation.train_plain``) plus per-round clinical metrics."""
    import copy

    import numpy as np
    import torch
    import torch.nn.functional as F
    from _workloads import client_data, clinical_metrics, make_model
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    data, test = client_data(w.name)
    datasets = [TensorDataset(x, y) for x, y in data]
    model = make_model(w)
    rng = np.random.default_rng(0)
    t_setup = time.perf_counter() - t0
    if w.eval_every_round:
        clinical_metrics(model, test)
    secs, losses, sizes = [], [], []
    for rnd in range(1, w.rounds + 1):
        t = time.perf_counter()
        chosen = (range(w.num_clients) if w.per_round == w.num_clients
                  else sorted(rng.choice(w.num_clients, w.per_round, replace=False)))
        states, sizes, losses = [], [], []
        for k in chosen:
            local = copy.deepcopy(model)
            local.train()
            opt = torch.optim.SGD(local.parameters(), lr=w.lr)
            gen = torch.Generator().manual_seed(1_000_003 * rnd + int(k))
            loss_sum, steps = 0.0, 0
            for xb, yb in DataLoader(datasets[k], batch_size=w.batch_size, shuffle=True,
                                     generator=gen):
                opt.zero_grad()
                loss = F.cross_entropy(local(xb), yb)
                loss.backward()
                opt.step()
                loss_sum += loss.item()
                steps += 1
            states.append(local.state_dict())
            sizes.append(len(datasets[k]))
            losses.append(loss_sum / steps)
        total = sum(sizes)
        model.load_state_dict({key: sum(sd[key] * (n / total)
                                        for sd, n in zip(states, sizes, strict=True))
                               for key in states[0]})
        secs.append(time.perf_counter() - t)
        if w.eval_every_round:
            clinical_metrics(model, test)
    return {"setup_s": t_setup, "round_s": secs, "test_accuracy": _accuracy(model, test),
            "last_round_train_loss": float(np.average(losses, weights=sizes))}


def child_fedlearn(w, threads: int, engine: str) -> dict:  # type: ignore[no-untyped-def]
    import torch
    from _workloads import client_data, make_model
    from torch.utils.data import TensorDataset

    import fedlearn as fl

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    data, test = client_data(w.name)
    test_ds = TensorDataset(*test)
    clients = [fl.Client(i, TensorDataset(x, y), test=test_ds) for i, (x, y) in enumerate(data)]
    model = make_model(w)
    t_setup = time.perf_counter() - t0
    hist = fl.run(model, clients, fl.FedAvg(fl.TrainConfig(batch_size=w.batch_size, lr=w.lr)),
                  rounds=w.rounds, fraction=w.per_round / w.num_clients,
                  eval_every=1 if w.eval_every_round else 0, progress=False, engine=engine)
    return {"setup_s": t_setup, "round_s": [r["seconds"] for r in hist.rounds],
            "test_accuracy": _accuracy(model, test),
            "last_round_train_loss": float(hist.rounds[-1]["train_loss"])}


def child_flower(w, ray_cpus: int) -> dict:  # type: ignore[no-untyped-def]
    import logging

    import _flower_app as app
    from flwr.simulation import run_simulation

    logging.getLogger("flwr").setLevel(logging.WARNING)
    app.RESULT["workload"] = w.name
    t0 = time.perf_counter()
    run_simulation(server_app=app.server_app, client_app=app.client_app,
                   num_supernodes=w.num_clients,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": ray_cpus, "include_dashboard": False,
                                                 "logging_level": logging.WARNING}})
    if "final" not in app.RESULT:
        raise RuntimeError("the Flower run ended without a final model (see its log above)")
    return {"simulation_s": time.perf_counter() - t0,
            "test_accuracy": app.RESULT["final"]["accuracy"],
            "last_round_train_loss": app.RESULT["last_round_train_loss"]}


def child_main(framework: str, workload: str, threads: int, ray_cpus: int) -> int:
    t_start = time.perf_counter()
    from _workloads import WORKLOADS

    w = WORKLOADS[workload]
    if framework == "plain":
        res = child_plain(w, threads)
    elif framework == "flower":
        res = child_flower(w, ray_cpus)
    else:
        res = child_fedlearn(w, threads, "vectorized" if framework == "fedlearn_vec"
                             else "sequential")
    res["in_process_s"] = time.perf_counter() - t_start
    print("RESULT " + json.dumps(res), flush=True)
    return 0


# ---------------------------------------------------------- parent: measure from outside


def _tree(pid: int) -> list:  # type: ignore[type-arg]
    import psutil

    try:
        p = psutil.Process(pid)
        return [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def measure(framework: str, workload: str, args: argparse.Namespace) -> dict:
    """One fresh process for (framework, workload): wall, CPU and peak RSS of its whole tree."""
    import psutil

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]),
               OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               OMP_WAIT_POLICY="PASSIVE", RAY_DEDUP_LOGS="0")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", framework, workload,
           "--threads", str(args.threads), "--ray-cpus", str(args.ray_cpus)]
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    cpu_last: dict[int, float] = {}
    seen: dict[int, psutil.Process] = {}
    peak_tree = 0
    status = rusage = None
    while True:
        pid_done, st, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid_done:
            status, rusage = st, ru
            break
        rss = 0
        for p in _tree(proc.pid):
            try:
                with p.oneshot():
                    rss += p.memory_info().rss
                    c = p.cpu_times()
                    cpu_last[p.pid] = c.user + c.system + c.children_user + c.children_system
                seen[p.pid] = p
            except psutil.Error:
                continue
        peak_tree = max(peak_tree, rss)
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    proc.returncode = os.waitstatus_to_exitcode(status)
    lingering = [p.pid for p in seen.values() if p.pid != proc.pid and p.is_running()]
    if proc.returncode != 0 or "RESULT " not in out:
        raise RuntimeError(f"{framework}/{workload} failed ({proc.returncode}):\n{err[-3000:]}")
    res = json.loads(out.rsplit("RESULT ", 1)[1].splitlines()[0])
    direct_cpu = rusage.ru_utime + rusage.ru_stime  # the child and the children it waited for
    tree_cpu = sum(cpu_last.values())
    res.update(wall_s=wall, cpu_s=max(direct_cpu, tree_cpu),
               peak_rss_mb=max(rusage.ru_maxrss / 1024, peak_tree / 2**20),
               processes=len(seen), loadavg_before=[round(x, 2) for x in load0],
               loadavg_after=[round(x, 2) for x in os.getloadavg()], lingering=lingering)
    return res


def _summary(runs: list[dict], key: str) -> dict:
    xs = [r[key] for r in runs]
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def bench(args: argparse.Namespace) -> dict:
    results: dict[str, dict] = {}
    for wl in args.workloads:
        results[wl] = {}
        runs: dict[str, list[dict]] = {fw: [] for fw in args.frameworks}
        for rep in range(args.repeats):
            order = list(args.frameworks[rep % len(args.frameworks):]) + \
                list(args.frameworks[:rep % len(args.frameworks)])  # rotate the order
            for fw in order:
                r = measure(fw, wl, args)
                runs[fw].append(r)
                print(f"  {wl:9s} {fw:12s} wall {r['wall_s']:7.2f} s  cpu {r['cpu_s']:7.2f} s  "
                      f"peak {r['peak_rss_mb']:6.0f} MB  acc {r['test_accuracy']:.3f}  "
                      f"load {r['loadavg_before'][0]:.1f}", flush=True)
        for fw, rs in runs.items():
            results[wl][fw] = summarize(rs)
    return results


def summarize(rs: list[dict]) -> dict:
    """Median and min-max of wall, CPU, peak RSS (and in-process seconds per round)."""
    cell = {k: _summary(rs, k) for k in ("wall_s", "cpu_s", "peak_rss_mb")}
    if rs and "round_s" in rs[0]:
        per_round = [statistics.median(r["round_s"]) for r in rs]
        cell["round_s"] = {"median": statistics.median(per_round),
                           "min": min(per_round), "max": max(per_round)}
    cell["runs"] = rs
    return cell


# ------------------------------------------------------------------------------ report


def _cell(c: dict | None, key: str, fmt: str = "{:.2f}") -> str:
    if c is None:
        return "-"
    s = c[key]
    return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}-{fmt.format(s['max'])})"


def markdown(results: dict) -> str:
    from _workloads import WORKLOADS

    lines = ["| workload | framework | wall s | CPU s | peak RSS MB | s/round (in process) | "
             "test acc | Flower / this (wall) |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for wl, cells in results.items():
        fl_wall = cells.get("flower", {}).get("wall_s", {}).get("median")
        for fw in FRAMEWORKS:
            c = cells.get(fw)
            if c is None:
                continue
            acc = statistics.median(r["test_accuracy"] for r in c["runs"])
            ratio = (f"{fl_wall / c['wall_s']['median']:.1f}x" if fl_wall and fw != "flower"
                     else "-")
            per_round = _cell(c, "round_s", "{:.3f}") if "round_s" in c else "-"
            lines.append(f"| {WORKLOADS[wl].description} | {fw} | {_cell(c, 'wall_s')} | "
                         f"{_cell(c, 'cpu_s')} | {_cell(c, 'peak_rss_mb', '{:.0f}')} | "
                         f"{per_round} | {acc:.3f} | {ratio} |")
    return "\n".join(lines)


def machine() -> dict:
    import torch

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       cpu)
    except OSError:
        pass
    try:
        import flwr
        import ray

        versions = {"flwr": flwr.__version__, "ray": ray.__version__}
    except ImportError:
        versions = {"flwr": None, "ray": None}
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, **versions}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", nargs="+", default=list(WORKLOAD_NAMES),
                   choices=WORKLOAD_NAMES)
    p.add_argument("--frameworks", nargs="+", default=list(FRAMEWORKS), choices=FRAMEWORKS)
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per cell (median)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (fedlearn, plain)")
    p.add_argument("--ray-cpus", type=int, default=2, help="CPUs Ray may use (Flower)")
    p.add_argument("--out", type=Path, default=None,
                   help="merge the results into this JSON (and a .md table beside it)")
    p.add_argument("--append", action="store_true",
                   help="add these runs to a stored cell instead of replacing it")
    p.add_argument("--quick", action="store_true", help="smoke test: cnn and logreg200, 1 repeat")
    p.add_argument("--child", nargs=2, metavar=("FRAMEWORK", "WORKLOAD"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.workloads, args.repeats = ["cnn", "logreg200"], 1
    if args.repeats < 1 or args.threads < 1:
        p.error("--repeats and --threads must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args.child[0], args.child[1], args.threads, args.ray_cpus)
    info = machine()
    print(f"{info['cpu']}, {info['cores']} cores, torch {info['torch']}, flwr {info['flwr']}, "
          f"ray {info['ray']}; {args.threads} torch thread(s), {args.repeats} repeat(s); "
          f"load {os.getloadavg()}", flush=True)
    for wl in args.workloads:  # store after every workload: a long run keeps what it measured
        store(args, info, bench(argparse.Namespace(**{**vars(args), "workloads": [wl]})))
    return 0


def store(args: argparse.Namespace, info: dict, results: dict) -> None:
    """Merge ``results`` into ``--out`` (per workload and framework) or print them."""
    if args.out is not None:
        old = json.loads(args.out.read_text()) if args.out.exists() else {"results": {}}
        for wl, cells in results.items():
            for fw, cell in cells.items():
                prev = old["results"].setdefault(wl, {}).get(fw)
                if args.append and prev is not None:  # more repeats of a stored cell
                    cell = summarize([*prev["runs"], *cell["runs"]])
                old["results"][wl][fw] = cell
        old.setdefault("runs", []).append({
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "machine": info, "threads": args.threads, "ray_cpus": args.ray_cpus,
            "cells": [f"{wl}/{fw}" for wl in results for fw in results[wl]]})
        order = {w: i for i, w in enumerate(WORKLOAD_NAMES)}
        old["results"] = dict(sorted(old["results"].items(), key=lambda kv: order[kv[0]]))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(old, indent=1) + "\n")
        table = markdown(old["results"])
        args.out.with_suffix(".md").write_text(
            "# bench_frameworks\n\nWhole process (imports, data, training, evaluation), "
            "median (min-max) of the repeats; CPU and peak RSS over the whole process tree. "
            "Runs (date, load average per run) are in the JSON. See README.md.\n\n"
            + table + "\n")
        print(f"\n{table}\n\nwrote {args.out}")
    else:
        print("\n" + markdown(results))


if __name__ == "__main__":
    raise SystemExit(main())
