"""The unit of federated data: one site (hospital) with its own train and test split.

Every federated data source in the course (the four heart-disease hospitals, MedMNIST split
across simulated clinics, ...) is handed to the algorithms as a list of ``Site`` objects, so the
training loops never need to know where the data came from.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import TensorDataset

__all__ = ["Site"]


@dataclass(frozen=True, eq=False)
class Site:
    """A named participant holding a local train set and a local test set.

    The test set stays at the site: federated evaluation reports per-site metrics, which is
    how the course exposes that one global model can serve some hospitals worse than others.
    """

    name: str
    train: TensorDataset
    test: TensorDataset

    @property
    def n_train(self) -> int:
        return len(self.train)

    @property
    def n_test(self) -> int:
        return len(self.test)

    def __repr__(self) -> str:
        return f"Site(name={self.name!r}, n_train={self.n_train}, n_test={self.n_test})"
