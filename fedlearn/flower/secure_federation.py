"""A Flower federation that lets only registered hospitals in: TLS plus SuperNode auth.

:class:`SecureFederation` starts the same processes as
:class:`~fedlearn.flower.federation.Federation`, with Flower 1.42's own options instead of
``--insecure``:

* SuperLink: ``--ssl-ca-certfile/--ssl-certfile/--ssl-keyfile`` (a certificate from the
  consortium's CA, subjectAltName 127.0.0.1 and localhost) and ``--enable-supernode-auth``;
* each hospital's public key registered with ``flwr supernode register`` (over the TLS
  Control API) before its SuperNode starts; ``flwr supernode unregister`` revokes it, and
  the SuperLink then drops the node at once;
* SuperNodes: ``--root-certificates`` (trust the consortium's CA only) and
  ``--auth-supernode-private-key`` (sign with the hospital's key).

The deprecated ``--auth-list-public-keys`` / ``--auth-supernode-public-key`` are not used.
:meth:`start_node` starts an extra SuperNode with any CA and key, bounded by
``--max-retries`` (by default a SuperNode retries forever), so that refusals can be observed:
its log names the reason (``CERTIFICATE_VERIFY_FAILED`` for a wrong CA; "Failed to
activate SuperNode" for an unregistered key).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import tomli_w

from .federation import CONNECTION, Federation, FederationError, _tail
from .secure_certs import SecurityFiles, check_readable, make_security_files

__all__ = ["SecureFederation"]


class SecureFederation(Federation):
    """:class:`Federation` with TLS and SuperNode authentication (see the module).

    Args:
        data_paths, state_dir, host, port, node_ports, connect_timeout, quiet: as for
            :class:`Federation`.
        security: the CA, server certificate and one key pair per node; ``None`` generates
            them in ``state_dir/keys``.
        register: the nodes whose keys are registered (and started) by :meth:`start`
            (default: all).
    """

    def __init__(self, data_paths: Sequence[str | Path], state_dir: str | Path, *,
                 security: SecurityFiles | None = None, register: Sequence[int] | None = None,
                 **kwargs: object) -> None:
        super().__init__(data_paths, state_dir, **kwargs)  # type: ignore[arg-type]
        if security is None:
            security = make_security_files(self.state_dir / "keys", len(self.data_paths))
        if len(security.node_keys) < len(self.data_paths):
            raise ValueError(f"{len(self.data_paths)} nodes but {len(security.node_keys)} "
                             "key pairs")
        for path, flag in [(security.ca_cert, "--ssl-ca-certfile / --root-certificates"),
                           (security.server_cert, "--ssl-certfile"),
                           (security.server_key, "--ssl-keyfile")]:
            check_readable(path, flag)
        for priv, pub in security.node_keys[:len(self.data_paths)]:
            check_readable(priv, "--auth-supernode-private-key")
            check_readable(pub, "flwr supernode register PUBLIC_KEY")
        self.security = security
        self.registered = list(range(len(self.data_paths))) if register is None \
            else list(register)
        self.node_ids: dict[int, int] = {}

    def _write_cli_config(self) -> None:
        self.flwr_home.mkdir(parents=True, exist_ok=True)
        cfg = {"superlink": {"default": CONNECTION,
                             CONNECTION: {"address": f"{self.host}:{self.port}",
                                          "root-certificates": str(self.security.ca_cert)}}}
        (self.flwr_home / "config.toml").write_text(tomli_w.dumps(cfg))

    # ------------------------------------------------------------------ keys
    def register_node(self, k: int) -> int:
        """Register node ``k``'s public key; return the node id the SuperLink gave it."""
        out = self.flwr("supernode", "register", str(self.security.node_keys[k][1]),
                        CONNECTION)
        self.node_ids[k] = int(out["node-id"])
        return self.node_ids[k]

    def unregister_node(self, k: int) -> None:
        """Revoke node ``k``: the SuperLink forgets its key and drops it if connected."""
        self.flwr("supernode", "unregister", str(self.node_ids.pop(k)), CONNECTION)

    # ------------------------------------------------------------------ processes
    def _node_cmd(self, k: int, port: int, *, ca: Path, key: Path,
                  max_retries: int | None) -> list[str]:
        node_config = f'partition-id={k} num-partitions={len(self.data_paths)} ' \
                      f'data-path="{self.data_paths[k]}"'
        cmd = ["flower-supernode", "--superlink", f"{self.host}:{self.port}",
               "--root-certificates", str(ca), "--auth-supernode-private-key", str(key),
               "--host", self.host, "--port", str(port), "--node-config", node_config]
        if max_retries is not None:
            cmd += ["--max-retries", str(max_retries)]
        return cmd

    def start(self) -> SecureFederation:
        """Start the SuperLink (TLS + auth), register the nodes, start them, wait online."""
        self._check_ports()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._write_cli_config()
        from .federation import _LIVE

        _LIVE.add(self)
        s = self.security
        try:
            self._spawn("superlink", [
                "flower-superlink", "--ssl-ca-certfile", str(s.ca_cert), "--ssl-certfile",
                str(s.server_cert), "--ssl-keyfile", str(s.server_key),
                "--enable-supernode-auth", "--host", self.host, "--port", str(self.port),
                "--disable-runtime-dependency-installation"])
            self._wait_listening("superlink", self.port, deadline=60.0)
            for k in self.registered:
                self.register_node(k)
            for k in self.registered:
                self._spawn(f"node{k}", self._node_cmd(
                    k, self.node_ports[k], ca=s.ca_cert, key=s.node_keys[k][0],
                    max_retries=None))
            self.wait_online(len(self.registered), self.connect_timeout)
        except BaseException:
            self.close()
            raise
        return self

    def start_node(self, name: str, k: int, port: int, *, ca: Path | None = None,
                   key: Path | None = None, max_retries: int = 2) -> None:
        """An extra SuperNode ``name`` for partition ``k`` with any CA and key (default:
        the consortium's and node ``k``'s), giving up after ``max_retries`` retries."""
        self._spawn(name, self._node_cmd(
            k, port, ca=ca or self.security.ca_cert,
            key=key or self.security.node_keys[k][0], max_retries=max_retries))

    def wait_exit(self, name: str, timeout: float = 120.0) -> tuple[int, str]:
        """Wait for process ``name`` to exit; return its exit code and its log."""
        proc = self.procs[name]
        end = time.monotonic() + timeout
        while proc.poll() is None:
            if time.monotonic() > end:
                raise FederationError(f"{name} still running after {timeout:.0f} s; log:\n"
                                      f"{_tail(self.logs / f'{name}.log')}")
            time.sleep(0.5)
        return int(proc.returncode), (self.logs / f"{name}.log").read_text(errors="replace")
