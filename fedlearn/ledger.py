"""The release ledger: every number that leaves a hospital or the server, and what protects it.

A data-protection officer asks one question of a federated study: *what leaves the building,
who sees it, and what bounds what it reveals?* A DP run's epsilon answers it only for the
quantities the mechanism noised. The ledger answers it for everything the run releases:
model updates and their sums, weights and counts, training losses, test metrics, who took
part, the model sent back each round, and anything a study adds afterwards (a threshold
chosen on validation data, a recipe tuned on it).

One :class:`Release` per quantity per round, with

* ``status``, one of :data:`STATUSES`:

  - ``dp``: covered by the epsilon of ``accountant`` (``epsilon`` is that accountant's total
    after this release, at ``delta``);
  - ``post-processing``: computed only from DP releases (costs nothing more);
  - ``public``: public by design (the weights ``n_k`` a consortium publishes, step budgets the
    server set, who took part, epsilons themselves);
  - ``trusted``: seen only by a party that must be trusted (central DP's server sees every
    clipped update); everyone else sees it only through a DP release;
  - ``masked``: sent under secure aggregation's masks, unreadable alone;
  - ``unaccounted``: released in a DP run without protection (only on explicit opt-in,
    ``release_unaccounted=``, ``buffers="release"``, or a study step that says so);
  - ``unprotected``: released in a run without DP, where nothing claims otherwise;

* ``unit``: what one epsilon protects. ``hospital`` for client-level DP (whole hospitals
  barely change the output); ``image`` for DP-SGD on MedMNIST, whose records are *images*:
  one patient may have several, and by group privacy ``k`` images of one patient are
  protected at about ``k epsilon`` (exactly, ``k epsilon`` with ``k e^{(k-1) epsilon} delta``);
  ``patient`` only where one record is one patient (UCI heart disease, TCGA-BRCA); ``record``
  when the data do not say.

:meth:`Ledger.summary` totals per hospital and unit: the epsilons of different accountants
(training, threshold selection, any noised metric) are *added* (basic composition). For
image-level DP that is conservative even when the mechanisms saw different images, and it is
what MedMNIST needs, since its splits are by image and one patient may have images in the
training and the validation split.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Release", "Ledger", "STATUSES", "UNITS", "RELEASE_OPTIONS", "relabel"]

STATUSES: tuple[str, ...] = ("dp", "post-processing", "public", "trusted", "masked",
                             "unaccounted", "unprotected")
UNITS: tuple[str, ...] = ("hospital", "image", "patient", "record", "")
#: what ``fl.run(release_unaccounted=...)`` may name: the round's training loss, the test
#: metrics of every evaluation, or any other metric a client reports
RELEASE_OPTIONS: tuple[str, ...] = ("train_loss", "test_metrics", "client_metrics")


@dataclass(frozen=True)
class Release:
    """One quantity released once.

    Attributes:
        round: the round (0: before training; ``-1``: after the run, e.g. a threshold).
        quantity: what it is, e.g. ``"delta"`` (a model update), ``"sum of delta"``,
            ``"train_loss"``, ``"test metrics"``.
        numbers: how many numbers it holds.
        source: ``"hospital"`` or ``"server"``.
        about: the hospitals (ids) whose data it depends on.
        seen_by: who receives it (``server``, ``server (masked)``, ``sampled hospitals``,
            ``everyone``).
        mechanism: how it is protected (``none``, ``secure aggregation``, ``Gaussian``, ...).
        status: one of :data:`STATUSES`.
        unit: one of :data:`UNITS` (for ``dp`` rows).
        sigma: the noise std added to it, in its own units.
        sensitivity: the most one unit can change it (the clip norm, 1 for a count).
        epsilon, delta: the accountant's total after this release.
        accountant: which accountant charges it (``""`` if none).
        note: anything a reader must know (e.g. ``opt-in: release_unaccounted``).
    """

    round: int
    quantity: str
    numbers: int
    source: str
    about: tuple[int, ...]
    seen_by: str
    mechanism: str
    status: str
    unit: str = ""
    sigma: float | None = None
    sensitivity: float | None = None
    epsilon: float | None = None
    delta: float | None = None
    accountant: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {self.unit!r}")
        if self.status == "dp" and (self.epsilon is None or not self.accountant):
            raise ValueError(f"a 'dp' release ({self.quantity!r}) needs its epsilon and the "
                             "accountant that charges it")


def relabel(rows: Iterable[Release], when: Any, **changes: Any) -> list[Release]:
    """``rows`` with ``changes`` applied to those for which ``when(row)`` is true."""
    return [replace(r, **changes) if when(r) else r for r in rows]


class Ledger:
    """The releases of a run (or a study), with hospital names for reading.

    Args:
        names: hospital id -> name, used in the tables.
    """

    def __init__(self, names: Mapping[int, str] | None = None) -> None:
        self.names: dict[int, str] = dict(names or {})
        self.rows: list[Release] = []

    def add(self, *releases: Release) -> None:
        self.rows.extend(releases)

    def extend(self, releases: Iterable[Release]) -> None:
        self.rows.extend(releases)

    def add_study_release(self, quantity: str, about: Sequence[int], *, status: str,
                          mechanism: str, seen_by: str = "everyone", numbers: int = 1,
                          unit: str = "", epsilon: float | None = None,
                          delta: float | None = None, accountant: str = "",
                          sigma: float | None = None, sensitivity: float | None = None,
                          note: str = "", source: str = "server") -> Release:
        """Record a release made outside the training rounds (``round = -1``)."""
        row = Release(-1, quantity, numbers, source, tuple(about), seen_by, mechanism,
                      status, unit, sigma, sensitivity, epsilon, delta, accountant, note)
        self.rows.append(row)
        return row

    def _name(self, cid: int) -> str:
        return self.names.get(cid, f"hospital {cid}")

    # ------------------------------------------------------------------ tables
    def frame(self) -> pd.DataFrame:
        """One row per release, ``about`` written as hospital names."""
        import pandas as pd

        cols = [f for f in Release.__dataclass_fields__]
        rows = []
        for r in self.rows:
            d = asdict(r)
            d["about"] = ", ".join(self._name(c) for c in r.about)
            rows.append(d)
        return pd.DataFrame(rows, columns=cols)

    def compact(self) -> pd.DataFrame:
        """The ledger with rounds and hospitals folded: one row per kind of release.

        Rows that differ only in round, hospital, accountant and epsilon become one, listing
        the rounds (``1-30``), how many hospitals, and the largest epsilon among them.
        """
        import pandas as pd

        keys = ("quantity", "source", "seen_by", "mechanism", "status", "unit")
        groups: dict[tuple, list[Release]] = {}
        for r in self.rows:
            groups.setdefault(tuple(getattr(r, k) for k in keys), []).append(r)
        out = []
        for key, rs in groups.items():
            rounds = sorted({r.round for r in rs})
            eps = [r.epsilon for r in rs if r.epsilon is not None]
            sig = [r.sigma for r in rs if r.sigma is not None]
            hospitals = sorted({c for r in rs for c in r.about})
            out.append({**dict(zip(keys, key, strict=True)),
                        "rounds": _ranges(rounds), "hospitals": len(hospitals),
                        "numbers": max(r.numbers for r in rs),
                        "sigma": max(sig) if sig else None,
                        "max epsilon": max(eps) if eps else None,
                        "note": "; ".join(sorted({r.note for r in rs if r.note}))})
        return pd.DataFrame(out)

    def unaccounted(self) -> list[Release]:
        """Releases of a DP run that no epsilon covers."""
        return [r for r in self.rows if r.status == "unaccounted"]

    def summary(self) -> pd.DataFrame:
        """Per hospital and unit: total epsilon and delta (summed over accountants), the
        accountants, and what was released without an epsilon.

        ``epsilon`` is ``inf`` for a hospital with an ``unprotected`` release (a run without
        DP), and for one with ``unaccounted`` releases it covers only the accounted ones:
        the ``unaccounted`` column lists the rest.
        """
        import pandas as pd

        cids = sorted({c for r in self.rows for c in r.about})
        out = []
        for cid in cids:
            mine = [r for r in self.rows if cid in r.about]
            units = sorted({r.unit for r in mine if r.status == "dp"}) or [""]
            unprotected = sorted({r.quantity for r in mine if r.status == "unprotected"})
            unaccounted = sorted({r.quantity for r in mine if r.status == "unaccounted"})
            trusted = sorted({r.quantity for r in mine if r.status == "trusted"})
            for unit in units:
                per_acc: dict[str, tuple[float, float]] = {}
                for r in mine:
                    if r.status == "dp" and r.unit == unit:
                        e, d = per_acc.get(r.accountant, (0.0, 0.0))
                        per_acc[r.accountant] = (max(e, float(r.epsilon or 0.0)),
                                                 max(d, float(r.delta or 0.0)))
                eps = sum(e for e, _ in per_acc.values()) if per_acc else math.inf
                if unprotected:
                    eps = math.inf
                out.append({"hospital": self._name(cid), "unit": unit or "-",
                            "epsilon": eps, "delta": sum(d for _, d in per_acc.values()),
                            "accountants": ", ".join(sorted(per_acc)) or "-",
                            "trusted server sees": ", ".join(trusted) or "-",
                            "unaccounted": ", ".join(unaccounted) or "-",
                            "unprotected": ", ".join(unprotected) or "-"})
        return pd.DataFrame(out).set_index(["hospital", "unit"]) if out else pd.DataFrame()

    def text(self) -> str:
        """The summary as lines a reader cannot miss, flagging every unaccounted release."""
        summary = self.summary()
        lines = []
        for (hospital, unit), row in summary.iterrows():
            eps = row["epsilon"]
            lines.append(f"{hospital}: epsilon = {eps:.3g} (delta = {row['delta']:.1g}, "
                         f"{unit}-level) from {row['accountants']}"
                         if math.isfinite(eps) else f"{hospital}: no DP (epsilon = inf)")
        flagged = self.unaccounted()
        if flagged:
            kinds = sorted({(r.quantity, r.note) for r in flagged})
            lines.append(f"UNACCOUNTED ({len(flagged)} releases no epsilon covers): "
                         + "; ".join(f"{q}" + (f" [{n}]" if n else "") for q, n in kinds))
        else:
            lines.append("every release is accounted, public or masked"
                         if not any(r.status == "unprotected" for r in self.rows)
                         else "this run has no DP: every release is unprotected")
        return "\n".join(lines)

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"Ledger({len(self.rows)} releases, {len(self.unaccounted())} unaccounted)"


def _ranges(values: Sequence[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``"1-3, 5"``; round ``-1`` is written ``after``."""
    parts, vals = [], [v for v in values if v >= 0]
    start = prev = None
    for v in vals:
        if start is None:
            start = prev = v
        elif v == prev + 1:
            prev = v
        else:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = v
    if start is not None:
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
    if any(v < 0 for v in values):
        parts.append("after")
    return ", ".join(parts)
