"""Test of `make lab`: JupyterLab starts (as root too), prints its URL, answers there, stops.

When the venv's install stamp is up to date, the test runs `make lab` itself (nothing is
reinstalled); otherwise it runs the command the Makefile runs, `python tools/lab.py notebooks/`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.tools_loader import load

lab = load("lab")

ROOT = Path(__file__).resolve().parents[1]
URL_LINE = re.compile(r"Open this URL in your browser: (http://127\.0\.0\.1:\d+/lab\?token=\w+)")
START_TIMEOUT = 180


def test_command_allows_root_exactly_when_root(monkeypatch: pytest.MonkeyPatch) -> None:
    for uid, expected in ((0, True), (1000, False)):
        monkeypatch.setattr(os, "geteuid", lambda uid=uid: uid)
        cmd = lab.lab_command(ROOT / "notebooks", 8899, "abc", [])
        assert ("--allow-root" in cmd) == expected
        assert "--ServerApp.port=8899" in cmd and "--IdentityProvider.token=abc" in cmd


def _lab_command() -> list[str]:
    make = shutil.which("make")
    stamp_fresh = make and subprocess.run(
        [make, "-q", "-C", str(ROOT), ".venv/.installed"], capture_output=True).returncode == 0
    if stamp_fresh:
        return [make, "-C", str(ROOT), "--no-print-directory", "lab"]
    return [sys.executable, str(ROOT / "tools" / "lab.py"), str(ROOT / "notebooks")]


@pytest.mark.slow
def test_lab_serves_its_printed_url_and_stops(tmp_path: Path) -> None:
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTER_CONFIG_DIR=str(tmp_path / "config"))
    env.pop("DISPLAY", None)
    proc = subprocess.Popen(_lab_command(), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    url = None
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                if proc.poll() is not None:
                    break
                continue
            lines.append(line)
            match = URL_LINE.search(line)
            url = match.group(1) if match else None
        assert url, "no URL printed; output:\n" + "".join(lines[-40:])
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200
            assert "JupyterLab" in response.read().decode("utf-8", "replace")
        if os.geteuid() == 0:
            assert not any("Running as root is not recommended" in line for line in lines)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert proc.returncode is not None
