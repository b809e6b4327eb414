"""`harag keys create|list|revoke`: edit the gateway's key file (hashed keys, scopes, tiers).

The file is the one the gateway reads (`auth_key_file`): `--file`, else $HARAG_AUTH_KEY_FILE,
else the key file `harag up` gives the gateway at $HARAG_GATEWAY or 127.0.0.1:50051. Every change is
validated as the gateway would validate it and written atomically (a temporary file renamed
over the old one), so a gateway reloading it never reads half a file. The secret of a new
key is printed once and never stored.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway.security.identity import ALL_SCOPES
from gateway.security.keys import (
    KeyFileError,
    key_entry,
    new_token,
    parse_document,
    parse_time,
)
from harag_cli.clients import up_key_file
from harag_cli.meshctl import gateway_address

KEY_FILE_ENV = "HARAG_AUTH_KEY_FILE"
CALLER_ERROR = 2


def key_file(flag: str | None) -> Path:
    return Path(flag or os.environ.get(KEY_FILE_ENV) or up_key_file(gateway_address()))


def read_document(path: Path, missing_ok: bool = False) -> dict[str, Any]:
    """The key file as JSON data, checked as the gateway checks it; raises KeyFileError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return {"tiers": {}, "keys": []}
        raise KeyFileError(f"key file {path}: does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"key file {path}: cannot be read: {exc.strerror}") from None
    try:
        document = json.loads(text)
        parse_document(document)
    except json.JSONDecodeError as exc:
        raise KeyFileError(f"key file {path}: not valid JSON: {exc.msg}") from None
    except KeyFileError as exc:
        raise KeyFileError(f"key file {path}: {exc}") from None
    assert isinstance(document, dict)
    return document


def write_document(path: Path, document: dict[str, Any]) -> None:
    """Validates `document` and replaces the file atomically (mode 0600)."""
    parse_document(document)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".keys-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(document, out, indent=2)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def create_key(
    path: Path,
    client: str,
    scopes: list[str],
    tier: str = "",
    expires: str = "",
    replace_client: bool = False,
) -> tuple[str, str]:
    """Appends a new key to the file (created when missing): returns (id, token).

    `replace_client` first drops the keys of the same client name (for `harag up`'s
    development key, which is made afresh on every start)."""
    document = read_document(path, missing_ok=True)
    keys = document.setdefault("keys", [])
    if replace_client:
        keys[:] = [k for k in keys if not (isinstance(k, dict) and k.get("client") == client)]
    key_id, secret, token = new_token()
    entry = key_entry(key_id, secret, client, scopes, tier=tier, created=utc_now())
    if expires:
        entry["expires"] = expires
    keys.append(entry)
    write_document(path, document)
    return key_id, token


def _status(entry: dict[str, Any], now: float) -> str:
    if entry.get("disabled"):
        return "revoked"
    if "expires" in entry and parse_time(entry["expires"], "expires") <= now:
        return "expired"
    return "active"


def _scopes(text: str) -> list[str]:
    scopes = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in scopes if s not in ALL_SCOPES]
    if not scopes or unknown:
        raise argparse.ArgumentTypeError(
            f"scopes are a comma-separated list of {', '.join(sorted(ALL_SCOPES))}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
        )
    return list(dict.fromkeys(scopes))


async def keys_create(args: argparse.Namespace) -> int:
    path = key_file(args.file)
    key_id, token = create_key(path, args.client, args.scopes, args.tier or "", args.expires or "")
    print(token)
    print(
        f"harag keys: created key {key_id} for {args.client!r} ({', '.join(args.scopes)}) in "
        f"{path}. This is the only time its secret is shown.",
        file=sys.stderr,
    )
    return 0


async def keys_list(args: argparse.Namespace) -> int:
    document = read_document(key_file(args.file))
    now = time.time()
    rows = [("ID", "CLIENT", "SCOPES", "TIER", "STATUS", "CREATED", "EXPIRES")]
    for entry in document.get("keys", []):
        rows.append(
            (
                entry["id"],
                entry["client"],
                ",".join(entry["scopes"]),
                entry.get("tier", "") or "-",
                _status(entry, now),
                entry.get("created", "-"),
                entry.get("expires", "-"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


async def keys_revoke(args: argparse.Namespace) -> int:
    path = key_file(args.file)
    document = read_document(path)
    entry = next((k for k in document.get("keys", []) if k.get("id") == args.id), None)
    if entry is None:
        print(f"harag keys revoke: no key {args.id!r} in {path}", file=sys.stderr)
        return CALLER_ERROR
    entry["disabled"] = True
    write_document(path, document)
    print(
        f"harag keys: revoked key {args.id} ({entry['client']}); a running gateway drops it "
        "at its next key file check"
    )
    return 0


def add_parser(sub: Any) -> None:
    """`harag keys ...` under the CLI's subcommands."""
    p = sub.add_parser("keys", help="create, list or revoke API keys in the gateway's key file")
    keys_sub = p.add_subparsers(dest="keys_command", required=True)
    c = keys_sub.add_parser("create", help="add a key and print its secret (once)")
    c.add_argument("--client", required=True, help="who uses the key (on spans and log lines)")
    c.add_argument(
        "--scopes",
        type=_scopes,
        required=True,
        help="comma-separated: query (Query, StreamQuery, GetSystemHealth, ListDocuments), "
        "ingest (Ingest, DeleteDocuments), admin (GatewayAdminService)",
    )
    c.add_argument("--tier", help="a tier of the file's `tiers` (its rate limits)")
    c.add_argument("--expires", help="ISO 8601 time with a zone, e.g. 2026-12-31T00:00:00Z")
    c.set_defaults(func=keys_create)
    keys_sub.add_parser("list", help="every key: id, client, scopes, status (no secrets)")
    keys_sub.choices["list"].set_defaults(func=keys_list)
    r = keys_sub.add_parser("revoke", help="disable a key (kept in the file, marked disabled)")
    r.add_argument("id")
    r.set_defaults(func=keys_revoke)
    for command in keys_sub.choices.values():
        command.add_argument(
            "--file",
            help=f"the key file (default: ${KEY_FILE_ENV}, else the one `harag up` made for "
            "the gateway at $HARAG_GATEWAY or 127.0.0.1:50051)",
        )
