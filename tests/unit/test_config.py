"""The configuration loader: layering, sources, typed sections, and one-line errors for every
kind of bad value (out of range, bad combination, wrong type, unknown key, malformed file)."""

from __future__ import annotations

import dataclasses

import pytest

from embedder_svc.settings import EmbedderConfig
from gateway.config import GatewayConfig
from gateway.resilience.breaker_types import BreakerConfig
from gateway.resilience.retry import RetryBudgetConfig, RetryPolicy
from retriever_svc.settings import RetrieverConfig, data_dir
from servicekit.config import (
    NON_SETTING_VARIABLES,
    ConfigError,
    RuleViolation,
    Setting,
    load,
    load_config,
    settings_of,
    unknown_variables,
)
from servicekit.settings import SETTING_METADATA

SETTINGS = [
    Setting("impl", "primary", "which", choices=("primary", "fallback")),
    Setting("port", 0, "port", kind=int, minimum=0, maximum=65535),
    Setting("ratio", 0.5, "ratio", kind=float, minimum=0, maximum=1, below_maximum=True),
    Setting("enabled", False, "flag", kind=bool),
]


def gateway_error(env: dict[str, str] | None = None, **kw: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(GatewayConfig, env=env or {}, **kw)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "\n" not in message, "a config error is one line"
    return message


# -- layering and sources -----------------------------------------------------------------


def test_layers_apply_in_order(tmp_path):
    file = tmp_path / "cfg.yaml"
    file.write_text("port: 7000\nratio: 0.25\nimpl: fallback\n")
    cfg = load(SETTINGS, config_file=file, env={"HARAG_PORT": "7001"}, overrides={"impl": None})
    assert (cfg.impl, cfg.port, cfg.ratio, cfg.enabled) == ("fallback", 7001, 0.25, False)
    assert cfg.source("port") == "env HARAG_PORT"
    assert cfg.source("ratio") == f"file {file}"
    assert cfg.source("enabled") == "default"
    cfg = load(SETTINGS, config_file=file, env={"HARAG_PORT": "7001"}, overrides={"port": 7002})
    assert cfg.port == 7002 and cfg.source("port") == "flag --port"


def test_the_file_can_come_from_harag_config(tmp_path):
    file = tmp_path / "gateway.yaml"
    file.write_text("breaker_window_size: 40\ncache_ttl_s: 0\n")
    loaded = load_config(GatewayConfig, env={"HARAG_CONFIG": str(file)})
    assert loaded.config.breaker.window_size == 40
    assert loaded.config.cache.ttl_s == 0.0
    assert loaded.source("breaker_window_size") == f"file {file}"


def test_settings_land_in_typed_sections():
    loaded = load_config(
        GatewayConfig,
        env={
            "HARAG_BREAKER_WINDOW_SIZE": "7",
            "HARAG_RETRY_MAX_ATTEMPTS": "1",
            "HARAG_RETRY_BUDGET_MIN_PER_S": "0.5",
            "HARAG_HEDGE_ENABLED": "false",
            "HARAG_EMBEDDER_CHAIN": "a=10.0.0.1:1,b=10.0.0.2:2",
        },
        overrides={"port": "6000", "bare": True},
    )
    cfg = loaded.config
    assert cfg.breaker == BreakerConfig(window_size=7)
    assert cfg.retry == RetryPolicy(max_attempts=1)
    assert cfg.retry_budget == RetryBudgetConfig(min_retries_per_second=0.5)
    assert cfg.hedge.enabled is False
    assert [(s.name, s.address, s.tier) for s in cfg.chains.specs("embedder")] == [
        ("a", "10.0.0.1:1", 0),
        ("b", "10.0.0.2:2", 1),
    ]
    assert (cfg.port, cfg.bare) == (6000, True)
    assert loaded.source("port") == "flag --port"
    assert "breaker_window_size = 7 (env HARAG_BREAKER_WINDOW_SIZE)" in loaded.describe()
    assert "bare = true (flag --bare)" in loaded.describe()


def test_component_rule_on_a_nested_field_names_the_settings():
    with pytest.raises(
        ConfigError,
        match="metrics_port must differ from port; got "
        r"metrics_port = 50062 \(from env HARAG_METRICS_PORT\), port = 0",
    ):
        load_config(
            EmbedderConfig, env={"HARAG_METRICS_PORT": "50062"}, overrides={"impl": "fallback"}
        )


def test_component_config_is_typed_and_knows_its_port():
    cfg = load_config(EmbedderConfig, env={}, overrides={"impl": "fallback"}).config
    assert (cfg.name, cfg.listen_port, cfg.max_batch_size) == ("embedder-fallback", 50062, 256)
    cfg = load_config(EmbedderConfig, env={"HARAG_PORT": "7100"}).config
    assert cfg.listen_port == 7100
    retriever = load_config(RetrieverConfig, env={}).config
    assert str(data_dir(retriever)) == "var/data/retriever-primary"


# -- derivation: one declaration per setting ------------------------------------------------


@pytest.mark.parametrize(
    ("section", "cls", "prefix"),
    [
        ("breaker", BreakerConfig, "breaker_"),
        ("retry", RetryPolicy, "retry_"),
        ("retry_budget", RetryBudgetConfig, "retry_budget_"),
    ],
)
def test_resilience_settings_are_the_dataclass_fields(section, cls, prefix):
    declared = settings_of(cls)
    gateway_keys = {s.key: s for s in settings_of(GatewayConfig)}
    defaults = cls()
    by_key = {f.metadata[SETTING_METADATA]["key"]: f for f in dataclasses.fields(cls) if f.metadata}
    for spec in declared:
        assert spec.key.startswith(prefix)
        assert gateway_keys[spec.key] == spec, "the gateway exposes the field as declared"
        assert spec.default == getattr(defaults, by_key[spec.key].name)
        assert spec.doc and spec.kind in (bool, int, float, str)
    assert getattr(GatewayConfig(), section) == defaults


def test_every_setting_is_declared_once_per_process():
    for schema in (GatewayConfig, EmbedderConfig, RetrieverConfig):
        keys = [s.key for s in settings_of(schema)]
        assert len(keys) == len(set(keys)), schema


def test_a_dataclass_built_in_code_gets_the_same_bounds_as_a_loaded_one():
    with pytest.raises(RuleViolation, match=r"wait_jitter must be a number in \[0, 1\), not 1.0"):
        BreakerConfig(wait_jitter=1.0)
    with pytest.raises(RuleViolation, match="initial_backoff_s must be <= max_backoff_s"):
        RetryPolicy(initial_backoff_s=1.0, max_backoff_s=0.5)
    with pytest.raises(RuleViolation, match="window_size"):
        BreakerConfig(window_size=True)  # a bool is not a whole number


# -- bad values: one line naming setting, source, value, what is allowed ---------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"HARAG_IMPL": "tertiary"},
            "impl = 'tertiary' (from env HARAG_IMPL) is invalid: must be one of primary, fallback",
        ),
        ({"HARAG_PORT": "70000"}, "must be a whole number in [0, 65535]"),
        ({"HARAG_PORT": "abc"}, "port = 'abc' (from env HARAG_PORT)"),
        (
            {"HARAG_RATIO": "1"},
            "ratio = '1' (from env HARAG_RATIO) is invalid: must be a number in [0, 1)",
        ),
        ({"HARAG_RATIO": "nan"}, "ratio = 'nan'"),
        ({"HARAG_ENABLED": "maybe"}, "must be true or false"),
    ],
)
def test_bad_values_name_the_key_source_and_allowed_values(env, message):
    with pytest.raises(ConfigError) as caught:
        load(SETTINGS, env=env)
    assert message in str(caught.value)


