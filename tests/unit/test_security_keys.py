"""API keys: token format, hashing, the key file's validation, verification, and reloading
(including Kubernetes' symlink swap of a Secret volume)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from gateway.security.identity import RateLimits
from gateway.security.key_watch import KeyFileWatcher
from gateway.security.keys import (
    KeyFileError,
    Verdict,
    hash_secret,
    key_entry,
    new_token,
    parse_document,
    parse_key_file,
    parse_token,
)


def entry(**fields: Any) -> tuple[dict[str, Any], str]:
    key_id, secret, token = new_token()
    base = key_entry(key_id, secret, "acme", ["query"])
    return {**base, **fields}, token


def test_a_new_token_parses_back_to_its_id_and_a_hash_never_holds_the_secret():
    key_id, secret, token = new_token()
    assert token == f"hrg_{key_id}_{secret}"
    assert parse_token(token) is not None
    assert (parse_token(token).key_id, parse_token(token).secret) == (key_id, secret)
    assert len(secret) >= 43  # 256 bits, URL-safe base64
    digest = hash_secret(secret)
    assert digest.startswith("sha256:") and secret not in digest
    assert new_token()[2] != token


@pytest.mark.parametrize(
    "text", ["", "hrg_", "hrg_abc", "hrg__secretsecretsecret", "key_abc_secretsecretsecret",
             "hrg_a b_secretsecretsecret", "hrg_abc_short"],
)  # fmt: skip
def test_malformed_tokens_do_not_parse(text):
    assert parse_token(text) is None


def test_verify_accepts_the_right_secret_and_answers_alike_for_wrong_or_unknown():
    good, token = entry()
    revoked, revoked_token = entry(disabled=True)
    keys = parse_document({"keys": [good, revoked]})
    verdict, key = keys.verify(token, now=0)
    assert verdict is Verdict.ACCEPTED and key is not None
    assert key.identity().client == "acme" and key.identity().scopes == {"query"}
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    _, _, unknown = new_token()
    for presented in (wrong, unknown, revoked_token, "garbage"):
        assert keys.verify(presented, now=0) == (Verdict.INVALID, None)


def test_an_expired_key_is_told_apart_only_with_its_right_secret():
    expiring, token = entry(expires="2030-01-01T00:00:00Z")
    keys = parse_document({"keys": [expiring]})
    moment = 1893456000.0  # 2030-01-01T00:00:00Z
    assert keys.verify(token, now=moment - 1)[0] is Verdict.ACCEPTED
    assert keys.verify(token, now=moment)[0] is Verdict.EXPIRED
    assert keys.verify(token[:-1] + "Z", now=moment)[0] is Verdict.INVALID


def test_limits_come_from_the_tier_and_the_key_overrides_them_field_by_field():
    gold, _ = entry(tier="gold", limits={"query_burst": 50})
    plain, _ = entry()
    keys = parse_document(
        {
            "tiers": {"gold": {"queries_per_second": 20, "query_burst": 40,
                               "documents_per_minute": 600}},
            "keys": [gold, plain],
        }
    )  # fmt: skip
    assert keys.keys[gold["id"]].limits == RateLimits(20.0, 50, 600.0)
    assert keys.keys[gold["id"]].identity().limits == RateLimits(20.0, 50, 600.0)
    assert keys.keys[plain["id"]].limits == RateLimits()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"scopes": ["query", "root"]}, "keys[0].scopes: unknown scope 'root'"),
        ({"scopes": []}, "keys[0].scopes: must be a non-empty list"),
        ({"hash": "plain-secret"}, "keys[0].hash: must be sha256:"),
        ({"client": ""}, "keys[0].client: must be 1-128 printable"),
        ({"tier": "gold"}, "keys[0].tier: unknown tier 'gold'"),
        ({"scope": ["query"]}, "keys[0]: unknown field 'scope'"),
        ({"limits": {"query_burst": 1.5}}, "keys[0].limits.query_burst: must be a whole"),
        ({"limits": {"queries_per_second": 0}}, "keys[0].limits.queries_per_second: must be above"),
        ({"expires": "2030-01-01"}, "keys[0].expires: '2030-01-01' needs a time zone"),
        ({"disabled": "yes"}, "keys[0].disabled: must be true or false"),
        ({"id": "has_underscore"}, "keys[0].id: must be 1-64 letters"),
    ],
)
def test_a_bad_entry_is_one_line_naming_where_and_never_quoting_the_hash(change, message):
    bad, _ = entry(**change)
    with pytest.raises(KeyFileError) as caught:
        parse_document({"keys": [bad]})
    text = str(caught.value)
    assert text.startswith(message), text
    assert "\n" not in text and bad["hash"].removeprefix("sha256:") not in text


def test_the_file_level_mistakes():
    first, _ = entry()
    with pytest.raises(KeyFileError, match="repeats an earlier key's id"):
        parse_document({"keys": [first, dict(first)]})
    with pytest.raises(KeyFileError, match="not valid JSON"):
        parse_key_file('{"keys": [')
    with pytest.raises(KeyFileError, match="keys: must be a list"):
        parse_key_file("{}")
    with pytest.raises(KeyFileError, match="unknown field 'key'"):
        parse_key_file('{"key": []}')
    assert parse_key_file('{"keys": []}').keys == {}


# -- reloading ---------------------------------------------------------------------------


def write(path: Path, *entries: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps({"keys": list(entries)}))
    os.replace(temporary, path)


def test_a_changed_file_is_reloaded_and_a_bad_one_keeps_the_keys_in_force(tmp_path, caplog):
    first, first_token = entry()
    second, second_token = entry()
    path = tmp_path / "keys.json"
    write(path, first)
    watcher = KeyFileWatcher(path, 0.1)
    watcher.load()
    assert watcher.check() is False  # unchanged: not even read
    write(path, second)
    assert watcher.check() is True
    assert watcher.keys.verify(first_token, 0)[0] is Verdict.INVALID
    assert watcher.keys.verify(second_token, 0)[0] is Verdict.ACCEPTED

    path.write_text('{"keys": [{"id": "half')  # a writer caught halfway
    with caplog.at_level(logging.ERROR, logger="harag.gateway.auth"):
        assert watcher.check() is False
        assert watcher.check() is False  # the same bad version is reported once
    assert watcher.keys.verify(second_token, 0)[0] is Verdict.ACCEPTED
    assert len(caplog.records) == 1 and "not valid JSON" in caplog.records[0].error
    path.unlink()
    assert watcher.check() is False
    assert watcher.keys.verify(second_token, 0)[0] is Verdict.ACCEPTED


def test_a_kubernetes_secret_update_by_symlink_swap_is_seen(tmp_path):
    """The kubelet writes a new timestamped directory, then renames a `..data` symlink onto
    it; `keys.json` is a symlink into `..data` and never changes itself."""
    first, first_token = entry()
    second, second_token = entry()
    volume = tmp_path / "secret"
    (volume / "..v1").mkdir(parents=True)
    write(volume / "..v1" / "keys.json", first)
    (volume / "..data").symlink_to("..v1")
    (volume / "keys.json").symlink_to("..data/keys.json")
    watcher = KeyFileWatcher(volume / "keys.json", 0.1)
    watcher.load()
    assert watcher.keys.verify(first_token, 0)[0] is Verdict.ACCEPTED

    (volume / "..v2").mkdir()
    write(volume / "..v2" / "keys.json", second)
    (volume / "..data_tmp").symlink_to("..v2")
    os.replace(volume / "..data_tmp", volume / "..data")
    assert watcher.check() is True
    assert watcher.keys.verify(first_token, 0)[0] is Verdict.INVALID
    assert watcher.keys.verify(second_token, 0)[0] is Verdict.ACCEPTED


def test_an_unusable_file_at_start_is_an_error_naming_it(tmp_path):
    with pytest.raises(KeyFileError, match=r"key file .*missing.json: cannot be read"):
        KeyFileWatcher(tmp_path / "missing.json", 0.1).load()
