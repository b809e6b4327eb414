"""The mesh's certificates for the `harag` CLI: `harag certs create DIR`, the local mesh's
certificates that `harag up` and `harag demo` keep in var/certs, and mTLS channels to
components with the operator identity. Making the certificates is servicekit.mesh_certs.
"""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Callable
from pathlib import Path

import grpc

from servicekit import mesh_certs
from servicekit.mesh_certs import (
    CA_FILE,
    MESH_DOMAIN,
    OPERATOR_IDENTITY,
    Authority,
    create_mesh_certificates,
    identity_of,
    issue,
    mesh_names,
    new_authority,
    write_private,
)
from servicekit.tls import BadKeyMaterial, PemPaths, channel_credentials, read_key_material

__all__ = [
    "CA_FILE",
    "MESH_DOMAIN",
    "OPERATOR_IDENTITY",
    "Authority",
    "create_mesh_certificates",
    "identity_of",
    "issue",
    "mesh_names",
    "new_authority",
    "write_private",
]


def tls_env(directory: Path, name: str) -> dict[str, str]:
    """The HARAG_* settings that make process `name` use its certificate from `directory`."""
    return {
        "HARAG_TLS_CERT_FILE": str(directory / f"{name}.crt"),
        "HARAG_TLS_KEY_FILE": str(directory / f"{name}.key"),
        "HARAG_TLS_CA_FILE": str(directory / CA_FILE),
    }


LOCAL_CERTS_DIR = Path("var/certs")
"""Where `harag up` and `harag demo` keep the local mesh's certificates (beside var/data)."""

RENEW_WITHIN = datetime.timedelta(days=1)


def certificates_usable(directory: Path, now: datetime.datetime | None = None) -> bool:
    """True when `directory` holds a sound certificate for every mesh identity, each valid
    for at least another day (so a running mesh is not handed a new CA needlessly)."""
    later = (now or datetime.datetime.now(datetime.UTC)) + RENEW_WITHIN
    for name in mesh_names():
        paths = PemPaths(
            str(directory / f"{name}.crt"),
            str(directory / f"{name}.key"),
            str(directory / CA_FILE),
            1.0,
        )
        try:
            read_key_material(paths, now=later)
        except BadKeyMaterial:
            return False
    return True


def ensure_mesh_certificates(directory: Path) -> bool:
    """Keeps usable certificates in `directory`, else writes a new CA and set; True if new."""
    if certificates_usable(directory):
        return False
    create_mesh_certificates(directory)
    return True


ChannelOpener = Callable[[str], grpc.aio.Channel]


def operator_channels(directory: Path) -> ChannelOpener | None:
    """Opens mTLS channels to components with the operator identity from `directory`, or
    None when there is no such certificate there (a plaintext mesh)."""
    paths = PemPaths(
        str(directory / "operator.crt"),
        str(directory / "operator.key"),
        str(directory / CA_FILE),
        1.0,
    )
    if not Path(paths.cert_file).exists():
        return None
    credentials = channel_credentials(read_key_material(paths))
    return lambda address: grpc.aio.secure_channel(address, credentials)


def plaintext_channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address)


async def create_command(args: argparse.Namespace) -> int:
    """`harag certs create DIR`."""
    return mesh_certs.main([args.dir])


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    certs = sub.add_parser("certs", help="certificates for a mesh with mTLS")
    actions = certs.add_subparsers(dest="certs_action", required=True)
    create = actions.add_parser(
        "create",
        help="write a throwaway CA and a certificate per mesh process (compose, development)",
    )
    create.add_argument("dir", help="directory to write ca.crt, <name>.crt and <name>.key into")
    create.set_defaults(func=create_command)


def component_channel(directory: Path) -> ChannelOpener:
    """How the CLI opens a channel to a component: mTLS as the operator when `directory`
    has the operator's certificate, plaintext otherwise."""
    try:
        opener = operator_channels(directory)
    except BadKeyMaterial as exc:
        raise SystemExit(f"harag: the certificates in {directory} are unusable: {exc}") from None
    return opener or plaintext_channel