def test_out_of_range_gateway_value():
    message = gateway_error({"HARAG_BREAKER_WAIT_JITTER": "1"})
    assert message == (
        "config error: breaker_wait_jitter = '1' (from env HARAG_BREAKER_WAIT_JITTER) is "
        "invalid: must be a number in [0, 1)"
    )


def test_wrong_type_gateway_value():
    assert "breaker_window_size = 'abc' (from env HARAG_BREAKER_WINDOW_SIZE) is invalid" in (
        gateway_error({"HARAG_BREAKER_WINDOW_SIZE": "abc"})
    )
    assert "breaker_window_size = '2.5'" in gateway_error({"HARAG_BREAKER_WINDOW_SIZE": "2.5"})


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"HARAG_RETRY_INITIAL_BACKOFF_S": "1"},
            "config error: retry_initial_backoff_s must be <= retry_max_backoff_s; got "
            "retry_initial_backoff_s = 1.0 (from env HARAG_RETRY_INITIAL_BACKOFF_S), "
            "retry_max_backoff_s = 0.5 (from default)",
        ),
        (
            {"HARAG_BREAKER_WAIT_IN_OPEN_S": "90"},
            "config error: breaker_wait_in_open_s must be <= breaker_max_wait_in_open_s; got "
            "breaker_wait_in_open_s = 90.0 (from env HARAG_BREAKER_WAIT_IN_OPEN_S), "
            "breaker_max_wait_in_open_s = 60.0 (from default)",
        ),
        (
            {"HARAG_DEFAULT_DEADLINE_S": "0.1", "HARAG_REPLY_MARGIN_S": "0.1"},
            "config error: min_attempt_s + reply_margin_s must be < default_deadline_s; got "
            "min_attempt_s = 0.02 (from default), reply_margin_s = 0.1 (from env",
        ),
        (
            {"HARAG_METRICS_PORT": "7000", "HARAG_PORT": "7000"},
            "config error: metrics_port must differ from port; got metrics_port = 7000 (from "
            "env HARAG_METRICS_PORT), port = 7000 (from env HARAG_PORT)",
        ),
        (
            {"HARAG_METRICS_PORT": "7000", "HARAG_PORT": "7001", "HARAG_WORKERS": "2"},
            "config error: metrics_port + i for i < workers (each worker's /metrics port) "
            "must be valid ports other than port; got metrics_port = 7000 (from env "
            "HARAG_METRICS_PORT), workers = 2 (from env HARAG_WORKERS), port = 7001",
        ),
        (
            {"HARAG_EMBEDDER_CHAIN": "x=h:1", "HARAG_GENERATOR_CHAIN": "x=h:2"},
            "config error: upstream names must be unique across embedder_chain, "
            "retriever_chain and generator_chain; got embedder_chain = x=h:1 (from env",
        ),
    ],
)
def test_bad_combinations_name_both_settings_and_the_rule(env, expected):
    assert gateway_error(env).startswith(expected)


