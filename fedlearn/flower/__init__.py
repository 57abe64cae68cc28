"""Run fedlearn's clients and strategies as real processes with Flower (flwr 1.42).

The simulation (:func:`fedlearn.run`) keeps every hospital in one Python process. Here each
hospital is a Flower *SuperNode* reading only its own data file, the coordinator is a
*SuperLink*, and they exchange weights over the network (loopback on one machine)::

    from fedlearn.flower import ModelSpec, run_flower
    res = run_flower(clients, fl.FedAvg(cfg), rounds=2,
                     model=ModelSpec("logreg", {"in_features": 13}, seed=0))
    res.history.final_state   # equal to fl.run(...)'s final weights, bit for bit

From a shell: ``python -m fedlearn.flower run --nodes 3 --rounds 2`` (``--help`` for more).

Modules: :mod:`.config` (what travels), :mod:`.client_app` / :mod:`.server_app` /
:mod:`.secure` (the Flower app; imported by Flower's processes), :mod:`.federation`
(processes), :mod:`.runner` (experiments). ``app/`` is the Flower App project.
"""

from .config import (
    DPOptions,
    ModelSpec,
    RemoteClient,
    SecAggOptions,
    load_partition,
    save_partition,
)
from .federation import (
    APP_DIR,
    Federation,
    FederationError,
    NodesNotConnectedError,
    PortInUseError,
    RunFailedError,
    RunTimeoutError,
    free_ports,
)
from .runner import FlowerResult, max_abs_diff, run_flower, run_on_federation, write_partitions

__all__ = [
    "ModelSpec", "SecAggOptions", "DPOptions", "RemoteClient", "save_partition", "load_partition",
    "APP_DIR", "Federation", "FederationError", "NodesNotConnectedError", "PortInUseError",
    "RunFailedError", "RunTimeoutError", "free_ports",
    "FlowerResult", "run_flower", "run_on_federation", "write_partitions", "max_abs_diff",
]
