"""The notebooks' hospitals are the same on the official PneumoniaMNIST and on the offline copy.

A learner with a network gets the official file (4,708 training images, 1,214 normal); the
committed outputs were produced on the course's offline copy (3,882, only 388 normal). Every
hospital composition is therefore built from fixed per-class counts that both can supply
(``fedlearn.partition.class_subsample``), and only copy-independent quantities carry
``# NBVAL_CHECK_OUTPUT``.

These tests write a synthetic file of the official shape and class counts, run the cells of
notebooks 03, 04 and 08 that are tagged ``data-construction`` (the imports and every cell that
loads the data or builds hospitals from it) against it, and require that each output-checked
cell prints exactly what the committed notebook printed on the offline copy; they also assert
the quantities the prose quotes (per-class counts, "39 % normal"). The consortium builder of
notebook 07 gets the same check on two synthetic files of both shapes, and its printed table
is compared with the committed one.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

import fedlearn as fl

ROOT = Path(__file__).resolve().parents[1]
TAG = "data-construction"
#: (normal, pneumonia) per split: the official MedMNIST v2 file and the course's offline copy
OFFICIAL = {"train": (1214, 3494), "val": (135, 389), "test": (234, 390)}
OFFLINE = {"train": (388, 3494), "val": (135, 389), "test": (234, 390)}


def write_pneumonia(folder: Path, counts: dict[str, tuple[int, int]], seed: int = 0) -> Path:
    """A PneumoniaMNIST-shaped .npz with these class counts, labels in random order."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, (normal, sick) in counts.items():
        labels = rng.permutation(np.r_[np.zeros(normal), np.ones(sick)]).astype(np.uint8)
        arrays[f"{split}_images"] = rng.integers(0, 256, (labels.size, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = labels[:, None]
    path = folder / "medmnist" / "pneumoniamnist.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def official_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("official")
    write_pneumonia(folder, OFFICIAL)
    return folder


def _stream(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


def run_data_cells(name: str, data_dir: Path) -> tuple[dict, list[tuple[str, str, str]]]:
    """Execute the notebook's tagged cells (IPython magics dropped) with ``data_dir`` as
    ``FEDLEARN_DATA_DIR``; returns the namespace and, per output-checked cell, (first source
    line, printed now, printed in the committed notebook)."""
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and TAG in c.metadata.get("tags", [])]
    assert len(cells) >= 3, f"{name}: expected the setup and data cells tagged {TAG!r}"
    namespace: dict = {"__name__": "__main__"}
    checked = []
    old = {k: os.environ.get(k) for k in ("FEDLEARN_DATA_DIR", "MPLBACKEND")}
    os.environ.update(FEDLEARN_DATA_DIR=str(data_dir), MPLBACKEND="Agg")
    threads = torch.get_num_threads()
    try:
        for cell in cells:
            code = "\n".join(ln for ln in cell.source.splitlines() if not ln.startswith("%"))
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(code, f"<{name} cell {cell.get('id')}>", "exec"), namespace)  # noqa: S102
            if cell.source.startswith("# NBVAL_CHECK_OUTPUT"):
                checked.append((cell.source.splitlines()[1], out.getvalue(), _stream(cell)))
    finally:
        torch.set_num_threads(threads)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        import matplotlib.pyplot as plt
        plt.close("all")
    return namespace, checked


@pytest.mark.parametrize("name", ["03_fedavg_derived", "04_when_hospitals_differ",
                                  "08_from_simulation_to_deployment"])
def test_checked_outputs_are_the_same_on_the_official_file(name: str, official_dir: Path) -> None:
    namespace, checked = run_data_cells(name, official_dir)
    assert checked, f"{name}: no output-checked data cell"
    for first_line, now, committed in checked:
        assert committed, f"{name}: the cell '{first_line}' has no committed output; execute it"
        assert now == committed, (f"{name}: the cell '{first_line}' prints something else on a "
                                  f"file of the official shape:\n{now}\ncommitted:\n{committed}")
    if name == "03_fedavg_derived":
        assert np.bincount(namespace["labels"]).tolist() == [388, 1117]
        assert len(namespace["y_train"]) == 4708  # really the official shape
    if name == "04_when_hospitals_differ":
        y = namespace["y_train"]
        assert np.bincount(y).tolist() == [388, 612]
        assert f"{(y == 0).mean():.0%}" == "39%"
        assert len(namespace["y_all"]) == 4708
    if name == "08_from_simulation_to_deployment":
        assert [c.num_train for c in namespace["clients"]] == [1294, 1294, 1294]
        assert len(namespace["data"].train) == 4708


def test_the_offline_copy_alone_would_have_broken_the_old_recipe(official_dir: Path) -> None:
    """Why fixed counts: "every normal image plus 612 pneumonia" is 66 % normal officially."""
    data = fl.data.load_medmnist("pneumoniamnist", root=official_dir, download=False)
    normal = int((data.train.tensors[1] == 0).sum())
    assert normal == 1214 and round(normal / (normal + 612), 2) == 0.66


def test_consortium_counts_do_not_depend_on_the_copy(tmp_path: Path) -> None:
    """build_consortium(train_class_counts=...) deals out the same per-class counts per hospital
    (train, val and test) whichever file is loaded."""
    tables = []
    for shape in (OFFICIAL, OFFLINE):
        folder = tmp_path / str(len(tables))
        write_pneumonia(folder, shape, seed=len(tables))
        data = fl.data.load_medmnist("pneumoniamnist", root=folder, download=False)
        cons = fl.hospitals.build_consortium(
            data, seed=0,
            train_class_counts=fl.hospitals.CASE_STUDY_TRAIN_COUNTS["pneumoniamnist"])
        tables.append([[np.bincount(getattr(h, s).tensors[1].numpy(), minlength=2).tolist()
                        for s in ("train", "val", "test")] for h in cons.hospitals])
    assert tables[0] == tables[1]
    assert sum(t[0][0] for t in tables[0]) == 388 and sum(t[0][1] for t in tables[0]) == 3494


def test_notebook_07_prints_the_same_hospitals_on_the_official_file(official_dir: Path) -> None:
    """Notebook 07's pneumonia consortium (CASE_STUDY_TRAIN_COUNTS) on a file of the official
    shape prints exactly the table committed from the offline copy."""
    data = fl.data.load_medmnist("pneumoniamnist", root=official_dir, download=False)
    cons = fl.hospitals.build_consortium(
        data, alpha=1.0, seed=0,
        train_class_counts=fl.hospitals.CASE_STUDY_TRAIN_COUNTS["pneumoniamnist"])
    sizes = {s: sum(len(h.split(s)) for h in cons) for s in ("train", "val", "test")}
    printed = f"pneumonia: {sizes}\n{cons.table().to_string()}\n"
    nb = nbformat.read(ROOT / "notebooks" / "07_case_study.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and "CASE_STUDY_TRAIN_COUNTS[ds.flag]"
                in c.source)
    assert cell.source.startswith("# NBVAL_CHECK_OUTPUT")
    assert _stream(cell).startswith(printed), (printed, _stream(cell))
    assert sizes["train"] == 388 + 3494 and len(data.train) == 4708


def test_class_subsample_gives_the_same_label_vector_on_both_copies(tmp_path: Path) -> None:
    vectors = []
    for k, shape in enumerate((OFFICIAL, OFFLINE)):
        path = write_pneumonia(tmp_path / str(k), {"train": shape["train"]}, seed=k)
        y = np.load(path)["train_labels"][:, 0]
        vectors.append(y[fl.partition.class_subsample(y, (388, 1117), seed=0)])
    assert np.array_equal(vectors[0], vectors[1])
    with pytest.raises(ValueError, match=r"counts\[0\] = 389 .* only 388"):
        fl.partition.class_subsample(vectors[1], (389, 10))


def test_provenance_names_the_file_its_md5_and_whether_it_is_official(official_dir: Path) -> None:
    data = fl.data.load_medmnist("pneumoniamnist", root=official_dir, download=False)
    text = data.provenance()
    md5 = fl.data._files.md5sum(data.path)
    assert text.startswith(f"pneumoniamnist.npz: md5 {md5}, NOT the official file")
    assert "28209eda62fecd6e6a2d98b1501bb15f" in text and "4708/524/624" in text