def test_bad_combination_from_a_file_names_the_file(tmp_path):
    file = tmp_path / "gw.yaml"
    file.write_text("retry_max_backoff_s: 0.01\n")
    assert f"retry_max_backoff_s = 0.01 (from file {file})" in gateway_error(config_file=file)


@pytest.mark.parametrize(
    ("chain", "problem"),
    [
        ("embedder-primary", "is not name=host:port"),
        ("a=h:1,a=h:2", "upstream names must be unique"),
        ("a=h:70000", "outside 1..65535"),
        (" , ", "a chain needs at least one upstream"),
    ],
)
def test_gateway_chain_is_validated(chain, problem):
    message = gateway_error({"HARAG_EMBEDDER_CHAIN": chain})
    assert message.startswith(f"config error: embedder_chain = {chain!r} (from env ")
    assert problem in message


# -- files ---------------------------------------------------------------------------------


def test_unknown_file_key_is_rejected_with_the_closest_key(tmp_path):
    file = tmp_path / "cfg.yaml"
    file.write_text("breaker_window_sise: 1\n")
    assert gateway_error(config_file=file) == (
        f"config error: unknown key 'breaker_window_sise' in {file}; "
        "did you mean 'breaker_window_size'?"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("port: [1\n", "is not valid YAML at line 2, column 1"),
        ("- port\n", "must hold a mapping of settings (key: value), not a list"),
        ("port: {a: 1}\n", "port = {'a': 1}"),
        ("host:\n", "host = None"),
    ],
)
def test_malformed_file_is_one_line(tmp_path, text, expected):
    file = tmp_path / "cfg.yaml"
    file.write_text(text)
    assert expected in gateway_error(config_file=file)


def test_missing_file(tmp_path):
    assert "cannot read config file" in gateway_error(config_file=tmp_path / "nope.yaml")


# -- unknown environment variables ----------------------------------------------------------


def test_unknown_variable_warns_with_the_closest_setting():
    warnings = unknown_variables(
        settings_of(GatewayConfig),
        {
            "HARAG_BREAKER_WINDOW_SIZ": "5",
            "HARAG_BREAKER_WINDOW_SIZE": "5",
            "HARAG_ZZZ": "1",
            "PATH": "/bin",
        },
        process="gateway",
    )
    assert warnings == [
        "config warning: HARAG_BREAKER_WINDOW_SIZ is not a setting of the gateway process "
        "and is ignored; did you mean HARAG_BREAKER_WINDOW_SIZE?",
        "config warning: HARAG_ZZZ is not a setting of the gateway process and is ignored",
    ]


def test_variables_read_outside_the_settings_are_not_warned_about():
    env = dict.fromkeys(NON_SETTING_VARIABLES, "x")
    assert unknown_variables(settings_of(GatewayConfig), env) == []
    assert {"HARAG_CONFIG", "HARAG_GATEWAY", "HARAG_CHAOS_SEED"} <= NON_SETTING_VARIABLES


def test_loaded_sections_are_what_each_upstream_guard_runs_with():
    from gateway.guards import build_guard

    cfg = load_config(
        GatewayConfig,
        env={"HARAG_BREAKER_WINDOW_SIZE": "7", "HARAG_RETRY_BUDGET_RATIO": "0.5"},
    ).config
    guard = build_guard("embedder-primary", 0, cfg, "embedder")
    assert guard.breaker is not None and guard.breaker.config is cfg.breaker
    assert guard.budget is not None and guard.budget.config is cfg.retry_budget
    assert guard.retry is cfg.retry
    no_retries = load_config(GatewayConfig, env={"HARAG_RETRY_MAX_ATTEMPTS": "1"}).config
    assert build_guard("x", 0, no_retries, "embedder").retry is None
    bare = load_config(GatewayConfig, env={}, overrides={"bare": True}).config
    assert build_guard("x", 0, bare, "embedder").breaker is None
