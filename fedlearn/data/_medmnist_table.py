"""The official MedMNIST v2 2D table (28x28 files), transcribed from ``medmnist.INFO`` 3.0.2.

Kept in its own module so the loader stays readable; ``tests/test_data_medmnist.py`` checks
every row against the ``medmnist`` package when it is installed.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["MedMNISTRow", "MEDMNIST_TABLE"]


class MedMNISTRow(NamedTuple):
    """Task, channels, label names (index = class id), official sizes, md5, licence."""

    task: str
    n_channels: int
    labels: tuple[str, ...]
    n_samples: tuple[int, int, int]
    md5: str
    license: str


_ORGANS = (
    "bladder",
    "femur-left",
    "femur-right",
    "heart",
    "kidney-left",
    "kidney-right",
    "liver",
    "lung-left",
    "lung-right",
    "pancreas",
    "spleen",
)

# One row per official 2D flag: task, channels, label names (index = class id),
# official (train, val, test) sizes, md5 of the 28x28 file, licence.
MEDMNIST_TABLE: dict[str, MedMNISTRow] = {
    "pathmnist": MedMNISTRow(
        "multi-class",
        3,
        (
            "adipose",
            "background",
            "debris",
            "lymphocytes",
            "mucus",
            "smooth muscle",
            "normal colon mucosa",
            "cancer-associated stroma",
            "colorectal adenocarcinoma epithelium",
        ),
        (89996, 10004, 7180),
        "a8b06965200029087d5bd730944a56c1",
        "CC BY 4.0",
    ),
    "chestmnist": MedMNISTRow(
        "multi-label, binary-class",
        1,
        (
            "atelectasis",
            "cardiomegaly",
            "effusion",
            "infiltration",
            "mass",
            "nodule",
            "pneumonia",
            "pneumothorax",
            "consolidation",
            "edema",
            "emphysema",
            "fibrosis",
            "pleural",
            "hernia",
        ),
        (78468, 11219, 22433),
        "02c8a6516a18b556561a56cbdd36c4a8",
        "CC BY 4.0",
    ),
    "dermamnist": MedMNISTRow(
        "multi-class",
        3,
        (
            "actinic keratoses and intraepithelial carcinoma",
            "basal cell carcinoma",
            "benign keratosis-like lesions",
            "dermatofibroma",
            "melanoma",
            "melanocytic nevi",
            "vascular lesions",
        ),
        (7007, 1003, 2005),
        "0744692d530f8e62ec473284d019b0c7",
        "CC BY-NC 4.0",
    ),
    "octmnist": MedMNISTRow(
        "multi-class",
        1,
        ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
        (97477, 10832, 1000),
        "c68d92d5b585d8d81f7112f81e2d0842",
        "CC BY 4.0",
    ),
    "pneumoniamnist": MedMNISTRow(
        "binary-class",
        1,
        ("normal", "pneumonia"),
        (4708, 524, 624),
        "28209eda62fecd6e6a2d98b1501bb15f",
        "CC BY 4.0",
    ),
    "retinamnist": MedMNISTRow(
        "ordinal-regression",
        3,
        ("0", "1", "2", "3", "4"),
        (1080, 120, 400),
        "bd4c0672f1bba3e3a89f0e4e876791e4",
        "CC BY 4.0",
    ),
    "breastmnist": MedMNISTRow(
        "binary-class",
        1,
        ("malignant", "normal, benign"),
        (546, 78, 156),
        "750601b1f35ba3300ea97c75c52ff8f6",
        "CC BY 4.0",
    ),
    "bloodmnist": MedMNISTRow(
        "multi-class",
        3,
        (
            "basophil",
            "eosinophil",
            "erythroblast",
            "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)",
            "lymphocyte",
            "monocyte",
            "neutrophil",
            "platelet",
        ),
        (11959, 1712, 3421),
        "7053d0359d879ad8a5505303e11de1dc",
        "CC BY 4.0",
    ),
    "tissuemnist": MedMNISTRow(
        "multi-class",
        1,
        (
            "Collecting Duct, Connecting Tubule",
            "Distal Convoluted Tubule",
            "Glomerular endothelial cells",
            "Interstitial endothelial cells",
            "Leukocytes",
            "Podocytes",
            "Proximal Tubule Segments",
            "Thick Ascending Limb",
        ),
        (165466, 23640, 47280),
        "ebe78ee8b05294063de985d821c1c34b",
        "CC BY 4.0",
    ),
    "organamnist": MedMNISTRow(
        "multi-class",
        1,
        _ORGANS,
        (34561, 6491, 17778),
        "68e3f8846a6bd62f0c9bf841c0d9eacc",
        "CC BY 4.0",
    ),
    "organcmnist": MedMNISTRow(
        "multi-class",
        1,
        _ORGANS,
        (12975, 2392, 8216),
        "b9ceb9546e10131b32923c5bbeaea2b1",
        "CC BY 4.0",
    ),
    "organsmnist": MedMNISTRow(
        "multi-class",
        1,
        _ORGANS,
        (13932, 2452, 8827),
        "9ab87b696fb54e2a387ebe992d6ed5f1",
        "CC BY 4.0",
    ),
}
