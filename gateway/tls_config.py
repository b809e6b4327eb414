"""The gateway's TLS settings: its identity inside the mesh, and TLS on its public port."""

from __future__ import annotations

from dataclasses import dataclass

from servicekit.settings import RuleViolation, check_fields, section, setting
from servicekit.tls import PemPaths, TlsFiles


@dataclass(frozen=True)
class PublicTls:
    """TLS on the public port (RagGatewayService and admin), separate from the mesh's."""

    cert_file: str = setting(
        "",
        "public_tls_cert_file",
        "PEM certificate (with chain) served on the public port; empty = plaintext.",
        unit="path",
    )
    key_file: str = setting(
        "", "public_tls_key_file", "PEM private key of public_tls_cert_file.", unit="path"
    )
    client_ca_file: str = setting(
        "",
        "public_tls_client_ca_file",
        "PEM bundle of CAs whose client certificates the public port requires; "
        "empty = clients need no certificate.",
        unit="path",
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if bool(self.cert_file) != bool(self.key_file):
            raise RuleViolation("{cert_file} and {key_file} are set together or not at all")
        if self.client_ca_file and not self.cert_file:
            raise RuleViolation("{client_ca_file} needs {cert_file}")

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)


@dataclass(frozen=True)
class GatewayTls:
    """The gateway's certificates: for dialing components, and for its own callers."""

    mesh: TlsFiles = section(TlsFiles)
    server_name: str = setting(
        "",
        "tls_server_name",
        "Name every component's certificate must carry, checked instead of the host of its "
        "address (grpc.ssl_target_name_override); empty = the address's host.",
    )
    public: PublicTls = section(PublicTls)

    def __post_init__(self) -> None:
        check_fields(self)

    def public_paths(self) -> PemPaths:
        """The public port's files, re-read as often as the mesh's."""
        public = self.public
        return PemPaths(
            public.cert_file, public.key_file, public.client_ca_file, self.mesh.reload_interval_s
        )
