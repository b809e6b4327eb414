"""Reading and reloading the mesh's PEM files: what is taken, what keeps the old material."""

from __future__ import annotations

import datetime
from pathlib import Path

import grpc
import pytest

from gateway.mesh_channels import ChannelFactory, ChannelRenewal
from harag_cli.certs import (
    CA_FILE,
    certificates_usable,
    create_mesh_certificates,
    ensure_mesh_certificates,
    identity_of,
    issue,
    new_authority,
    write_private,
)
from servicekit.settings import RuleViolation
from servicekit.tls import (
    GATEWAY_IDENTITY,
    BadKeyMaterial,
    ComponentTls,
    KeyMaterialWatcher,
    PemPaths,
    TlsFiles,
    check_key_material,
)

NOW = datetime.datetime.now(datetime.UTC)


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    create_mesh_certificates(tmp_path)
    return tmp_path


def paths(certs: Path, name: str = "gateway") -> PemPaths:
    return PemPaths(
        str(certs / f"{name}.crt"), str(certs / f"{name}.key"), str(certs / CA_FILE), 0.1
    )


def blobs(certs: Path, name: str = "gateway") -> tuple[bytes, bytes, bytes]:
    return (
        (certs / f"{name}.crt").read_bytes(),
        (certs / f"{name}.key").read_bytes(),
        (certs / CA_FILE).read_bytes(),
    )


def test_sound_material_names_its_identity(certs: Path) -> None:
    material = check_key_material(*blobs(certs), now=NOW)
    assert GATEWAY_IDENTITY == identity_of("gateway")
    assert GATEWAY_IDENTITY in material.subject_names
    assert material.issuer == "CN=ha-rag mesh CA"


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_certificate_is_rejected(certs: Path, cut: float) -> None:
    cert, key, ca = blobs(certs)
    with pytest.raises(BadKeyMaterial, match="certificate file"):
        check_key_material(cert[: int(len(cert) * cut)], key, ca, now=NOW)


def test_key_of_another_certificate_is_rejected(certs: Path) -> None:
    cert, _, ca = blobs(certs)
    other_key = (certs / "embedder-primary.key").read_bytes()
    with pytest.raises(BadKeyMaterial, match="does not belong"):
        check_key_material(cert, other_key, ca, now=NOW)


def test_expired_certificate_is_rejected(certs: Path) -> None:
    _, _, ca = blobs(certs)
    authority = new_authority()
    cert, key = issue(
        authority,
        ["x"],
        not_before=NOW - datetime.timedelta(days=3),
        not_after=NOW - datetime.timedelta(days=1),
    )
    with pytest.raises(BadKeyMaterial, match="expired"):
        check_key_material(cert, key, ca, now=NOW)


def test_missing_file_is_named(certs: Path) -> None:
    watcher_paths = PemPaths(str(certs / "nope.crt"), "", str(certs / CA_FILE), 1.0)
    with pytest.raises(BadKeyMaterial, match=r"nope\.crt"):
        KeyMaterialWatcher(watcher_paths)


def test_unchanged_files_are_not_a_reload(certs: Path) -> None:
    watcher = KeyMaterialWatcher(paths(certs))
    assert watcher.poll() is False
    assert watcher.version == 1


def test_replaced_files_take_effect_and_are_announced(certs: Path) -> None:
    watcher = KeyMaterialWatcher(paths(certs))
    heard: list[str] = []
    watcher.on_change(lambda material: heard.append(material.issuer))
    authority = new_authority("second CA")
    cert, key = issue(authority, [GATEWAY_IDENTITY])
    write_private(certs / "gateway.crt", cert)
    write_private(certs / "gateway.key", key)
    assert watcher.poll() is True
    assert watcher.version == 2
    assert watcher.current.cert_chain == cert
    assert heard == ["CN=second CA"]


def test_half_written_pem_keeps_the_old_material_until_complete(certs: Path) -> None:
    watcher = KeyMaterialWatcher(paths(certs))
    before = watcher.current
    authority = new_authority("second CA")
    cert, key = issue(authority, [GATEWAY_IDENTITY])
    (certs / "gateway.crt").write_bytes(cert[: len(cert) // 2])  # the writer is mid-file
    assert watcher.poll() is False
    assert watcher.current is before and watcher.version == 1
    (certs / "gateway.crt").write_bytes(cert)  # certificate done, key still the old one
    assert watcher.poll() is False
    assert watcher.current is before
    (certs / "gateway.key").write_bytes(key)
    assert watcher.poll() is True
    assert watcher.current.cert_chain == cert


def test_tls_files_are_set_together() -> None:
    with pytest.raises(RuleViolation, match="together"):
        TlsFiles(cert_file="a.crt")
    assert not TlsFiles().enabled
    assert TlsFiles(cert_file="a", key_file="b", ca_file="c").enabled


def test_allowed_peers_default_to_the_gateway() -> None:
    assert ComponentTls().peers == {GATEWAY_IDENTITY}
    assert ComponentTls(allowed_peers="a, b").peers == {"a", "b"}
    with pytest.raises(RuleViolation):
        ComponentTls(allowed_peers="a,,b")


def test_local_certificates_are_kept_while_usable(tmp_path: Path) -> None:
    assert ensure_mesh_certificates(tmp_path) is True
    ca = (tmp_path / CA_FILE).read_bytes()
    assert ensure_mesh_certificates(tmp_path) is False
    assert (tmp_path / CA_FILE).read_bytes() == ca
    assert (tmp_path / "gateway.key").stat().st_mode & 0o077 == 0
    # Nearly expired (the CA lives 30 days): a new set.
    assert not certificates_usable(tmp_path, now=NOW + datetime.timedelta(days=29, hours=12))
    (tmp_path / "gateway.crt").write_bytes(b"garbage")
    assert ensure_mesh_certificates(tmp_path) is True
    assert (tmp_path / CA_FILE).read_bytes() != ca


async def test_renewal_swaps_channels_and_closes_the_old_after_grace(certs: Path) -> None:
    watcher = KeyMaterialWatcher(paths(certs))
    factory = ChannelFactory([], watcher, server_name="x.harag.internal")
    channels = {"a": factory.open("127.0.0.1:1")}
    closed: list[grpc.aio.Channel] = []

    def renew() -> list[grpc.aio.Channel]:
        old = channels["a"]
        channels["a"] = factory.open("127.0.0.1:1")
        closed.append(old)
        return [old]

    renewal = ChannelRenewal(watcher, renew, close_grace_s=0.0)
    assert renewal.renew_if_changed() is False  # nothing new yet
    cert, key = issue(new_authority(), [GATEWAY_IDENTITY])
    write_private(certs / "gateway.crt", cert)
    write_private(certs / "gateway.key", key)
    watcher.poll()
    first = channels["a"]
    assert renewal.renew_if_changed() is True
    assert channels["a"] is not first and closed == [first]
    assert renewal.renew_if_changed() is False  # one change, one renewal
    await renewal.close_now()
    assert first.get_state() == grpc.ChannelConnectivity.SHUTDOWN
    await channels["a"].close()
