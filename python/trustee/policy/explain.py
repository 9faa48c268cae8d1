"""Why a policy decided: the rule definitions that produced each value, and where the others
stopped.

Explaining re-evaluates the policy several times, so it is for deny paths, audit events and
the `trustee policy eval` command, never for the allow path of every request.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from trustee import _core, jsonfast
from trustee.policy.engine import CompiledPolicy

ReferenceValues = Mapping[str, Any] | Callable[[str], str | None]

# A reason line ends up in log lines and audit events; a large rule value (trust claims) is cut.
_VALUE_MAX = 200


def explain(
    policy: str | CompiledPolicy,
    input_doc: Any,
    data_doc: Any | None,
    rules: Sequence[str],
    reference_values: ReferenceValues | None = None,
) -> dict[str, Any]:
    """Evaluate `rules` and explain them (see `_core.Policy.explain` for the shape).

    `reference_values` is either a mapping from id to value or the engine's lookup callback
    (id -> JSON text or None). Raises PolicyCompileError or PolicyEvalError.
    """
    if isinstance(policy, CompiledPolicy):
        # Explaining runs the policy again: the same limits hold.
        compiled = _core.Policy(policy.text, policy.limits.timeout_ms, policy.limits.memory_mib)
    else:
        compiled = _core.Policy(policy)
    raw = compiled.explain(
        jsonfast.dumps_str(input_doc),
        None if data_doc is None else jsonfast.dumps_str(data_doc),
        list(rules),
        _lookup(reference_values),
    )
    result: dict[str, Any] = json.loads(raw)
    return result


def _lookup(reference_values: ReferenceValues | None) -> Callable[[str], str | None] | None:
    if reference_values is None or callable(reference_values):
        return reference_values
    values = dict(reference_values)

    def lookup(ref_id: str) -> str | None:
        return jsonfast.dumps_str(values[ref_id]) if ref_id in values else None

    return lookup


def reason_path(result: Mapping[str, Any]) -> str:
    """One line naming, per rule, its value and what decided it, e.g.
    `data.policy.allow = false: allow (line 4) failed at line 5: input.x == 1`."""
    parts = [_rule_reason(rule) for rule in result.get("rules", [])]
    return " | ".join(parts) if parts else "no rules evaluated"


def _rule_reason(rule: Mapping[str, Any]) -> str:
    name = str(rule.get("rule", "?"))
    status = rule.get("status", "value")
    if status == "absent":
        return f"{name} is not defined by the policy"
    value = "undefined" if status == "undefined" else _short(rule.get("value"))
    head = f"{name} = {value}"
    parts = []
    because = rule.get("because") or []
    # For `false` the failures are the whole story (its default is implied); any other value
    # names the definition it came from, then why the others did not apply.
    if because and rule.get("value") is not False:
        parts.append(
            "by " + ", ".join(f"{_flat(b.get('text'))} (line {b.get('line')})" for b in because)
        )
    parts.extend(
        f"{_flat(f.get('definition'))} (line {f.get('definition_line')}) failed at line "
        f"{f.get('line')}: {_flat(f.get('text'))}"
        for f in rule.get("failed") or []
    )
    return f"{head}: " + "; ".join(parts) if parts else head


def _short(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    return text if len(text) <= _VALUE_MAX else text[: _VALUE_MAX - 1] + "…"


def _flat(text: Any) -> str:
    return " ".join(str(text).split())
