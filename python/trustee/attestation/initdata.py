"""Init-data TOML: its digest (over the raw text) and the claims exposed to policies."""

from __future__ import annotations

import contextlib
import hashlib
import tomllib
from dataclasses import dataclass
from typing import Any

from trustee.protocol import limits

_ALGORITHMS = ("sha256", "sha384", "sha512")
_POLICY_MARKER = "policy_data := {"


class InitDataError(ValueError):
    pass


@dataclass(frozen=True)
class InitData:
    digest: bytes
    claims: dict[str, Any]


def _toml_to_json(value: Any) -> Any:
    # TOML dates/times have no JSON type; render them as their ISO text.
    if isinstance(value, dict):
        return {k: _toml_to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_toml_to_json(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _agent_policy_claims(rego: str) -> Any | None:
    start = rego.find(_POLICY_MARKER)
    if start < 0:
        return None
    try:
        return limits.loads(rego[start + len(_POLICY_MARKER) - 1 :], "init-data policy_data")
    except ValueError:
        return None


def parse_init_data(text: str) -> InitData:
    """Digest and claims of init-data TOML; nesting beyond limits.MAX_TOML_DEPTH (in the
    document or the cdh.toml / aa.toml it carries) raises limits.InputLimitError."""
    try:
        doc = limits.toml_loads(text, "init-data")
    except tomllib.TOMLDecodeError as exc:
        raise InitDataError(f"init-data is not TOML: {exc}") from exc
    algorithm = doc.get("algorithm")
    if not isinstance(doc.get("version"), str):
        raise InitDataError("init-data `version` is missing or not a string")
    if algorithm not in _ALGORITHMS:
        raise InitDataError(f"init-data `algorithm` {algorithm!r} is not one of {_ALGORITHMS}")
    data = doc.get("data", {})
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise InitDataError("init-data `data` must map names to strings")
    claims: dict[str, Any] = dict(data)
    for name in ("cdh.toml", "aa.toml"):
        if name in claims:
            # Upstream keeps the text when it is not TOML.
            with contextlib.suppress(tomllib.TOMLDecodeError):
                claims[name] = _toml_to_json(limits.toml_loads(claims[name], f"init-data {name}"))
    if "policy.rego" in claims:
        extracted = _agent_policy_claims(claims["policy.rego"])
        if extracted is not None:
            del claims["policy.rego"]
            claims["agent_policy_claims"] = extracted
    return InitData(digest=hashlib.new(algorithm, text.encode()).digest(), claims=claims)
