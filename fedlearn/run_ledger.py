"""What :func:`fedlearn.run` itself releases, and what it withholds under DP.

The aggregators list what they sum and how (:mod:`fedlearn.ledger`). The run releases more:
each hospital's training loss and other metrics, its number of examples, who took part, the
model sent back every round, and the test metrics of every evaluation. This module writes
those rows and applies the **safe default of a DP run** (one whose aggregator has a DP layer,
or whose hospitals train with DP-SGD): only what is accounted or public leaves a hospital.

* Training losses and any metric a client reports beyond the public ones
  (:data:`PUBLIC_METRICS`: step counts and the epsilons themselves, which depend only on public
  parameters) are removed from the update before the server sees it, so ``History`` holds no
  exact loss.
* Test metrics are not computed at all: each is a function of a hospital's test patients that
  no epsilon covers.
* ``release_unaccounted=("train_loss", "test_metrics", "client_metrics")`` releases them on
  purpose; every such row is ``unaccounted`` in the ledger and flagged in its summary.

A run without DP releases everything, and its ledger says ``unprotected``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from .client import Client
from .errors import ConfigError
from .ledger import RELEASE_OPTIONS, Ledger, Release
from .strategy import Strategy
from .update import ClientUpdate

__all__ = ["PUBLIC_METRICS", "RunLedger", "is_dp_run"]

#: client metrics that depend only on public parameters (the server set the step budget; an
#: epsilon is a function of sigma, q and the steps): listed as public, never withheld
PUBLIC_METRICS: frozenset[str] = frozenset({"num_steps", "epsilon", "noise_multiplier",
                                            "sample_rate"})


def is_dp_run(strategy: Strategy, clients: Sequence[Client]) -> bool:
    """A DP layer in the strategy's aggregator, or a hospital that trains with DP-SGD."""
    return (any(getattr(a, "is_dp", False) for a in strategy.aggregator.layers())
            or any(getattr(c, "is_dp", False) for c in clients))


class RunLedger:
    """The ledger of one run, and the release policy that goes with it."""

    def __init__(self, strategy: Strategy, clients: Sequence[Client],
                 release_unaccounted: Sequence[str] = ()) -> None:
        if isinstance(release_unaccounted, str):
            release_unaccounted = (release_unaccounted,)
        bad = [r for r in release_unaccounted if r not in RELEASE_OPTIONS]
        if bad:
            raise ConfigError(f"release_unaccounted={tuple(release_unaccounted)!r} names "
                              f"{bad}; choose among {RELEASE_OPTIONS}")
        self.dp = is_dp_run(strategy, clients)
        self.opt_in = frozenset(release_unaccounted)
        self.secure = any(a.hides_individual for a in strategy.aggregator.layers())
        self.clients = {c.cid: c for c in clients}
        self.ledger = Ledger({c.cid: c.name for c in clients})
        self.contributed: set[int] = set()
        #: what a DP run did not release (for messages), e.g. ``["train_loss"]``
        self.withheld: set[str] = set()

    # ------------------------------------------------------------------ the policy
    def releases_test_metrics(self) -> bool:
        if self.dp and "test_metrics" not in self.opt_in:
            self.withheld.add("test_metrics")
            return False
        return True

    def _released(self, metric: str) -> bool:
        if not self.dp or metric in PUBLIC_METRICS:
            return True
        return ("train_loss" if metric == "train_loss" else "client_metrics") in self.opt_in

    def filter(self, updates: Sequence[ClientUpdate]) -> list[ClientUpdate]:
        """The updates as they leave the hospitals: unaccounted metrics removed under DP."""
        out = []
        for u in updates:
            keep = {k: v for k, v in u.metrics.items() if self._released(k)}
            self.withheld.update(set(u.metrics) - set(keep))
            out.append(u if len(keep) == len(u.metrics) else replace(u, metrics=keep))
        return out

    # ------------------------------------------------------------------ rows
    def _status_of_clear(self) -> str:
        return "unaccounted" if self.dp else "unprotected"

    def record_round(self, rnd: int, updates: Sequence[ClientUpdate],
                     aggregator_rows: Sequence[Release], model_numbers: int,
                     sampled: Sequence[int]) -> None:
        """Everything released in round ``rnd``."""
        rows = [self._dp_sgd(r) for r in aggregator_rows]
        public_counts = self.dp or self.secure
        for u in updates:
            rows.append(Release(rnd, "num_examples", 1, "hospital", (u.cid,), "server", "none",
                                "public" if public_counts else "unprotected",
                                note="public by design: each hospital's size"
                                if public_counts else ""))
            for k in sorted(u.metrics):
                if k in PUBLIC_METRICS:
                    rows.append(Release(rnd, k, 1, "hospital", (u.cid,), "server", "none",
                                        "public", note="a function of public parameters"))
                else:
                    rows.append(Release(rnd, k, 1, "hospital", (u.cid,), "server", "none",
                                        self._status_of_clear(),
                                        note="opt-in: release_unaccounted" if self.dp else ""))
        rows.append(Release(rnd, "who took part", len(sampled), "server",
                            tuple(u.cid for u in updates), "server", "none", "public",
                            note="the server sees who connects"))
        self.contributed.update(u.cid for u in updates)
        rows.append(Release(rnd, "global model", model_numbers, "server",
                            tuple(sorted(self.contributed)), "sampled hospitals", "none",
                            "post-processing" if self.dp else "unprotected",
                            note="computed from this round's sums"))
        self.ledger.extend(rows)

    def _dp_sgd(self, row: Release) -> Release:
        """A hospital's vectors are DP-SGD outputs if it trains with DP-SGD (image level);
        a sum of such vectors is post-processing."""
        if row.quantity in ("weight",) or row.quantity.startswith(("count ", "sum of count",
                                                                  "sum of weight")):
            if self.dp and row.status == "unprotected":
                return replace(row, status="public", note="public weights/counts")
            return row
        if row.source == "hospital" and len(row.about) == 1:
            c = self.clients.get(row.about[0])
            if getattr(c, "is_dp", False) and row.status in ("unprotected", "trusted"):
                return replace(row, status="dp", unit=c.record_unit,
                               mechanism="DP-SGD (Opacus)",
                               sigma=c.noise_multiplier * c.max_grad_norm,
                               sensitivity=c.max_grad_norm, epsilon=c.epsilon(),
                               delta=c.delta, accountant=c.accountant.name)
        elif row.source == "server" and row.status == "unprotected" and row.about and all(
                getattr(self.clients.get(cid), "is_dp", False) for cid in row.about):
            return replace(row, status="post-processing",
                           note="a sum of DP-SGD updates")
        return row

    def record_evaluation(self, rnd: int, results: dict[str, dict[str, float]]) -> None:
        names = {c.name: cid for cid, c in self.clients.items()}
        status = self._status_of_clear()
        note = "opt-in: release_unaccounted" if self.dp else ""
        for test_set, metrics in results.items():
            about = (names[test_set],) if test_set in names else tuple(
                cid for cid, c in self.clients.items() if c.test is not None)
            self.ledger.add(Release(rnd, "test metrics", len(metrics), "hospital", about,
                                    "server", "none", status, note=note))
