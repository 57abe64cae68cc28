"""What ``import fedlearn`` costs on top of ``import torch``: seconds, memory, modules.

Each measurement is a fresh interpreter that imports torch, then the thing measured, and
reports the time of that second import, the growth of its peak RSS and which heavy packages
are now in ``sys.modules``. Three things are measured per checkout:

* ``import fedlearn`` (what every notebook, script and process pays first);
* ``fl.run`` + ``fl.FedAvg`` + ``fl.make_model`` (the core training path, no evaluation);
* ``import fedlearn.flower.client_app`` after ``import flwr`` (what each Flower ClientApp
  process loads; Flower itself is not counted).

Run it on two checkouts to compare before and after::

    python benchmarks/bench_import.py --root /path/to/old/checkout --label before
    python benchmarks/bench_import.py --label after --out benchmarks/results/bench_import.json

Results merge into ``--out`` by label, with a Markdown table beside it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HEAVY = ("pandas", "sklearn", "scipy", "opacus", "flwr", "tenseal", "cryptography", "lifelines",
         "matplotlib")
CASES = {
    "import fedlearn": ("", "import fedlearn"),
    "core path (fl.run, fl.FedAvg, fl.make_model)": (
        "", "import fedlearn as fl; fl.run; fl.FedAvg; fl.make_model"),
    "Flower ClientApp module (after import flwr)": (
        "import flwr.clientapp, flwr.app", "import fedlearn.flower.client_app"),
}
PROBE = """
import resource, sys, time, json
import torch
{pre}
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
{stmt}
t = time.perf_counter() - t0
r1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"seconds": t, "rss_mb": (r1 - r0) / 1024,
                  "heavy": [m for m in {heavy!r} if m in sys.modules and m not in PRE]}}))
"""


def measure(root: Path, pre: str, stmt: str) -> dict:
    # torch (and ``pre``) first, then a snapshot of sys.modules: only the statement's own
    # imports count
    code = PROBE.format(pre=f"{pre}\nPRE = set(sys.modules)", stmt=stmt, heavy=HEAVY)
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=root, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                   help="checkout whose fedlearn is imported")
    p.add_argument("--label", default="after")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    res = {}
    for name, (pre, stmt) in CASES.items():
        runs = [measure(args.root, pre, stmt) for _ in range(args.repeats)]
        secs = [r["seconds"] for r in runs]
        res[name] = {"seconds_median": statistics.median(secs), "seconds_min": min(secs),
                     "seconds_max": max(secs),
                     "rss_mb_median": statistics.median(r["rss_mb"] for r in runs),
                     "heavy_modules": runs[0]["heavy"], "runs": runs}
        print(f"{args.label:8s} {name:48s} {res[name]['seconds_median']:.3f} s "
              f"({min(secs):.3f}-{max(secs):.3f}), +{res[name]['rss_mb_median']:.0f} MB, "
              f"loads {runs[0]['heavy']}", flush=True)
    if args.out is not None:
        old = json.loads(args.out.read_text()) if args.out.exists() else {}
        old[args.label] = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                           "root": str(args.root), "loadavg": list(os.getloadavg()),
                           "results": res}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(old, indent=1) + "\n")
        lines = ["| checkout | what is imported (on top of torch) | seconds median (min-max) | "
                 "peak RSS growth MB | heavy packages loaded | load avg |",
                 "|---|---|---:|---:|---|---|"]
        for label, rec in old.items():
            for name, r in rec["results"].items():
                lines.append(f"| {label} | {name} | {r['seconds_median']:.3f} "
                             f"({r['seconds_min']:.3f}-{r['seconds_max']:.3f}) | "
                             f"{r['rss_mb_median']:.0f} | {', '.join(r['heavy_modules']) or '-'}"
                             f" | {rec['loadavg'][0]:.1f} |")
        args.out.with_suffix(".md").write_text(
            "# bench_import\n\nFresh interpreter per run; median of the repeats. See "
            "bench_import.py.\n\n" + "\n".join(lines) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
