"""The keys and certificates of a consortium that lets only registered hospitals in.

Two separate questions, two mechanisms of Flower 1.42:

* **Is this really our SuperLink, and can anyone read the traffic?** TLS. The consortium runs
  its own certificate authority (CA); the SuperLink presents a certificate signed by it
  (``--ssl-ca-certfile/--ssl-certfile/--ssl-keyfile``), whose subjectAltName names the
  addresses hospitals dial (here ``127.0.0.1`` and ``localhost``), and every SuperNode trusts
  that CA only (``--root-certificates``).
* **Is this hospital one of ours?** SuperNode authentication. Each hospital holds an ECDSA
  private key on a NIST curve (P-256 here) in OpenSSH format (``--auth-supernode-private-key``);
  the consortium registers its public key with ``flwr supernode register`` and removes it with
  ``flwr supernode unregister``; the SuperLink (``--enable-supernode-auth``) refuses any other
  key.

Everything is generated with ``cryptography`` into one folder. In a real consortium the CA key
never sits next to the others (an offline machine or an HSM), and each hospital generates its
own private key and sends only the public one.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

__all__ = ["SecurityFiles", "make_ca", "make_server_certificate", "make_node_key",
           "make_security_files", "check_readable"]


def _write(path: Path, data: bytes, private: bool = False) -> Path:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)
    return path


def make_ca(folder: str | Path, name: str = "fedlearn consortium CA", days: int = 30,
            stem: str = "ca") -> tuple[Path, Path]:
    """A self-signed CA certificate and its key (``{stem}.crt``, ``{stem}.key``, PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    crt = _write(folder / f"{stem}.crt", cert.public_bytes(serialization.Encoding.PEM))
    k = _write(folder / f"{stem}.key", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()), private=True)
    return crt, k


def make_server_certificate(folder: str | Path, ca_cert: Path, ca_key: Path,
                            hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
                            days: int = 30) -> tuple[Path, Path]:
    """The SuperLink's certificate, signed by the CA, with ``hosts`` as subjectAltName."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = Path(folder)
    ca = x509.load_pem_x509_certificate(check_readable(ca_cert, "--ssl-ca-certfile"))
    ca_k = serialization.load_pem_private_key(check_readable(ca_key, "CA key"), None)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_k, hashes.SHA256()))  # type: ignore[arg-type]
    crt = _write(folder / "server.pem", cert.public_bytes(serialization.Encoding.PEM))
    k = _write(folder / "server.key", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()), private=True)
    return crt, k


def make_node_key(folder: str | Path, name: str) -> tuple[Path, Path]:
    """A hospital's ECDSA P-256 key pair in OpenSSH format (``name``, ``name.pub``)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    folder = Path(folder)
    key = ec.generate_private_key(ec.SECP256R1())
    priv = _write(folder / name, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption()), private=True)
    pub = _write(folder / f"{name}.pub", key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH))
    return priv, pub


@dataclass(frozen=True)
class SecurityFiles:
    """Where a consortium's TLS and authentication files are."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    node_keys: tuple[tuple[Path, Path], ...]  # (private, public) per hospital


def make_security_files(folder: str | Path, num_nodes: int) -> SecurityFiles:
    """A CA, the SuperLink's certificate and one key pair per hospital, in ``folder``."""
    folder = Path(folder)
    ca, ca_key = make_ca(folder)
    crt, key = make_server_certificate(folder, ca, ca_key)
    nodes = tuple(make_node_key(folder, f"node{k}_key") for k in range(num_nodes))
    return SecurityFiles(ca, ca_key, crt, key, nodes)


def check_readable(path: str | Path, flag: str) -> bytes:
    """The bytes of ``path``, or a ConfigError naming the file and the flag it is for."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{flag}: file {str(p)!r} does not exist; create it (e.g. "
                          "make_security_files) or pass the right path") from None
    except OSError as err:
        raise ConfigError(f"{flag}: cannot read {str(p)!r} ({err.strerror}); check its "
                          "permissions") from None
    if not data.strip():
        raise ConfigError(f"{flag}: file {str(p)!r} is empty")
    return data
