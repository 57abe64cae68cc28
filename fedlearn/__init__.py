"""fedlearn: the small, tested federated-learning package behind the course.

Typical use::

    import fedlearn as fl
    sites = fl.data.load_heart_disease()
    clients = fl.clients_from_sites(sites)
    model = fl.make_model("logreg", in_features=13, seed=0)
    hist = fl.run(model, clients, fl.FedAvg(fl.TrainConfig(steps=100, batch_size=4)), rounds=15)
    hist.final("accuracy")

Why the imports below are lazy: ``import fedlearn`` used to cost about 0.8 s and 120 MB on top
of torch, because History tables need pandas, the metrics scikit-learn (which pulls in scipy)
and the subpackages Opacus, cryptography, Flower and TenSEAL. A Flower ClientApp pays that
start-up for every message, and a notebook that only trains pays it too. So nothing is imported
here: every submodule, and every name re-exported from one, is imported the first time it is
used (PEP 562 module ``__getattr__``), and heavy third-party packages are imported inside the
functions that need them. ``fl.X`` works exactly as before; ``dir(fl)`` and ``__all__`` list
the same names, so tab completion still offers them.

To add a module, add ONE line to ``_EXPORTS``: its name and the names it lends to ``fl.``
(an empty tuple makes it reachable as ``fl.<module>`` only).
"""

from __future__ import annotations

import importlib as _importlib
from typing import Any as _Any

__version__ = "0.1.0"

# module (relative to this package) -> the public names it re-exports as ``fl.<name>``
_EXPORTS: dict[str, tuple[str, ...]] = {
    "aggregate": ("apply_delta", "fedavg_delta", "weighted_mean"),
    "client": ("Client", "LocalHook", "TrainConfig", "clients_from_partition",
               "clients_from_sites", "local_train", "predict_proba"),
    "history": ("History",),
    "metrics": ("classification_metrics", "evaluate"),
    "models": ("MLP", "LogisticRegression", "SmallCNN", "make_model", "num_parameters"),
    "simulation": ("evaluate_clients", "run", "sample_clients"),
    "strategy": ("ClientInstruction", "FedAvg", "FedSGD", "Strategy", "StrategyWrapper"),
    "update": ("ClientUpdate", "InvalidUpdateError"),
    "utils": ("seed_everything",),
    "engine": ("SequentialEngine", "EngineUnsupportedError"),
    "vectorized": ("VectorizedEngine",),
    "errors": ("ConfigError",),
    "ledger": ("Ledger", "Release"),
    "run_ledger": (),
    "aggregators": (),
    "data": (),
    "partition": (),
    "algorithms": (),
    "attacks": (),
    "augment": (),
    "calibration": (),
    "checkpoint": (),
    "compression": (),
    "crosssite": (),
    "exercises": (),
    "flower": (),
    "hospitals": (),
    "privacy": (),
    "report": (),
    "secagg": (),
    "study": (),
    "survival": (),
    "system": (),
    "validation": (),
    "evaluation": (),
    "splits": (),
    "tuning": (),
}

# modules that ``from fedlearn import *`` also binds (kept as before: these three only, so a
# star import never pulls in Opacus, Flower or cryptography)
_STAR_MODULES = ("aggregate", "data", "partition")

_ORIGIN: dict[str, str] = {name: mod for mod, names in _EXPORTS.items() for name in names}

__all__ = [*_STAR_MODULES, *_ORIGIN]


def __getattr__(name: str) -> _Any:
    """Import the submodule ``name``, or the module that defines ``name``, on first use."""
    if name in _EXPORTS:
        value: _Any = _importlib.import_module(f"{__name__}.{name}")
    elif name in _ORIGIN:
        value = getattr(_importlib.import_module(f"{__name__}.{_ORIGIN[name]}"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | set(_ORIGIN))
