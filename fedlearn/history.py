"""What happened in a federated run, round by round, as tables and plots.

Two tables: one row per *round* (who took part, training loss, bytes on the wire, wall
time) and one row per *evaluation* (round x test set x metric). Both become pandas
DataFrames so a learner can slice them like any other experiment log.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .ledger import Ledger
from .utils import StateDict

if TYPE_CHECKING:  # pandas is imported by the methods that build tables (a lean import)
    import pandas as pd

    from .update import ClientUpdate

__all__ = ["History", "round_train_loss"]


def round_train_loss(updates: Sequence[ClientUpdate]) -> float:
    """A round's training loss: the mean of the clients' losses, weighted by ``num_examples``.

    A client that took no step (``TrainConfig(steps=0)``) reports ``train_loss`` NaN, not 0.0
    (which would read as a perfect fit). Such clients (``num_steps == 0``), and clients that
    report no loss, are left out of the mean, so one idle hospital does not turn the round's
    loss into NaN; a round where nobody trained has loss NaN, which pandas and matplotlib show
    as a gap. A client that trained and diverged (loss NaN or inf) is kept: that must show.
    """
    pairs = [(float(u.metrics["train_loss"]), u.num_examples) for u in updates
             if "train_loss" in u.metrics and u.metrics.get("num_steps", 1.0) > 0]
    n = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / n if n > 0 else math.nan


@dataclass
class History:
    """Log of a run. ``final_state`` holds the last global weights."""

    strategy: str = ""
    rounds: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    final_state: StateDict | None = None
    stopped: str | None = None  # why the run ended early (e.g. privacy budget), if it did
    #: per round, what each aggregator layer measured: ``{"round": r, "secure": {...}, ...}``
    measurements: list[dict[str, Any]] = field(default_factory=list)
    #: every number released, with its protection (:mod:`fedlearn.ledger`)
    release_ledger: Ledger = field(default_factory=lambda: Ledger())
    #: what a DP run did not release because no epsilon covers it (e.g. ``train_loss``)
    withheld: list[str] = field(default_factory=list)

    @property
    def ledger(self) -> pd.DataFrame:
        """One row per released quantity per round: who sees it, mechanism, sigma,
        sensitivity, epsilon and delta, and its status (:data:`fedlearn.ledger.STATUSES`)."""
        return self.release_ledger.frame()

    def privacy_summary(self) -> pd.DataFrame:
        """Per hospital and unit: total epsilon and delta, and what no epsilon covers."""
        return self.release_ledger.summary()

    def log_round(self, **row: Any) -> None:
        self.rounds.append(row)

    def log_measurements(self, rnd: int, measurements: dict[str, Any]) -> None:
        self.measurements.append({"round": rnd, **measurements})

    def aggregation_frame(self, layer: str) -> pd.DataFrame:
        """One row per round of what aggregator ``layer`` measured (e.g. ``"secure"``,
        ``"central_dp"``, ``"distributed_dp"``), indexed by round."""
        import pandas as pd

        rows = [{"round": m["round"], **m[layer]} for m in self.measurements if layer in m]
        if not rows:
            have = sorted({k for m in self.measurements for k in m} - {"round"})
            raise KeyError(f"no measurements from aggregator layer {layer!r}; have {have}")
        return pd.DataFrame(rows).set_index("round")

    def log_eval(self, rnd: int, test_set: str, metrics: dict[str, float]) -> None:
        self.evals.append({"round": rnd, "test_set": test_set, **metrics})

    def rounds_frame(self) -> pd.DataFrame:
        """One row per round: participants, train_loss, bytes_up, bytes_down, seconds, ...

        ``train_loss`` is NaN in a round where no client took a step (see
        :func:`round_train_loss`).
        """
        import pandas as pd

        return pd.DataFrame(self.rounds)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per (round, test set) with every metric as a column."""
        import pandas as pd

        return pd.DataFrame(self.evals)

    def metric(self, name: str = "accuracy", test_set: str = "pooled") -> pd.Series:
        """A metric over rounds on one test set, indexed by round."""
        df = self.to_dataframe()
        if df.empty and "test_metrics" in self.withheld:
            raise ValueError(
                "this DP run released no test metrics: each is a function of a hospital's test "
                "patients that no epsilon covers. Pass release_unaccounted=('test_metrics',) "
                "to fl.run to release them anyway (flagged in history.ledger), or score the "
                "final model yourself (fl.evaluate_clients)")
        if df.empty:
            raise ValueError("this run recorded no evaluations (eval_every=0?)")
        if name not in df.columns:
            have = sorted(set(df.columns) - {"round", "test_set"})
            raise KeyError(f"unknown metric {name!r}; have {have}")
        sel = df[df["test_set"] == test_set]
        if sel.empty:
            have = sorted(df["test_set"].unique())
            raise KeyError(f"no evaluations on {test_set!r}; have {have}")
        return sel.set_index("round")[name].rename(f"{name} ({test_set})")

    def final(self, name: str = "accuracy", test_set: str = "pooled") -> float:
        """The metric at the last evaluated round."""
        return float(self.metric(name, test_set).iloc[-1])

    def per_client(self, name: str = "accuracy", rnd: int | None = None) -> pd.Series:
        """One metric on every test set at round ``rnd`` (default: the last evaluated)."""
        df = self.to_dataframe()
        r = int(df["round"].max()) if rnd is None else rnd
        return df[df["round"] == r].set_index("test_set")[name]

    def rounds_to(self, target: float, name: str = "accuracy",
                  test_set: str = "pooled") -> int | None:
        """First round whose metric reaches ``target`` (None if never): McMahan's measure."""
        s = self.metric(name, test_set)
        hit = s[s >= target]
        return int(hit.index[0]) if len(hit) else None

    def participation(self) -> pd.DataFrame:
        """Who took part in each round: rounds x client ids, one status string per cell.

        ``trained`` (update aggregated), ``partial`` (aggregated after fewer steps, cut short
        by the deadline), ``straggler`` (missed the deadline, dropped), ``dropped out``
        (offline this round) or ``-`` (not sampled). Runs without a system model only know
        ``trained`` and ``-``.
        """
        import pandas as pd

        rows: dict[int, dict[int, str]] = {}
        cids: set[int] = set()
        for r in self.rounds:
            status: dict[int, str] = {}
            for cid in r.get("participants", []):
                status[cid] = "trained"
            for cid in r.get("truncated", []):
                status[cid] = "partial"
            for cid in r.get("stragglers", []):
                status[cid] = "straggler"
            for cid in r.get("dropped", []):
                status[cid] = "dropped out"
            cids.update(status)
            cids.update(r.get("sampled", []))
            rows[r["round"]] = status
        cols = sorted(cids)
        table = pd.DataFrame([[rows[rnd].get(c, "-") for c in cols] for rnd in rows],
                             index=pd.Index(list(rows), name="round"), columns=cols)
        table.columns.name = "client"
        return table

    @property
    def total_bytes(self) -> int:
        """Bytes sent both ways over the whole run."""
        return int(sum(r.get("bytes_up", 0) + r.get("bytes_down", 0) for r in self.rounds))

    def plot(self, name: str = "accuracy", test_sets: Sequence[str] | None = ("pooled",),
             ax: Any = None, x: str = "round", label: str | None = None) -> Any:
        """Plot a metric against rounds (``x='round'``) or cumulative megabytes (``x='mb'``)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.2))
        df = self.to_dataframe()
        sets = list(df["test_set"].unique()) if test_sets is None else list(test_sets)
        cum_mb = None
        if x == "mb":
            rf = self.rounds_frame()
            cum_mb = ((rf["bytes_up"] + rf["bytes_down"]).cumsum() / 1e6).to_numpy()
        for ts in sets:
            s = self.metric(name, ts)
            xs = s.index.to_numpy()
            if cum_mb is not None:
                xs = [0.0 if r == 0 else cum_mb[r - 1] for r in xs]
            lab = label or self.strategy
            ax.plot(xs, s.to_numpy(), marker=".", label=f"{lab} - {ts}" if len(sets) > 1 else lab)
        ax.set_xlabel("communication round" if x == "round" else "cumulative data sent (MB)")
        ax.set_ylabel(name.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        return ax
