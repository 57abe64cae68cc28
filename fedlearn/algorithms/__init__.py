"""Federated algorithms for heterogeneous hospitals, one small file each.

Every algorithm is a :class:`~fedlearn.Strategy` over the core, changing one thing:

* what clients optimise, through a :class:`~fedlearn.LocalHook`:
  :class:`FedProx` (proximal term), :class:`Scaffold` (control variates),
  :class:`FedBN` (batch-norm layers stay local);
* how the server combines updates: :class:`FedNova` (normalised averaging);
* which hospitals train: :class:`Cyclic` (one per round, the model passed along);
* what each hospital keeps for itself (personalisation, :mod:`.personal`):
  :class:`FineTune`, :class:`FedPer`, :class:`FedRep`, :class:`FendaFL`, :class:`Ditto`,
  :class:`APFL`;
* how the server applies them: :class:`FedAvgM` (momentum), :class:`FedAdam`,
  :class:`FedYogi`, :class:`FedAdagrad` (adaptive server optimisers).
"""

from .cyclic import Cyclic
from .fedbn import FedBN, FedBNHook, batchnorm_keys
from .fednova import FedNova, normalizing_steps
from .fedopt import FedAdagrad, FedAdam, FedAvgM, FedOpt, FedYogi
from .fedprox import FedProx, ProximalHook
from .personal import FineTune, PersonalStrategy, split_keys
from .personal_apfl import APFL
from .personal_ditto import Ditto
from .personal_layers import FedPer, FedRep, FendaFL, FendaNet
from .scaffold import Scaffold, ScaffoldHook

__all__ = [
    "Cyclic",
    "FedBN", "FedBNHook", "batchnorm_keys",
    "FedNova", "normalizing_steps",
    "FedAdagrad", "FedAdam", "FedAvgM", "FedOpt", "FedYogi",
    "FedProx", "ProximalHook",
    "Scaffold", "ScaffoldHook",
    "FineTune", "PersonalStrategy", "split_keys", "APFL", "Ditto",
    "FedPer", "FedRep", "FendaFL", "FendaNet",
]
