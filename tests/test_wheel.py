"""The path Colab and a `pip install` take: build the sdist and wheel, install the wheel into a
fresh venv outside the checkout (not editable), and run notebook 01 end to end against it.

This catches package data missing from the wheel, files missing from the sdist (the wheel is
built from the unpacked sdist, as `python -m build` does), and dependencies the package imports
but pyproject.toml does not declare. torch and every other dependency come through plain pip
(offline here: the machine's local wheel store resolves the exact torch pin). The build runs
without isolation so that it needs no download of setuptools.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "01_what_is_federated_learning.ipynb"


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, (f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n"
                                  f"{done.stderr[-5000:]}")
    return done


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _package_files() -> set[str]:
    """Files of the package in this checkout that a wheel must carry (no caches)."""
    return {p.relative_to(ROOT).as_posix() for p in (ROOT / "fedlearn").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


@pytest.mark.slow
@pytest.mark.realdata
def test_wheel_in_fresh_venv_runs_notebook_01(tmp_path: Path) -> None:
    if not os.environ.get("FEDLEARN_DATA_DIR"):
        pytest.skip("needs FEDLEARN_DATA_DIR (notebook 01 loads the real heart-disease data)")
    timings: dict[str, float] = {}
    clock = time.monotonic()

    # 1. sdist, then the wheel from the unpacked sdist.
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(ROOT)])
    timings["build"] = time.monotonic() - clock
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    wheels = list(dist.glob(f"fedlearn-{version}-*.whl"))
    sdist = dist / f"fedlearn-{version}.tar.gz"
    assert len(wheels) == 1 and sdist.is_file(), list(dist.iterdir())
    with zipfile.ZipFile(wheels[0]) as whl:
        names = set(whl.namelist())
    missing = sorted(_package_files() - names)
    assert not missing, f"package files missing from the wheel (package data?): {missing}"
    assert not any(n.startswith(("tests/", "notebooks/", "tools/")) for n in names)

    # 2. A fresh venv outside the checkout; the wheel installed as a user would (not editable).
    clock = time.monotonic()
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    py = venv / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "--quiet", str(wheels[0])], timeout=1800)
    timings["install"] = time.monotonic() - clock

    # 3. Notebook 01, top to bottom, in that venv's kernel, from a folder outside the checkout,
    # with no PYTHONPATH: only the installed wheel can provide `fedlearn`. A last cell records
    # where fedlearn was imported from.
    work = tmp_path / "work"
    work.mkdir()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import fedlearn, json; print(json.dumps({'file': fedlearn.__file__}))"))
    nbformat.write(nb, work / NOTEBOOK.name)
    shutil.copyfile(ROOT / "notebooks" / "GLOSSARY.md", work / "GLOSSARY.md")
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
               JUPYTER_PATH=str(venv / "share" / "jupyter"), JUPYTER_DATA_DIR=str(tmp_path / "jd"),
               MPLBACKEND="Agg", OMP_WAIT_POLICY="PASSIVE")
    clock = time.monotonic()
    _run([str(venv / "bin" / "jupyter"), "nbconvert", "--to", "notebook", "--execute",
          "--ExecutePreprocessor.timeout=600", "--ExecutePreprocessor.kernel_name=python3",
          "--output", "executed.ipynb", NOTEBOOK.name], cwd=work, env=env, timeout=1800)
    timings["notebook"] = time.monotonic() - clock
    executed = nbformat.read(work / "executed.ipynb", as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors, errors[0]
    where = json.loads(executed.cells[-1].outputs[0]["text"])["file"]
    assert Path(where).is_relative_to(venv), f"fedlearn came from {where}, not the wheel"

    print(f"\nwheel test: build {timings['build']:.0f} s, install {timings['install']:.0f} s, "
          f"notebook 01 {timings['notebook']:.0f} s; venv {_du(venv) / 2**30:.2f} GiB")
