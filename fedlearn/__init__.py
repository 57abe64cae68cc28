"""fedlearn: the small, tested federated-learning package behind the course.

Typical use::

    import fedlearn as fl
    sites = fl.data.load_heart_disease()
    clients = fl.clients_from_sites(sites)
    model = fl.make_model("logreg", in_features=13, seed=0)
    hist = fl.run(model, clients, fl.FedAvg(fl.TrainConfig(steps=100, batch_size=4)), rounds=15)
    hist.final("accuracy")
"""

from . import aggregate, aggregators, data, partition
from .aggregate import apply_delta, fedavg_delta, weighted_mean
from .client import (
    Client,
    LocalHook,
    TrainConfig,
    clients_from_partition,
    clients_from_sites,
    local_train,
    predict_proba,
)
from .history import History
from .metrics import classification_metrics, evaluate
from .models import MLP, LogisticRegression, SmallCNN, make_model, num_parameters
from .simulation import evaluate_clients, run, sample_clients
from .strategy import ClientInstruction, FedAvg, FedSGD, Strategy, StrategyWrapper
from .update import ClientUpdate, InvalidUpdateError
from .utils import seed_everything

__version__ = "0.1.0"

__all__ = [
    "aggregate", "aggregators", "data", "partition",
    "apply_delta", "fedavg_delta", "weighted_mean",
    "Client", "LocalHook", "TrainConfig", "clients_from_partition", "clients_from_sites",
    "local_train", "predict_proba",
    "History", "classification_metrics", "evaluate",
    "MLP", "LogisticRegression", "SmallCNN", "make_model", "num_parameters",
    "evaluate_clients", "run", "sample_clients",
    "ClientInstruction", "FedAvg", "FedSGD", "Strategy", "StrategyWrapper",
    "ClientUpdate", "InvalidUpdateError", "seed_everything",
]
