"""Start, watch and stop a Flower federation of real processes on this machine.

One ``flower-superlink`` (the coordinator) and one ``flower-supernode`` per hospital, each
a separate process in its own process group, talking over loopback HTTP exactly as they
would across a network (without TLS: ``--insecure``; see notebook 08 for production).

:class:`Federation` is a context manager that guarantees the processes it started are
stopped: on ``close()``, on leaving the ``with`` block, at interpreter exit (``atexit``), and
even if this Python process is killed (each daemon is started through a tiny launcher
that asks Linux to send it SIGTERM when its parent dies). Stopping sends SIGTERM to each
process group, waits, then SIGKILLs what is left.

Run status comes from ``flwr ls --format json``, never from the exit code of
``flwr run --stream``, which is 0 even when the ServerApp failed.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import tomli_w

__all__ = ["Federation", "FederationError", "PortInUseError", "NodesNotConnectedError",
           "RunFailedError", "RunTimeoutError", "free_ports", "port_is_free", "APP_DIR",
           "CONNECTION", "live_processes", "process_tree_groups"]

#: The Flower App (pyproject.toml with [tool.flwr.app]) that ``flwr run`` ships.
APP_DIR = Path(__file__).resolve().parent / "app"
#: Name of the CLI connection written to ``$FLWR_HOME/config.toml``.
CONNECTION = "fedlearn-loopback"
FINISHED = "finished:"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # terminal colour codes

# Runs a command after asking the kernel to SIGTERM it when its parent (this process) dies,
# so a crashed notebook kernel or test runner does not leave daemons behind.
_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))\n"
    "if os.getppid() != int(sys.argv[1]): sys.exit(1)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


class FederationError(RuntimeError):
    """Base class of every error the federation manager raises."""


class PortInUseError(FederationError):
    """A port the federation needs is already taken."""


class NodesNotConnectedError(FederationError):
    """Not every SuperNode came online before the deadline."""


class RunFailedError(FederationError):
    """A run ended as ``finished:failed`` or ``finished:stopped``."""


class RunTimeoutError(FederationError):
    """A run did not finish before its deadline (it has been stopped)."""


def port_is_free(host: str, port: int) -> bool:
    """True if nothing is listening on ``host:port`` (a TIME_WAIT leftover counts as free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct ports the kernel reports free right now (for tests and ``--port 0``)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _process_table() -> dict[int, tuple[int, int, str]]:
    """``pid -> (parent pid, process group, state)`` for every process, from /proc."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        table[int(stat.parent.name)] = (int(fields[1]), int(fields[2]), fields[0])
    return table


def live_processes(groups: Sequence[int]) -> list[int]:
    """Pids of running (not zombie) processes whose process group is in ``groups``.

    Used to check that stopping a federation left nothing behind.
    """
    wanted = set(groups)
    return [pid for pid, (_, pgid, state) in _process_table().items()
            if pgid in wanted and state not in ("Z", "X")]


def process_tree_groups(leaders: Sequence[int]) -> set[int]:
    """Process groups of ``leaders`` and of all their descendants.

    Flower's daemons start children (SuperExec, then ServerApp and ClientApp processes);
    the SuperLink's SuperExec even gets a process group of its own, so signalling the
    leaders' groups alone could miss it.
    """
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    groups, todo = set(leaders), list(leaders)
    while todo:
        pid = todo.pop()
        if pid in table:
            groups.add(table[pid][1])
        todo.extend(children.get(pid, []))
    return groups


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


_LIVE: weakref.WeakSet[Federation] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for fed in list(_LIVE):
        fed.close()


class Federation:
    """One SuperLink and one SuperNode per data file, on ``host``.

    Args:
        data_paths: one partition file per hospital (:func:`~fedlearn.flower.config.
            save_partition`); node ``k`` is given only ``data_paths[k]``.
        state_dir: private folder for ``FLWR_HOME``, logs and the CLI connection.
        port: the SuperLink's port (``None``: a free one).
        node_ports: the SuperNodes' local API ports (``None``: free ones).
        connect_timeout: seconds to wait for every node to be online.
    """

    def __init__(self, data_paths: Sequence[str | Path], state_dir: str | Path, *,
                 host: str = "127.0.0.1", port: int | None = None,
                 node_ports: Sequence[int] | None = None, connect_timeout: float = 180.0,
                 quiet: bool = True) -> None:
        self.data_paths = [Path(p).absolute() for p in data_paths]
        if not self.data_paths:
            raise ValueError("a federation needs at least one node")
        self.state_dir = Path(state_dir).absolute()
        self.host = host
        ports = free_ports(1 + len(self.data_paths), host)
        self.port = port if port else ports[0]
        self.node_ports = list(node_ports) if node_ports else ports[1:]
        if len(self.node_ports) != len(self.data_paths):
            raise ValueError(f"{len(self.data_paths)} nodes but {len(self.node_ports)} ports")
        self.connect_timeout = connect_timeout
        self.quiet = quiet
        self.bin = Path(sys.executable).parent
        self.logs = self.state_dir / "logs"
        self.flwr_home = self.state_dir / "flwr_home"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._killed: list[int] = []  # groups of nodes killed on purpose, swept on close
        self._seen: set[int] = set()  # every process group ever started or swept
        self.env = self._environment()

    # ------------------------------------------------------------------------ lifecycle

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(FLWR_HOME=str(self.flwr_home), FLWR_TELEMETRY_ENABLED="0",
                   FLWR_DISABLE_UPDATE_CHECK="1", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",
                   PATH=f"{self.bin}{os.pathsep}{env.get('PATH', '')}")
        return env

    def _say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    def _spawn(self, name: str, cmd: list[str]) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - owned by the child
        exe = str(self.bin / cmd[0])
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, str(os.getpid()), exe, *cmd[1:]],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
            cwd=self.state_dir, start_new_session=True)
        self._seen.add(self.procs[name].pid)
        log.close()

    def _check_ports(self) -> None:
        taken = [p for p in [self.port, *self.node_ports] if not port_is_free(self.host, p)]
        if taken:
            raise PortInUseError(
                f"port(s) {taken} on {self.host} are already in use (another federation or "
                "service?); choose others (--port / --node-ports, or 0 for free ones)")

    def _write_cli_config(self) -> None:
        self.flwr_home.mkdir(parents=True, exist_ok=True)
        cfg = {"superlink": {"default": CONNECTION,
                             CONNECTION: {"address": f"{self.host}:{self.port}",
                                          "insecure": True}}}
        (self.flwr_home / "config.toml").write_text(tomli_w.dumps(cfg))

    def start(self) -> Federation:
        """Start the SuperLink, then the SuperNodes; return once every node is online."""
        self._check_ports()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._write_cli_config()
        _LIVE.add(self)
        try:
            self._spawn("superlink", ["flower-superlink", "--insecure", "--host", self.host,
                                      "--port", str(self.port),
                                      "--disable-runtime-dependency-installation"])
            self._wait_listening("superlink", self.port, deadline=60.0)
            for k, (path, p) in enumerate(zip(self.data_paths, self.node_ports, strict=True)):
                node_config = f'partition-id={k} num-partitions={len(self.data_paths)} ' \
                              f'data-path="{path}"'
                self._spawn(f"node{k}", ["flower-supernode", "--insecure", "--superlink",
                                         f"{self.host}:{self.port}", "--host", self.host,
                                         "--port", str(p), "--node-config", node_config])
            self.wait_online(len(self.data_paths), self.connect_timeout)
        except BaseException:
            self.close()
            raise
        return self

    def _exited(self, name: str) -> None:
        """Raise a clear error for a daemon that exited on its own."""
        proc = self.procs[name]
        if proc.poll() is None:
            return
        log = _tail(self.logs / f"{name}.log")
        kind = PortInUseError if "address already in use" in log.lower() else FederationError
        raise kind(f"{name} exited with code {proc.returncode}; end of its log "
                   f"({self.logs / (name + '.log')}):\n{log}")

    def _wait_listening(self, name: str, port: int, deadline: float) -> None:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            self._exited(name)
            with contextlib.suppress(OSError), socket.create_connection((self.host, port), 1):
                return
            time.sleep(0.3)
        raise FederationError(f"{name} did not listen on {self.host}:{port} within "
                              f"{deadline:.0f} s; log: {self.logs / (name + '.log')}")

    def close(self, grace: float = 15.0) -> None:
        """Stop every process started here and all their descendants.

        SIGTERM to every process group involved (the daemons shut their children down
        gracefully), up to ``grace`` seconds of waiting, then SIGKILL for what is left.
        """
        procs, self.procs = self.procs, {}
        _LIVE.discard(self)
        groups = process_tree_groups([p.pid for p in procs.values()] + self._killed)
        self._seen.update(groups)
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGTERM)
        end = time.monotonic() + grace
        for proc in procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, end - time.monotonic()))
        while live_processes(list(groups)) and time.monotonic() < end:
            time.sleep(0.2)
        for _ in range(50):
            if not live_processes(list(groups)):
                break
            for pgid in groups:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
            time.sleep(0.1)
        for proc in procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def __enter__(self) -> Federation:
        return self.start() if not self.procs else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def groups(self) -> list[int]:
        """Every process group this federation started or stopped (daemons and their
        children); after :meth:`close`, :func:`live_processes` of these must be empty."""
        return sorted(self._seen)

    def kill_node(self, k: int, sig: int = signal.SIGKILL) -> None:
        """Simulate a hospital going down: signal node ``k``'s whole process group."""
        proc = self.procs.pop(f"node{k}")
        self._killed.append(proc.pid)
        groups = process_tree_groups([proc.pid])
        self._seen.update(groups)
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)
        proc.wait(timeout=30)

    # ---------------------------------------------------------------------------- the CLI

    def flwr(self, *args: str, timeout: float = 120.0) -> Any:
        """Run ``flwr ARGS --format json`` against this federation and parse its answer."""
        cmd = [str(self.bin / "flwr"), *args, "--format", "json"]
        env = {**self.env, "NO_COLOR": "1", "TERM": "dumb"}
        env.pop("FORCE_COLOR", None)  # Jupyter kernels force colours, which breaks the JSON
        out = subprocess.run(cmd, capture_output=True, text=True, env=env,
                             cwd=self.state_dir, timeout=timeout, check=False)
        text = _ANSI.sub("", out.stdout)
        try:
            data = json.loads(text[text.index("{"):])
        except ValueError:
            raise FederationError(f"`flwr {' '.join(args)}` gave no JSON (rc {out.returncode})"
                                  f":\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}") from None
        if not data.get("success", False):
            raise FederationError(f"`flwr {' '.join(args)}` failed: "
                                  f"{data.get('error-message', data)}")
        return data

    def online_nodes(self) -> int:
        nodes = self.flwr("supernode", "ls", CONNECTION)["nodes"]
        return sum(1 for n in nodes if n.get("status") == "online")

    def wait_online(self, n: int, timeout: float) -> None:
        """Wait until ``n`` SuperNodes are online, or raise :class:`NodesNotConnectedError`.

        A node's log says ``SuperNode ID`` once it has registered; only then is the
        (CPU-costly) ``flwr supernode ls`` asked to confirm.
        """
        end = time.monotonic() + timeout
        online = 0
        while time.monotonic() < end:
            for name in list(self.procs):
                self._exited(name)
            registered = sum("SuperNode ID" in _tail(self.logs / f"{name}.log", 10_000)
                             for name in self.procs if name.startswith("node"))
            if registered >= n:
                online = self.online_nodes()
                if online >= n:
                    self._say(f"federation ready: {online} SuperNodes online")
                    return
            time.sleep(1.0)
        logs = "\n".join(f"--- node{k}:\n{_tail(self.logs / f'node{k}.log', 5)}"
                         for k in range(len(self.data_paths)))
        raise NodesNotConnectedError(
            f"only {online} of {n} SuperNodes came online within {timeout:.0f} s "
            f"(SuperLink at {self.host}:{self.port}); node logs:\n{logs}")

    def submit(self, run_config: Mapping[str, Any], app_dir: str | Path = APP_DIR) -> int:
        """Start a run of the app with ``run_config`` (written as TOML); return its id."""
        cfg_path = self.state_dir / f"run-config-{time.time_ns()}.toml"
        cfg_path.write_text(tomli_w.dumps(dict(run_config)))
        data = self.flwr("run", str(app_dir), CONNECTION, "--run-config", str(cfg_path))
        return int(data["run-id"])

    def run_status(self, run_id: int) -> dict[str, Any]:
        return self.flwr("ls", CONNECTION, "--run-id", str(run_id))["runs"][0]

    def stop_run(self, run_id: int) -> None:
        with contextlib.suppress(FederationError, subprocess.TimeoutExpired):
            self.flwr("stop", str(run_id), CONNECTION)

    def wait(self, run_id: int, timeout: float = 1800.0, *, poll: float = 1.0,
             ls_every: float = 15.0, maybe_done: Callable[[], bool] | None = None
             ) -> dict[str, Any]:
        """Block until the run is ``finished:completed``; return its ``flwr ls`` row.

        Each ``flwr`` call starts a Python process (about a CPU-second), which on a small
        machine competes with the federation itself; so the status is read every
        ``ls_every`` seconds, or as soon as the cheap ``maybe_done()`` says it may be over.

        Raises :class:`RunFailedError` (with Flower's status details) if it failed or was
        stopped, and :class:`RunTimeoutError` after ``timeout`` s (the run is stopped first).
        """
        end = time.monotonic() + timeout
        last_ls = -float("inf")
        while True:
            if "superlink" in self.procs:
                self._exited("superlink")
            now = time.monotonic()
            if now - last_ls >= ls_every or (maybe_done is not None and maybe_done()):
                last_ls = now
                row = self.run_status(run_id)
                status = str(row.get("status", ""))
                if status == "finished:completed":
                    return row
                if status.startswith(FINISHED):
                    raise RunFailedError(
                        f"run {run_id} {status}: {row.get('status-details')}; "
                        f"SuperLink log: {self.logs / 'superlink.log'}")
            if now > end:
                self.stop_run(run_id)
                raise RunTimeoutError(f"run {run_id} did not finish within {timeout:.0f} s; "
                                      "stopped it")
            time.sleep(poll)
