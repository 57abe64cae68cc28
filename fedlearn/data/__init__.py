"""Verified loaders for the course's real medical data sets.

Each loader finds a local copy (``root`` argument, ``$FEDLEARN_DATA_DIR``, then the cache) or
downloads the publisher's file, checks it, and returns ready-to-train tensors. Any problem
raises a :class:`DataError` subclass whose message names the file and the fix.
"""

from fedlearn.data.errors import (
    ChecksumError,
    CorruptFileError,
    DataError,
    DataNotFoundError,
    SchemaError,
)
from fedlearn.data.heart import HEART_FEATURES, heart_disease_frames, load_heart_disease
from fedlearn.data.medmnist import MEDMNIST_INFO, MedMNIST, MedMNISTInfo, load_medmnist
from fedlearn.data.site import Site
from fedlearn.data.tcga import (
    EmptyRegionError,
    InvalidEventError,
    MissingCovariateError,
    NegativeTimeError,
    SurvivalDataError,
    TcgaBrca,
    load_tcga_brca,
)

__all__ = [
    "Site",
    "load_medmnist",
    "MedMNIST",
    "MedMNISTInfo",
    "MEDMNIST_INFO",
    "load_heart_disease",
    "heart_disease_frames",
    "HEART_FEATURES",
    "load_tcga_brca",
    "TcgaBrca",
    "SurvivalDataError",
    "NegativeTimeError",
    "InvalidEventError",
    "MissingCovariateError",
    "EmptyRegionError",
    "DataError",
    "ChecksumError",
    "CorruptFileError",
    "SchemaError",
    "DataNotFoundError",
]
