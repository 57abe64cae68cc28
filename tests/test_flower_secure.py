"""The secured Flower deployment: TLS from our own CA, and only registered hospitals get in.

Certificates are checked with ``cryptography`` (no processes). The real-process tests share one
SecureFederation (a SuperLink with TLS and SuperNode auth, three registered SuperNodes) and
check: registered hospitals train (bit-identical to the simulation), an unregistered key is
refused, a SuperNode that trusts another CA cannot connect (the TLS error is in its log, and
``--max-retries`` bounds it; Flower logs exit code 305, the process itself exits with 1), a
revoked hospital is dropped and cannot come back, and every
process that was started is stopped.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_public_key

import fedlearn as fl
from fedlearn.errors import ConfigError
from fedlearn.flower import PortInUseError, free_ports, write_partitions
from fedlearn.flower.federation import CONNECTION, live_processes
from fedlearn.flower.runner import max_abs_diff, run_on_federation
from fedlearn.flower.secure_certs import (
    check_readable,
    make_ca,
    make_node_key,
    make_security_files,
)
from fedlearn.flower.secure_federation import SecureFederation

from .flower_helpers import CONFIG, SPEC, _clients


# ---------------------------------------------------------------------- files, no processes
def test_the_ca_signs_a_server_certificate_for_loopback(tmp_path: Path) -> None:
    files = make_security_files(tmp_path, 2)
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    srv = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    srv.verify_directly_issued_by(ca)  # raises if the signature or issuer is wrong
    san = srv.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    other, _ = make_ca(tmp_path / "other", name="someone else")
    with pytest.raises((ValueError, TypeError)):
        srv.verify_directly_issued_by(x509.load_pem_x509_certificate(other.read_bytes()))
    for priv, pub in files.node_keys:
        key = load_ssh_public_key(pub.read_bytes())
        assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
        assert pub.read_text().startswith("ecdsa-sha2-nistp256 ")
        assert priv.stat().st_mode & 0o077 == 0  # private keys readable by the owner only


def test_missing_or_unreadable_files_name_the_file_and_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--ssl-certfile: file '.*nope.pem' does not exist"):
        check_readable(tmp_path / "nope.pem", "--ssl-certfile")
    empty = tmp_path / "empty.key"
    empty.write_text("")
    with pytest.raises(ConfigError, match="--ssl-keyfile: file .*empty.key' is empty"):
        check_readable(empty, "--ssl-keyfile")
    files = make_security_files(tmp_path / "k", 1)
    files.server_key.unlink()
    with pytest.raises(ConfigError, match=r"--ssl-keyfile: file .*server.key"):
        SecureFederation([tmp_path / "p.pt"], tmp_path / "state", security=files)


def test_a_taken_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    a, b = free_ports(2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", a))
        s.listen()
        fed = SecureFederation([tmp_path / "p.pt"], tmp_path / "state", port=a, node_ports=[b])
        with pytest.raises(PortInUseError, match=str(a)):
            fed.start()
        assert fed.groups() == []


# ---------------------------------------------------------------------- real processes
@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureFederation]:
    root = tmp_path_factory.mktemp("flower_secure")
    paths = write_partitions(_clients(), root / "data")
    fed = SecureFederation(paths, root / "state", connect_timeout=240)
    with fed:
        yield fed
    groups = fed.groups()
    assert groups and live_processes(groups) == []  # every process we started is stopped


@pytest.mark.slow
def test_registered_hospitals_train_over_tls(secure: SecureFederation) -> None:
    torch.set_num_threads(1)
    clients = _clients()
    res = run_on_federation(secure, fl.FedAvg(CONFIG), 1, SPEC, seed=0,
                            names=[c.name for c in clients], evaluate="none")
    sim = fl.run(SPEC.build(), clients, fl.FedAvg(CONFIG), rounds=1, seed=0, progress=False,
                 eval_every=0)
    assert sim.final_state is not None
    assert max_abs_diff(res.final_state, sim.final_state) == 0.0  # TLS changes no bit
    assert res.history.rounds_frame()["participants"].tolist() == [[0, 1, 2]]


@pytest.mark.slow
def test_an_unregistered_key_is_refused(secure: SecureFederation, tmp_path: Path) -> None:
    stranger, _ = make_node_key(tmp_path, "stranger")
    secure.start_node("rogue-key", 0, free_ports(1)[0], key=stranger, max_retries=1)
    rc, log = secure.wait_exit("rogue-key")
    assert rc != 0 and "Exit Code: 305" in log and "Failed to activate SuperNode" in log
    link = (secure.logs / "superlink.log").read_text(errors="replace")
    assert "No SuperNode found with the given public key" in link


@pytest.mark.slow
def test_a_supernode_that_trusts_another_ca_cannot_connect(secure: SecureFederation,
                                                            tmp_path: Path) -> None:
    other_ca, _ = make_ca(tmp_path, name="not the consortium")
    secure.start_node("rogue-ca", 0, free_ports(1)[0], ca=other_ca, max_retries=1)
    rc, log = secure.wait_exit("rogue-ca")
    assert rc != 0 and "SSL/TLS handshake error" in log and "CERTIFICATE_VERIFY_FAILED" in log


@pytest.mark.slow
def test_a_revoked_hospital_is_dropped_and_cannot_return(secure: SecureFederation) -> None:
    # runs last in this module: it removes hospital 2 for good
    node_id = secure.node_ids[2]
    secure.unregister_node(2)
    secure.wait_exit("node2")  # the SuperLink drops it at once (it exits 0, "gracefully")
    nodes = secure.flwr("supernode", "ls", CONNECTION)["nodes"]
    assert {int(n["node-id"]): n["status"] for n in nodes}[node_id] == "unregistered"
    secure.start_node("revoked", 2, free_ports(1)[0], max_retries=1)  # same key, again
    rc, log = secure.wait_exit("revoked")
    assert rc != 0 and "Failed to activate SuperNode" in log
    assert secure.online_nodes() == 2
