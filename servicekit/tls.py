"""Mutual TLS inside the mesh: the settings, and the key material read from PEM files.

Every process of the mesh has an identity: a certificate (with its chain) and private key,
plus the bundle of CAs it trusts for its peers (during a CA rotation the bundle holds the
old and the new CA). The files are re-read while the process runs (`KeyMaterialWatcher`),
so cert-manager or an operator can replace them without a restart. Material is checked
with the `cryptography` package before anyone uses it: a half-written or unparseable PEM,
a key that does not belong to the certificate, or an expired certificate leaves the
material in force unchanged (and is logged), because handing gRPC a broken key pair would
fail every new connection.

Components serve with it (servicekit.server), the gateway dials with it
(gateway.mesh_channels).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from servicekit.settings import RuleViolation, check_fields, section, setting

log = logging.getLogger("harag.tls")

GATEWAY_IDENTITY = "gateway.harag.internal"
"""The SAN (DNS name) of the gateway's mesh certificate: what components accept by default."""


@dataclass(frozen=True)
class PemPaths:
    """Where an identity's PEM files are. No CA file: trust nobody's client certificates
    (a public server that does not ask for them)."""

    cert_file: str
    key_file: str
    ca_file: str
    reload_interval_s: float


@dataclass(frozen=True)
class TlsFiles:
    """This process's mesh identity: certificate, key and trusted CAs, as PEM files."""

    cert_file: str = setting(
        "",
        "tls_cert_file",
        "PEM certificate (with its chain) this process presents inside the mesh; "
        "empty = plaintext mesh traffic.",
        unit="path",
    )
    key_file: str = setting(
        "", "tls_key_file", "PEM private key of tls_cert_file (unencrypted).", unit="path"
    )
    ca_file: str = setting(
        "",
        "tls_ca_file",
        "PEM bundle of the CAs whose certificates this process trusts for its peers "
        "(holds the old and the new CA during a rotation).",
        unit="path",
    )
    reload_interval_s: float = setting(
        5.0,
        "tls_reload_interval_s",
        "How often the three TLS files are checked for changes (new material is used for "
        "new connections; a broken file keeps the old material).",
        unit="s",
        minimum=0.05,
        maximum=3600,
    )

    def __post_init__(self) -> None:
        check_fields(self)
        given = [bool(self.cert_file), bool(self.key_file), bool(self.ca_file)]
        if any(given) and not all(given):
            raise RuleViolation(
                "{cert_file}, {key_file} and {ca_file} are set together or not at all"
            )

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)

    def paths(self) -> PemPaths:
        return PemPaths(self.cert_file, self.key_file, self.ca_file, self.reload_interval_s)


def _peers_problem(text: str) -> str | None:
    if any(not part.strip() for part in text.split(",")) and text.strip():
        return "an empty entry"
    return None


@dataclass(frozen=True)
class ComponentTls:
    """How a component serves inside the mesh: its identity and whom it accepts."""

    files: TlsFiles = section(TlsFiles)
    require_client_cert: bool = setting(
        True,
        "tls_require_client_cert",
        "With TLS on, refuse a connection whose client presents no certificate signed by a "
        "CA of tls_ca_file.",
    )
    allowed_peers: str = setting(
        GATEWAY_IDENTITY,
        "tls_allowed_peers",
        "Comma-separated identities (a DNS or URI SAN of the client certificate) allowed to "
        "call this component; anyone else gets PERMISSION_DENIED. Empty = any certificate "
        "the CA signed.",
        validate=_peers_problem,
        form="comma-separated SANs, or empty",
    )

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def peers(self) -> frozenset[str]:
        return frozenset(p.strip() for p in self.allowed_peers.split(",") if p.strip())


# -- key material ------------------------------------------------------------------------


class BadKeyMaterial(ValueError):
    """The PEM files do not make a usable identity; the text says which file and why."""


@dataclass(frozen=True)
class KeyMaterial:
    """A checked identity: PEM bytes as gRPC takes them, and what they say."""

    cert_chain: bytes
    private_key: bytes
    trusted_cas: bytes
    subject_names: tuple[str, ...]
    """The leaf certificate's DNS and URI SANs."""
    issuer: str
    not_after: datetime.datetime
    fingerprint: str
    """SHA-256 of the three files' bytes: changes whenever any of them does."""


def check_key_material(
    cert_chain: bytes, private_key: bytes, trusted_cas: bytes, now: datetime.datetime
) -> KeyMaterial:
    """Parses and cross-checks the three PEM blobs; raises BadKeyMaterial."""
    try:
        chain = x509.load_pem_x509_certificates(cert_chain)
    except ValueError as exc:
        raise BadKeyMaterial(f"certificate file: {exc}") from None
    try:
        key: PrivateKeyTypes = serialization.load_pem_private_key(private_key, password=None)
    except (ValueError, TypeError) as exc:
        raise BadKeyMaterial(f"key file: {exc}") from None
    if trusted_cas:  # empty: a server that asks for no client certificate
        try:
            x509.load_pem_x509_certificates(trusted_cas)
        except ValueError as exc:
            raise BadKeyMaterial(f"CA file: {exc}") from None
    leaf = chain[0]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if key.public_key().public_bytes(encoding, public) != leaf.public_key().public_bytes(
        encoding, public
    ):
        raise BadKeyMaterial("key file: the key does not belong to the certificate")
    if leaf.not_valid_after_utc <= now:
        raise BadKeyMaterial(f"certificate file: expired at {leaf.not_valid_after_utc}")
    return KeyMaterial(
        cert_chain=cert_chain,
        private_key=private_key,
        trusted_cas=trusted_cas,
        subject_names=subject_names(leaf),
        issuer=leaf.issuer.rfc4514_string(),
        not_after=leaf.not_valid_after_utc,
        fingerprint=hashlib.sha256(
            cert_chain + b"\0" + private_key + b"\0" + trusted_cas
        ).hexdigest(),
    )


