"""`harag keys create|list|revoke` on a key file, as the gateway then reads it."""

from __future__ import annotations

import json
import stat

from cli_support import run

from gateway.security.keys import Verdict, parse_key_file


def test_create_prints_the_secret_once_and_stores_only_its_hash(capsys, tmp_path):
    path = tmp_path / "keys.json"
    code, out, err = run(
        capsys, "keys", "create", "--client", "acme-web", "--scopes", "query,ingest",
        "--file", str(path),
    )  # fmt: skip
    assert code == 0, err
    token = out.strip()
    assert token.startswith("hrg_") and "only time its secret is shown" in err
    text = path.read_text()
    secret = token.rsplit("_", 1)[1]
    assert secret not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keys = parse_key_file(text)
    verdict, key = keys.verify(token, now=0)
    assert verdict is Verdict.ACCEPTED and key is not None
    assert key.client == "acme-web" and key.scopes == {"query", "ingest"}

    code, out, _ = run(capsys, "keys", "list", "--file", str(path))
    assert code == 0 and "acme-web" in out and "query,ingest" in out and "active" in out
    assert secret not in out and "sha256" not in out

    code, out, _ = run(capsys, "keys", "revoke", key.key_id, "--file", str(path))
    assert code == 0
    assert parse_key_file(path.read_text()).verify(token, now=0)[0] is Verdict.INVALID
    code, out, _ = run(capsys, "keys", "list", "--file", str(path))
    assert "revoked" in out


def test_a_tier_must_exist_and_bad_input_is_one_line(capsys, tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"tiers": {"gold": {"queries_per_second": 5}}, "keys": []}))
    code, _, err = run(
        capsys, "keys", "create", "--client", "a", "--scopes", "query", "--tier", "silver",
        "--file", str(path),
    )  # fmt: skip
    assert code == 2 and "unknown tier 'silver'" in err and err.count("\n") == 1
    assert parse_key_file(path.read_text()).keys == {}  # nothing written
    code, _, err = run(
        capsys, "keys", "create", "--client", "a", "--scopes", "query", "--tier", "gold",
        "--file", str(path),
    )  # fmt: skip
    assert code == 0
    [key] = parse_key_file(path.read_text()).keys.values()
    assert key.limits.queries_per_second == 5.0

    code, _, err = run(capsys, "keys", "revoke", "nosuchid", "--file", str(path))
    assert code == 2 and "no key 'nosuchid'" in err
    path.write_text("{not json")
    code, _, err = run(capsys, "keys", "list", "--file", str(path))
    assert code == 2 and "not valid JSON" in err and "Traceback" not in err
