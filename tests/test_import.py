"""``import fedlearn`` is lean: heavy dependencies load on first use, public names stay put.

Checked in a fresh interpreter (``sys.modules`` of this test process already holds everything
the other tests imported). A test of *what* gets imported, never of how long it takes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import fedlearn as fl

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("pandas", "sklearn", "scipy", "opacus", "flwr", "tenseal", "cryptography", "lifelines",
         "matplotlib")


def _fresh(code: str) -> dict:
    """Run ``code`` in a new interpreter with this checkout first on the path; its JSON output."""
    out = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
                          + code], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_fedlearn_loads_no_heavy_dependency() -> None:
    res = _fresh("import json, fedlearn\n"
                 f"print(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))")
    assert not any(res.values()), f"import fedlearn loaded {[m for m, v in res.items() if v]}"


def test_core_training_path_stays_lean() -> None:
    """Building clients, a model and a strategy and running a round without evaluation (what a
    Flower ClientApp or a vectorised benchmark does) needs none of the heavy packages either."""
    code = (
        "import json, torch, fedlearn as fl\n"
        "from torch.utils.data import TensorDataset\n"
        "g = torch.Generator().manual_seed(0)\n"
        "cs = [fl.Client(i, TensorDataset(torch.randn(8, 3, generator=g),"
        " torch.randint(0, 2, (8,), generator=g))) for i in range(3)]\n"
        "m = fl.make_model('logreg', in_features=3, seed=0)\n"
        "fl.run(m, cs, fl.FedAvg(fl.TrainConfig(batch_size=4)), rounds=1, eval_every=0,"
        " progress=False)\n"
        "fl.run(m, cs, fl.FedAvg(fl.TrainConfig(batch_size=4)), rounds=1, eval_every=0,"
        " progress=False, engine='vectorized')\n"
        "fl.data.load_medmnist\n"
        f"print(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))")
    res = _fresh(code)
    assert not any(res.values()), f"the core path loaded {[m for m, v in res.items() if v]}"


def test_heavy_dependency_loads_on_first_use() -> None:
    res = _fresh("import json, fedlearn as fl\n"
                 "before = 'sklearn' in sys.modules\n"
                 "fl.classification_metrics([0, 1], [[0.9, 0.1], [0.2, 0.8]])\n"
                 "print(json.dumps({'before': before, 'after': 'sklearn' in sys.modules}))")
    assert res == {"before": False, "after": True}


@pytest.mark.parametrize("name", fl.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(fl, name) is not None
    assert name in dir(fl)


def test_every_lazy_module_exists_and_is_listed() -> None:
    import importlib.util

    for mod in fl._EXPORTS:
        assert importlib.util.find_spec(f"fedlearn.{mod}") is not None, mod
        assert mod in dir(fl), mod
    for sub in ("privacy", "secagg", "flower", "algorithms", "data"):
        assert sub in dir(fl)


def test_public_names_are_the_defining_objects() -> None:
    from fedlearn.client import Client
    from fedlearn.data.medmnist import load_medmnist
    from fedlearn.simulation import run

    assert fl.run is run and fl.Client is Client and fl.data.load_medmnist is load_medmnist
    assert fl.data.__all__ and all(hasattr(fl.data, n) for n in fl.data.__all__)


def test_unknown_attribute_names_the_module() -> None:
    with pytest.raises(AttributeError, match="fedlearn.*no_such_thing"):
        fl.no_such_thing  # noqa: B018
    with pytest.raises(AttributeError, match="fedlearn.data.*no_such_loader"):
        fl.data.no_such_loader  # noqa: B018
