"""Shared fixtures for the data-loader tests: an isolated data environment, a local HTTP
server (so downloads are exercised for real without internet) and the real-data folder."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

# Under pytest-xdist (``make unit`` runs two workers) each worker gets one of the two cores:
# two workers with two torch threads each would fight over the same cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # subprocesses the tests start


@pytest.fixture
def data_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No FEDLEARN_DATA_DIR, and a private empty cache; returns the cache folder."""
    cache = tmp_path / "cache"
    monkeypatch.delenv("FEDLEARN_DATA_DIR", raising=False)
    monkeypatch.setenv("FEDLEARN_CACHE_DIR", str(cache))
    return cache


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        """Keep test output clean (the default handler logs every request to stderr)."""


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """Serve a fresh folder over http://127.0.0.1:<port>/; yields (folder, base URL)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def real_data_dir() -> Path:
    """The offline copies of the real data sets; skips unless FEDLEARN_DATA_DIR is set."""
    value = os.environ.get("FEDLEARN_DATA_DIR")
    if not value or not Path(value).is_dir():
        pytest.skip("set FEDLEARN_DATA_DIR to the folder holding the real data files")
    return Path(value)
