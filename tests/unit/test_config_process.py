"""Real `python -m gateway` / `python -m embedder_svc` processes with a bad configuration:
exit status 2 and one stderr line naming the setting, never a traceback; `--check-config`
validates and reports without opening a socket."""

from __future__ import annotations

import subprocess
import sys

import pytest
from processes import REPO, free_port

from gateway.config import GatewayConfig
from servicekit.config import settings_of


def run(module: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # A free port: were the config wrongly accepted, the process must not take a real one.
    base = {"PATH": "/usr/bin:/bin", "HARAG_PORT": str(free_port()), "HARAG_METRICS_PORT": "0"}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=base | env,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for fragment in fragments:
        assert fragment in lines[0]


GATEWAY_CASES = {
    "out of range": (
        {"HARAG_BREAKER_WAIT_JITTER": "1"},
        ["breaker_wait_jitter = '1' (from env HARAG_BREAKER_WAIT_JITTER)", "[0, 1)"],
    ),
    "bad combination": (
        {"HARAG_RETRY_INITIAL_BACKOFF_S": "2", "HARAG_RETRY_MAX_BACKOFF_S": "1"},
        [
            "retry_initial_backoff_s must be <= retry_max_backoff_s",
            "retry_initial_backoff_s = 2.0 (from env HARAG_RETRY_INITIAL_BACKOFF_S)",
            "retry_max_backoff_s = 1.0 (from env HARAG_RETRY_MAX_BACKOFF_S)",
        ],
    ),
    "wrong type": (
        {"HARAG_BREAKER_WINDOW_SIZE": "abc"},
        ["breaker_window_size = 'abc' (from env HARAG_BREAKER_WINDOW_SIZE)", "whole number"],
    ),
}


@pytest.mark.parametrize("case", GATEWAY_CASES)
def test_gateway_bad_value_exits_2_with_one_line(case):
    env, fragments = GATEWAY_CASES[case]
    assert_one_line_error(run("gateway", **env), *fragments)


EMBEDDER_CASES = {
    "out of range": (
        {"HARAG_MAX_BATCH_SIZE": "0"},
        ["max_batch_size = '0' (from env HARAG_MAX_BATCH_SIZE)", "[1, 100000]"],
    ),
    "bad combination": (
        {"HARAG_PORT": "7123", "HARAG_METRICS_PORT": "7123"},
        [
            "metrics_port must differ from port",
            "metrics_port = 7123 (from env HARAG_METRICS_PORT)",
            "port = 7123 (from env HARAG_PORT)",
        ],
    ),
    "wrong type": (
        {"HARAG_SHUTDOWN_GRACE_S": "soon"},
        ["shutdown_grace_s = 'soon' (from env HARAG_SHUTDOWN_GRACE_S)"],
    ),
}


@pytest.mark.parametrize("case", EMBEDDER_CASES)
def test_embedder_bad_value_exits_2_with_one_line(case):
    env, fragments = EMBEDDER_CASES[case]
    assert_one_line_error(run("embedder_svc", **env), *fragments)


def test_a_bad_flag_value_names_the_flag():
    assert_one_line_error(
        run("embedder_svc", "--impl", "tertiary"),
        "impl = 'tertiary' (from flag --impl) is invalid: must be one of primary, fallback",
    )


def test_bad_combination_in_a_file(tmp_path):
    file = tmp_path / "gateway.yaml"
    file.write_text("breaker_wait_in_open_s: 120\n")
    assert_one_line_error(
        run("gateway", "--config", str(file)),
        "breaker_wait_in_open_s must be <= breaker_max_wait_in_open_s",
        f"breaker_wait_in_open_s = 120.0 (from file {file})",
    )


@pytest.mark.parametrize("module", ["gateway", "embedder_svc"])
def test_unknown_variable_warns_and_the_config_still_validates(module):
    proc = run(module, "--check-config", HARAG_SHUTDOWN_GRACE="5", HARAG_LOG_LEVEL="DEBUG")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == (
        f"config warning: HARAG_SHUTDOWN_GRACE is not a setting of the {module} process and "
        "is ignored; did you mean HARAG_SHUTDOWN_GRACE_S?"
    )
    assert "log_level = DEBUG (env HARAG_LOG_LEVEL)" in proc.stdout.splitlines()
    assert "shutdown_grace_s = 5.0 (default)" in proc.stdout.splitlines()


def test_gateway_typo_of_a_breaker_setting_is_named():
    proc = run("gateway", "--check-config", HARAG_BREAKER_WINDOW_SIZ="5")
    assert proc.returncode == 0, proc.stderr
    assert "did you mean HARAG_BREAKER_WINDOW_SIZE?" in proc.stderr
    assert "breaker_window_size = 20 (default)" in proc.stdout.splitlines()


def test_check_config_reports_every_setting_with_its_source():
    proc = run("gateway", "--check-config", "--bare", HARAG_CACHE_TTL_S="0")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "bare = true (flag --bare)" in lines
    assert "cache_ttl_s = 0.0 (env HARAG_CACHE_TTL_S)" in lines
    assert any(line.startswith("port = ") and "(env HARAG_PORT)" in line for line in lines)
    assert len(lines) == len(settings_of(GatewayConfig))  # every setting, one line each


@pytest.mark.parametrize("module", ["embedder_svc", "retriever_svc", "generator_svc", "gateway"])
def test_every_process_stops_on_a_bad_value_naming_the_setting(module):
    assert_one_line_error(
        run(module, HARAG_LOG_LEVEL="LOUD"),
        "log_level = 'LOUD' (from env HARAG_LOG_LEVEL) is invalid",
        "one of DEBUG, INFO, WARNING, ERROR",
    )


def test_a_generator_with_backend_openai_and_no_provider_stops_naming_the_settings():
    assert_one_line_error(
        run("generator_svc", HARAG_BACKEND="openai", HARAG_OPENAI_MODEL="m"),
        "backend = openai needs openai_base_url and openai_model",
    )


def test_the_providers_api_key_from_the_environment_is_never_shown_by_check_config():
    proc = run(
        "generator_svc",
        "--check-config",
        HARAG_BACKEND="openai",
        HARAG_OPENAI_BASE_URL="http://127.0.0.1:9/v1",
        HARAG_OPENAI_MODEL="m",
        HARAG_OPENAI_API_KEY="sk-very-secret",
    )
    assert proc.returncode == 0, proc.stderr
    assert "backend = openai (env HARAG_BACKEND)" in proc.stdout.splitlines()
    assert "sk-very-secret" not in proc.stdout + proc.stderr
