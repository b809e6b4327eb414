"""A throwaway mesh CA and a certificate per mesh process (ECDSA P-256, 30 days).

`python -m servicekit.mesh_certs DIR` writes `ca.crt` (the bundle every process trusts) and,
for the gateway, each component and an operator identity (the CLI's direct calls to
components), `<name>.crt` and `<name>.key`. It lives in servicekit so every image can run it:
compose's one-shot `certs` service does. `harag certs create DIR` (harag_cli.certs) is the
same for a developer, and `harag up` uses it. Production meshes get their certificates from
cert-manager instead (deploy/k8s/certificates.yaml), with the same identities.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from servicekit.ports import COMPONENT_NAMES

MESH_DOMAIN = "harag.internal"
OPERATOR_IDENTITY = f"operator.{MESH_DOMAIN}"
CA_FILE = "ca.crt"
VALIDITY = datetime.timedelta(days=30)


def identity_of(name: str) -> str:
    """The DNS SAN of a mesh process's certificate: `gateway.harag.internal`, ..."""
    return f"{name}.{MESH_DOMAIN}"


@dataclass(frozen=True)
class Authority:
    """A CA: its certificate and the key that signs with it."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def new_authority(
    common_name: str = "ha-rag mesh CA", now: datetime.datetime | None = None
) -> Authority:
    """A self-signed CA, valid for `VALIDITY` from a minute ago."""
    start = (now or _now()) - datetime.timedelta(minutes=1)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(cert, key)


def issue(
    authority: Authority,
    names: list[str],
    *,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> tuple[bytes, bytes]:
    """A leaf certificate (server and client use) for `names`, as (cert PEM, key PEM).

    The first name is the identity (a DNS SAN); `localhost` and 127.0.0.1 are added so the
    gateway can verify a component it dials on loopback by its address.
    """
    start = not_before or (_now() - datetime.timedelta(minutes=1))
    end = not_after or (start + VALIDITY)
    key = ec.generate_private_key(ec.SECP256R1())
    alternative: list[x509.GeneralName] = [x509.DNSName(n) for n in [*names, "localhost"]]
    alternative.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(authority.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()),
            critical=False,
        )
        .sign(authority.key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def write_private(path: Path, data: bytes) -> None:
    """Writes a file only its owner can read, replacing it in one step (rename), so a
    process reloading it never sees half of it."""
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(partial, path)


def mesh_names() -> list[str]:
    """Every identity the mesh needs a certificate for."""
    return ["gateway", *COMPONENT_NAMES, "operator"]


def create_mesh_certificates(directory: Path, authority: Authority | None = None) -> Authority:
    """Writes ca.crt and a certificate and key per mesh identity into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    authority = authority or new_authority()
    write_private(directory / CA_FILE, authority.pem())
    for name in mesh_names():
        cert, key = issue(authority, [identity_of(name), name])
        write_private(directory / f"{name}.crt", cert)
        write_private(directory / f"{name}.key", key)
    return authority


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m servicekit.mesh_certs DIR", file=sys.stderr)
        return 2
    directory = Path(args[0])
    try:
        authority = create_mesh_certificates(directory)
    except OSError as exc:
        print(f"mesh_certs: cannot write to {directory}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(
        f"mesh_certs: wrote {directory / CA_FILE} (CA, valid until "
        f"{authority.cert.not_valid_after_utc:%Y-%m-%d}) and a certificate and key for "
        + ", ".join(mesh_names())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
