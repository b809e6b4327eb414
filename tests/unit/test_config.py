"""Layered configuration: defaults < file < environment < flags, validated with clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
from processes import REPO

from gateway.config import SETTINGS as GATEWAY
from servicekit.config import ConfigError, Setting, load

SETTINGS = [
    Setting("impl", "primary", "which", choices=("primary", "fallback")),
    Setting("port", 0, "port", kind=int, minimum=0, maximum=65535),
    Setting("ratio", 0.5, "ratio", kind=float, minimum=0, maximum=1),
    Setting("enabled", False, "flag", kind=bool),
]


def test_layers_apply_in_order(tmp_path):
    file = tmp_path / "cfg.yaml"
    file.write_text("port: 7000\nratio: 0.25\nimpl: fallback\n")
    cfg = load(SETTINGS, config_file=file, env={"HARAG_PORT": "7001"}, overrides={"impl": None})
    assert (cfg.impl, cfg.port, cfg.ratio, cfg.enabled) == ("fallback", 7001, 0.25, False)
    assert cfg.source("port") == "env HARAG_PORT"
    assert cfg.source("ratio").startswith("file ")
    assert cfg.source("enabled") == "default"
    cfg = load(SETTINGS, config_file=file, env={"HARAG_PORT": "7001"}, overrides={"port": 7002})
    assert cfg.port == 7002 and cfg.source("port") == "flag --port"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"HARAG_IMPL": "tertiary"},
            "impl = 'tertiary' (from env HARAG_IMPL) is invalid: must be one of primary, fallback",
        ),
        ({"HARAG_PORT": "70000"}, "must be a whole number in [0, 65535]"),
        ({"HARAG_PORT": "abc"}, "port = 'abc'"),
        ({"HARAG_RATIO": "2"}, "ratio = '2'"),
        ({"HARAG_ENABLED": "maybe"}, "must be true or false"),
    ],
)
def test_bad_values_name_the_key_source_and_allowed_values(env, message):
    with pytest.raises(ConfigError) as caught:
        load(SETTINGS, env=env)
    assert message in str(caught.value)


def test_unknown_file_key_is_rejected(tmp_path):
    file = tmp_path / "cfg.yaml"
    file.write_text("prot: 1\n")
    with pytest.raises(ConfigError, match="unknown key 'prot'"):
        load(SETTINGS, config_file=file, env={})


def test_gateway_chain_is_validated():
    with pytest.raises(ConfigError, match=r"embedder_chain.*is not name=host:port"):
        load(GATEWAY, env={"HARAG_EMBEDDER_CHAIN": "embedder-primary"})


@pytest.mark.parametrize("module", ["embedder_svc", "retriever_svc", "generator_svc", "gateway"])
def test_a_process_with_a_bad_value_stops_naming_the_key(module):
    proc = subprocess.run(
        [sys.executable, "-m", module],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "HARAG_LOG_LEVEL": "LOUD"},
    )
    assert proc.returncode == 2
    assert "log_level = 'LOUD' (from env HARAG_LOG_LEVEL) is invalid" in proc.stderr
    assert "one of DEBUG, INFO, WARNING, ERROR" in proc.stderr
