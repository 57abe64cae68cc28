"""The path Colab and a `pip install` take: build the sdist and wheel, install the wheel into a
fresh venv outside the checkout (not editable), and run notebook 01 end to end against it.

This catches package data missing from the wheel, files missing from the sdist (the wheel is
built from the unpacked sdist, as `python -m build` does), and dependencies the package imports
but pyproject.toml does not declare. The build runs without isolation so that it needs no
download of setuptools.

Every dependency is installed into the fresh venv by plain pip from the wheel's metadata, except,
by default, the torch stack: pip resolves the exact pin to the CUDA build here, 5.3 GB of
torch, triton and nvidia libraries that take most of ten minutes to unpack. By default the venv
therefore sees the test interpreter's own torch, torchvision, triton and nvidia packages (and
nothing else) through a folder of symlinks named in a .pth file; pip finds them installed and
installs everything else. ``FEDLEARN_WHEEL_TORCH=pip`` installs torch by pip as well (measured:
about 11 min wall and 6.3 GB on the busy 2-core machine).
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


# The big binary packages shared with the venv by default (torch and what its wheel pulls in).
_TORCH_STACK = ("torch", "functorch", "torchgen", "torchvision", "triton", "nvidia")


def _share_torch_stack(venv: Path, folder: Path) -> None:
    """Make the venv see this interpreter's torch stack, and only that, via a .pth file."""
    import torch

    site = Path(torch.__file__).resolve().parents[1]
    folder.mkdir()
    for entry in site.iterdir():
        name = entry.name.lower().replace("-", "_")
        if name.startswith(_TORCH_STACK):
            (folder / entry.name).symlink_to(entry)
    venv_site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    (venv_site / "site-packages" / "_shared_torch_stack.pth").write_text(f"{folder}\n")


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
    # No PYTHONPATH anywhere below: with the checkout on it (and the fedlearn.egg-info that
    # building the sdist leaves there) pip would think fedlearn is installed already.
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    clock = time.monotonic()
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    if os.environ.get("FEDLEARN_WHEEL_TORCH") != "pip":
        _share_torch_stack(venv, tmp_path / "shared-torch-stack")
    py = venv / "bin" / "python"
    try:
        # --no-compile: byte-compiling a gigabyte of dependencies costs minutes on 2 cores and
        # proves nothing here (the notebook compiles what it imports).
        _run([str(py), "-m", "pip", "install", "--quiet", "--no-compile", str(wheels[0])],
             timeout=1800, env=env, cwd=tmp_path)
        timings["install"] = time.monotonic() - clock
        _run_notebook(tmp_path, venv, env, timings)
    finally:
        size = _du(venv)
        shutil.rmtree(venv, ignore_errors=True)  # gigabytes: do not leave them in /tmp
    print(f"\nwheel test: build {timings['build']:.0f} s, install {timings.get('install', 0):.0f} "
          f"s, notebook 01 {timings.get('notebook', 0):.0f} s; venv {size / 2**30:.2f} GiB")


def _run_notebook(tmp_path: Path, venv: Path, env: dict, timings: dict) -> None:
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
    env = dict(env)
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
