"""Load the scripts in tools/ (a folder of scripts, not a package) as modules for the tests."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def load(name: str):
    """Import ``tools/<name>.py``; the tools import each other by plain name, as scripts do."""
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    return importlib.import_module(name)
