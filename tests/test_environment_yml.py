"""environment.yml stays a configuration that conda and repo2docker (Binder) can build.

Binder itself cannot be reached offline; this checks the shape repo2docker reads: a named conda
environment with the Python that pyproject.toml supports, pip, and an install of this repository
with its dev extra (repo2docker installs local pip requirements after copying the repository).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_matches_pyproject() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    assert env["name"] == "fedlearn"
    assert env["channels"] == ["conda-forge"]
    deps = env["dependencies"]
    pythons = [d for d in deps if isinstance(d, str) and re.fullmatch(r"python\s*=+\s*[\d.]+", d)]
    assert len(pythons) == 1, deps
    version = pythons[0].split("=")[-1]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == f">={version},<3.{int(version.split('.')[1]) + 1}", (version, requires)
    assert "pip" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert pip == ["-e .[dev]"], pip
