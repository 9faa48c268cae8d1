"""Rego facade over the Rust extension: compile once, evaluate many times.

Compiled policies are cached by the SHA-256 of their text, so a policy stored by another worker
or re-read from disk is compiled only once per process.

Every evaluation is held to `PolicyLimits` (wall-clock time, memory); hitting one raises
PolicyLimitError, whose message names the limit and its value. An evaluation that runs on the
event loop gets a short slice of it; one that needs longer runs again, from the start, on a
thread, so a slow policy never keeps the worker from its other requests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from trustee import _core, jsonfast, offload

PolicyCompileError = _core.PolicyCompileError
PolicyEvalError = _core.PolicyEvalError
PolicyLimitError = _core.PolicyLimitError

# How long an evaluation may hold the event loop before it is moved to a thread. Normal
# policies take well under a millisecond; a hand-off costs ~0.5 ms, so only the slow ones pay.
INLINE_SLICE_MS = 15

ReferenceLookup = Callable[[str], str | None]


@dataclass(frozen=True)
class PolicyLimits:
    """What one evaluation may use (`[policy_engine] evaluation_timeout_ms`/`_memory_mib`)."""

    timeout_ms: int = 1000
    memory_mib: int = 64


DEFAULT_LIMITS = PolicyLimits()


@dataclass(frozen=True)
class RuleOutcome:
    kind: str  # "value" | "undefined" | "absent"
    value: Any = None

    @property
    def defined(self) -> bool:
        return self.kind == "value"


class CompiledPolicy:
    def __init__(self, text: str, limits: PolicyLimits = DEFAULT_LIMITS) -> None:
        self.text = text
        self.digest = hashlib.sha256(text.encode()).hexdigest()
        self.limits = limits
        self._policy = _core.Policy(text, limits.timeout_ms, limits.memory_mib)

    @property
    def syntax(self) -> str:
        return self._policy.syntax

    def evaluate(
        self,
        input_doc: Any,
        data_doc: Any | None,
        rules: list[str],
        reference_values: ReferenceLookup | None = None,
        *,
        input_json: str | None = None,
    ) -> list[RuleOutcome]:
        """`input_json`, when given, must be the JSON text of `input_doc`; it is used instead."""
        raw = self._policy.evaluate(
            jsonfast.dumps_str(input_doc) if input_json is None else input_json,
            None if data_doc is None else jsonfast.dumps_str(data_doc),
            rules,
            reference_values,
        )
        return _outcomes(raw)

    async def evaluate_offloaded(
        self,
        input_doc: Any,
        data_doc: Any | None,
        rules: list[str],
        reference_values: Mapping[str, str] | None = None,
        *,
        input_json: str | None = None,
    ) -> list[RuleOutcome]:
        """`evaluate` off the event loop, or on it for at most INLINE_SLICE_MS (see
        `offload.Offload.call_sliced`); reference values as an RVPS snapshot (id → JSON text)."""
        input_text = jsonfast.dumps_str(input_doc) if input_json is None else input_json
        data_text = None if data_doc is None else jsonfast.dumps_str(data_doc)
        policy = self._policy
        lookup = None if reference_values is None else reference_values.get
        raw = await offload.DEFAULT.call_sliced(
            lambda job_id: policy.submit_evaluate(
                job_id,
                input_text,
                data_text,
                rules,
                None if reference_values is None else offload.reference_values(reference_values),
            ),
            lambda: policy.evaluate_slice(input_text, data_text, rules, INLINE_SLICE_MS, lookup),
            lambda: policy.evaluate(input_text, data_text, rules, lookup),
        )
        return _outcomes(raw)


def _outcomes(raw: list[_core.RuleOutcome]) -> list[RuleOutcome]:
    return [
        RuleOutcome(o.kind, jsonfast.loads_trusted(o.json) if o.kind == "value" else None)
        for o in raw
    ]


class PolicyCache:
    def __init__(self, max_entries: int = 256, limits: PolicyLimits = DEFAULT_LIMITS) -> None:
        self._cache: dict[str, CompiledPolicy] = {}
        self._max = max_entries
        self.limits = limits

    def compile(self, text: str) -> CompiledPolicy:
        """Compile (or reuse) `text`; raises PolicyCompileError with the Rego error."""
        key = hashlib.sha256(text.encode()).hexdigest()
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        compiled = CompiledPolicy(text, self.limits)
        if len(self._cache) >= self._max:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = compiled
        return compiled