def subject_names(cert: x509.Certificate) -> tuple[str, ...]:
    """The DNS and URI subject alternative names of a certificate."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return (
        *sans.get_values_for_type(x509.DNSName),
        *sans.get_values_for_type(x509.UniformResourceIdentifier),
    )


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def read_key_material(files: PemPaths, now: datetime.datetime | None = None) -> KeyMaterial:
    """Reads and checks the files; raises BadKeyMaterial (also for a missing file)."""
    blobs: list[bytes] = []
    for which, path in (
        ("certificate", files.cert_file),
        ("key", files.key_file),
        ("CA", files.ca_file),
    ):
        if not path:
            blobs.append(b"")
            continue
        try:
            blobs.append(Path(path).read_bytes())
        except OSError as exc:
            raise BadKeyMaterial(f"{which} file {path}: {exc.strerror or exc}") from None
    cert_chain, private_key, trusted_cas = blobs
    return check_key_material(cert_chain, private_key, trusted_cas, now=now or _utc_now())


class KeyMaterialWatcher:
    """The material in force, replaced when `poll` finds the files changed and sound.

    Thread-safe: gRPC's certificate fetcher reads `current` from a core thread. Each
    change bumps `version`, which is how users notice there is something new.
    """

    def __init__(
        self,
        files: PemPaths,
        *,
        read: Callable[[PemPaths], KeyMaterial] = read_key_material,
    ) -> None:
        self.files = files
        self._read = read
        self._lock = threading.Lock()
        self._current = read(files)  # a broken start is an error, not a silent fallback
        self._version = 1
        self._last_rejected = ""
        self._listeners: list[Callable[[KeyMaterial], None]] = []

    @property
    def current(self) -> KeyMaterial:
        with self._lock:
            return self._current

    @property
    def version(self) -> int:
        with self._lock:
            return self._version

    def snapshot(self) -> tuple[int, KeyMaterial]:
        """The version and the material in force, read together."""
        with self._lock:
            return self._version, self._current

    def on_change(self, listener: Callable[[KeyMaterial], None]) -> None:
        self._listeners.append(listener)

    def poll(self) -> bool:
        """Re-reads the files; True when new material took effect."""
        try:
            material = self._read(self.files)
        except BadKeyMaterial as exc:
            # Files are often written one after the other (certificate, then key): say so
            # once per distinct problem, not on every poll while the writer finishes.
            if str(exc) != self._last_rejected:
                self._last_rejected = str(exc)
                log.warning(
                    "TLS files rejected; the previous certificate stays in force",
                    extra={"error": str(exc), "cert_file": self.files.cert_file},
                )
            return False
        self._last_rejected = ""
        with self._lock:
            if material.fingerprint == self._current.fingerprint:
                return False
            self._current = material
            self._version += 1
        log.info(
            "TLS certificate reloaded",
            extra={
                "cert_file": self.files.cert_file,
                "names": list(material.subject_names),
                "issuer": material.issuer,
                "not_after": material.not_after.isoformat(),
            },
        )
        for listener in self._listeners:
            listener(material)
        return True


# -- serving and watching ----------------------------------------------------------------


def server_credentials(
    watcher: KeyMaterialWatcher, require_client_cert: bool
) -> grpc.ServerCredentials:
    """Server credentials that pick up the watcher's newest material on each new connection.

    gRPC asks the fetcher before every handshake (from one of its own threads; this works
    the same on a grpc.aio server, whose handshakes run in gRPC core too). The fetcher hands
    over a configuration only when the material changed since it last did: returning one
    each time would make gRPC rebuild its TLS context for every connection.
    """
    delivered = watcher.version

    def configuration(material: KeyMaterial) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(material.private_key, material.cert_chain)],
            root_certificates=material.trusted_cas or None,
        )

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        nonlocal delivered
        version, material = watcher.snapshot()
        if version == delivered:
            return None
        delivered = version
        return configuration(material)

    # The stubs forget that a fetcher may return None ("unchanged"), which grpcio allows.
    fetcher = cast(Callable[[], grpc.ServerCertificateConfiguration], fetch)
    return grpc.dynamic_ssl_server_credentials(
        configuration(watcher.current), fetcher, require_client_authentication=require_client_cert
    )


def channel_credentials(material: KeyMaterial) -> grpc.ChannelCredentials:
    """A client's credentials from this material: its certificate, and the CAs it trusts."""
    return grpc.ssl_channel_credentials(
        root_certificates=material.trusted_cas,
        private_key=material.private_key,
        certificate_chain=material.cert_chain,
    )


async def watch_files(watcher: KeyMaterialWatcher, interval_s: float) -> None:
    """Polls the watcher's files every `interval_s` until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        # A few small files: read off the event loop all the same, a mount may be slow.
        await asyncio.to_thread(watcher.poll)


class ServerTls:
    """A server's TLS: credentials that follow the files, and the task that watches them."""

    def __init__(self, files: PemPaths, require_client_cert: bool) -> None:
        self.watcher = KeyMaterialWatcher(files)  # raises BadKeyMaterial before serving
        self.require_client_cert = require_client_cert
        self._reloading: asyncio.Task[None] | None = None

    def credentials(self) -> grpc.ServerCredentials:
        return server_credentials(self.watcher, self.require_client_cert)

    def start_reloading(self) -> None:
        self._reloading = asyncio.create_task(
            watch_files(self.watcher, self.watcher.files.reload_interval_s)
        )

    async def stop_reloading(self) -> None:
        if self._reloading is not None:
            self._reloading.cancel()
            await asyncio.gather(self._reloading, return_exceptions=True)
