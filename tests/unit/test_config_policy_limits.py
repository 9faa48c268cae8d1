"""`[policy_engine] evaluation_timeout_ms` / `evaluation_memory_mib`: in both dialects, with and
without the v0.11 `policy_path`, and one-line errors naming the key."""

from __future__ import annotations

import pytest

from trustee.config import ConfigError, parse

BASE = "[http_server]\ninsecure_http = true\n[admin]\n"
LEGACY_BASE = "[http_server]\ninsecure_http = true\n[admin]\ninsecure_api = true\n"


def test_defaults_without_the_table() -> None:
    config = parse(BASE)
    assert (
        config.policy_limits.evaluation_timeout_ms,
        config.policy_limits.evaluation_memory_mib,
    ) == (
        1000,
        64,
    )
    assert config.policy_engine is None


def test_limits_alone_keep_a_head_config_head() -> None:
    config = parse(
        BASE + "[policy_engine]\nevaluation_timeout_ms = 250\nevaluation_memory_mib = 16\n"
    )
    assert config.dialect == "head"
    # No resource-policy file is implied by a table that only holds limits.
    assert config.policy_engine is None
    assert config.policy_limits.evaluation_timeout_ms == 250
    assert config.policy_limits.evaluation_memory_mib == 16


def test_limits_next_to_policy_path() -> None:
    config = parse(
        LEGACY_BASE
        + '[policy_engine]\npolicy_path = "/etc/kbs/policy.rego"\nevaluation_timeout_ms = 300\n'
    )
    assert config.dialect == "v0.11"
    assert config.policy_engine is not None
    assert config.policy_engine.policy_path == "/etc/kbs/policy.rego"
    assert config.policy_limits.evaluation_timeout_ms == 300
    assert config.policy_limits.evaluation_memory_mib == 64


def test_limits_in_a_legacy_config_without_policy_path() -> None:
    config = parse(LEGACY_BASE + "[policy_engine]\nevaluation_memory_mib = 8\n")
    assert config.dialect == "v0.11"
    # The legacy default resource-policy file still applies.
    assert config.policy_engine is not None
    assert config.policy_limits.evaluation_memory_mib == 8


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("evaluation_timeout_ms = 0", "policy_engine.evaluation_timeout_ms"),
        ("evaluation_timeout_ms = 3600000", "policy_engine.evaluation_timeout_ms"),
        ('evaluation_timeout_ms = "1s"', "policy_engine.evaluation_timeout_ms"),
        ("evaluation_timeout_ms = true", "policy_engine.evaluation_timeout_ms"),
        ("evaluation_memory_mib = -1", "policy_engine.evaluation_memory_mib"),
        ("evaluation_memory_mib = 1.5", "policy_engine.evaluation_memory_mib"),
        ("evaluation_memory_mib = 100000", "policy_engine.evaluation_memory_mib"),
    ],
)
def test_bad_values_name_the_key(line: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(BASE + f"[policy_engine]\n{line}\n")
    message = str(caught.value)
    assert key in message
    assert "\n" not in message
