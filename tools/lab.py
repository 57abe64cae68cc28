"""Start JupyterLab on the course notebooks and print the one URL to open (``make lab``).

* As root (a container, a cloud VM) Jupyter refuses to start without ``--allow-root``; this
  passes it, so ``make lab`` works for everyone.
* It picks a free port (8888 when free), sets a random access token, waits until the server
  answers and then prints ``Open this URL: http://127.0.0.1:PORT/lab?token=...`` on its own
  line, instead of leaving the learner to find it in Jupyter's log.
* Without a display (a container, SSH) no browser is opened.

Usage::

    python tools/lab.py notebooks/                     # what `make lab` runs
    python tools/lab.py notebooks/ --port 9000 -- --ip=0.0.0.0   # extra arguments go to Jupyter

Ctrl-C stops the server.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_PORT = 8888
STARTUP_TIMEOUT = 120.0


def free_port(preferred: int = DEFAULT_PORT) -> int:
    """``preferred`` if nothing listens on it on 127.0.0.1, else a port the OS picks."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError("no free TCP port on 127.0.0.1")


def lab_command(notebook_dir: Path, port: int, token: str, extra: list[str]) -> list[str]:
    """The ``jupyter lab`` command line, with ``--allow-root`` when running as root."""
    jupyter = Path(sys.executable).with_name("jupyter")
    cmd = [str(jupyter) if jupyter.is_file() else "jupyter", "lab", str(notebook_dir),
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")):
        cmd.append("--no-browser")
    return [*cmd, *extra]


def wait_until_up(url: str, proc: subprocess.Popen, timeout: float = STARTUP_TIMEOUT) -> None:
    """Return once ``url`` answers HTTP 200; raise if the server exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with status {proc.returncode} before "
                               "serving; see its messages above")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"jupyter lab did not answer on {url} within {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook_dir", type=Path, nargs="?", default=Path("notebooks"))
    parser.add_argument("--port", type=int, default=None,
                        help=f"port to serve on (default: {DEFAULT_PORT}, or a free one)")
    parser.add_argument("extra", nargs="*", help="arguments passed on to `jupyter lab` "
                        "(after --)")
    args = parser.parse_args(argv)
    if not args.notebook_dir.is_dir():
        parser.error(f"notebook folder {args.notebook_dir} does not exist")

    port = args.port or free_port()
    token = secrets.token_hex(24)
    url = f"http://127.0.0.1:{port}/lab?token={token}"
    proc = subprocess.Popen(lab_command(args.notebook_dir, port, token, args.extra))
    try:
        wait_until_up(url, proc)
        print(f"\n    Open this URL in your browser: {url}\n    (Ctrl-C stops JupyterLab)\n",
              flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    sys.exit(main())
