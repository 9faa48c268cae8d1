"""Valid request bodies for every /kbs/v0 endpoint, and seeded mutations of them as JSON text.

Mutations work on Python values; `Raw` carries JSON text that no encoder would produce (NaN,
duplicate keys, lone surrogates, 100 000 nested brackets) so it can sit anywhere in a body.
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass
from typing import Any

from trustee.client.attesters import AttesterSet, SampleAttester
from trustee.client.kbs import GENERATIONS, Challenge
from trustee.crypto.b64 import b64url_encode

# The generations a current server accepts by default; 0.1.0 is opt-in.
FUZZ_GENERATIONS = ("0.1.1", "0.2.0", "0.4.0")

ALLOW_RESOURCE = (
    'package policy\nimport rego.v1\ndefault allow := false\nallow if data.plugin == "resource"\n'
)
# An attestation policy that compiles and claims nothing, stored under an id no flow uses.
QUIET_ATTESTATION = "package policy\nimport rego.v1\ndefault trust_claims := {}\n"
FUZZ_POLICY_ID = "fuzz-cpu"


@dataclass(frozen=True)
class Raw:
    """JSON text inserted verbatim by `dump`."""

    text: str


def dump(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dump(v) for v in value) + "]"
    return json.dumps(value)


def b64url(text: str) -> str:
    return b64url_encode(text.encode())


def auth_body(version: str = "0.4.0", tee: str = "sample") -> dict[str, Any]:
    return {"version": version, "tee": tee, "extra-params": ""}


def attest_body(version: str, nonce: str, tee_pubkey: dict[str, Any]) -> dict[str, Any]:
    """What a kbs-client of `version` sends, with sample evidence bound to `nonce`."""
    return GENERATIONS[version].attestation(
        Challenge(nonce=nonce, extra_params=""), tee_pubkey, AttesterSet(SampleAttester()), None
    )


def resource_policy_body(text: str = ALLOW_RESOURCE) -> dict[str, Any]:
    return {"policy": b64url(text)}


def attestation_policy_body(
    policy_id: str = FUZZ_POLICY_ID, text: str = QUIET_ATTESTATION
) -> dict[str, Any]:
    return {"type": "rego", "policy_id": policy_id, "policy": b64url(text)}


def reference_value_body(values: dict[str, Any] | None = None) -> dict[str, Any]:
    payload = dump(values if values is not None else {"fuzz-svn": ["1"]})
    return {
        "version": "0.1.0",
        "type": "sample",
        "payload": base64.b64encode(payload.encode()).decode(),
    }


def explain_body(kind: str = "resource") -> dict[str, Any]:
    return {
        "kind": kind,
        "policy": b64url(ALLOW_RESOURCE),
        "input": {"submods": {"cpu0": {"ear.status": "affirming"}}},
        "resource_path": "fuzz/guest/secret",
        "rules": ["data.policy.allow"],
    }


# ------------------------------------------------------------------ seeded JSON text mutations

# Scalars chosen to break parsers and encoders downstream of `json.loads`: integers past 64 bits
# and past Python's 4300-digit conversion limit, floats that overflow, the non-standard NaN
# tokens Python accepts, control characters and unpaired surrogates.
SPECIAL_SCALARS = (
    "0", "-0", "1e308", "1e309", "-1e400", "5e-324", "NaN", "Infinity", "-Infinity",
    str(2**63), str(-(2**63) - 1), str(2**64), "1" + "0" * 400, "9" * 5000,
    '""', '"\\u0000"', '"\\ud800"', '"\\udc00\\ud800"', '"\\u202e\\ufeff"',
    '"\u00e9\u4e2d\U0001f600"',
    "true", "false", "null", "[]", "{}", '{"":""}', '{"a":1,"a":2}',
)  # fmt: skip


def nested_text(depth: int, arrays: bool) -> Raw:
    if arrays:
        return Raw("[" * depth + "]" * depth)
    return Raw('{"a":' * depth + "1" + "}" * depth)


def nested(depth: int, rng: random.Random) -> Raw:
    return nested_text(depth, rng.random() < 0.5)


def random_string(rng: random.Random, limit: int = 40) -> str:
    alphabet = rng.choice(
        [
            "abcdefghijklmnopqrstuvwxyz0123456789-_./",
            "".join(chr(c) for c in range(0, 0x250)),
            "\u202e\ufeff\u0000\x7f\\\"'{}[]:,%$",
        ]
    )
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, limit)))


def random_value(rng: random.Random, depth: int = 3) -> Any:
    roll = rng.random()
    if depth <= 0 or roll < 0.45:
        pick = rng.randrange(6)
        if pick == 0:
            return Raw(rng.choice(SPECIAL_SCALARS))
        if pick == 1:
            return rng.randint(-(2**70), 2**70)
        if pick == 2:
            return rng.uniform(-1e6, 1e6)
        if pick == 3:
            return random_string(rng)
        return rng.choice([True, False, None])
    if roll < 0.7:
        return [random_value(rng, depth - 1) for _ in range(rng.randint(0, 4))]
    if roll < 0.75:
        return nested(rng.choice([50, 500, 2000, 20000]), rng)
    return {random_string(rng, 12): random_value(rng, depth - 1) for _ in range(rng.randint(0, 4))}


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths(v, (*prefix, i))
    return out


def replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        copy = dict(value)
        copy[head] = replace(value[head], rest, new)
        return copy
    copy_list = list(value)
    copy_list[head] = replace(value[head], rest, new)
    return copy_list


def drop(value: Any, path: tuple[Any, ...]) -> Any:
    parent_path, key = path[:-1], path[-1]
    parent = value
    for step in parent_path:
        parent = parent[step]
    if isinstance(parent, dict):
        smaller: Any = {k: v for k, v in parent.items() if k != key}
    else:
        smaller = [v for i, v in enumerate(parent) if i != key]
    return replace(value, parent_path, smaller)


def mutate(value: Any, rng: random.Random, rounds: int = 1) -> Any:
    """A near-valid variant: members replaced by other types, dropped, added or deep-nested."""
    for _ in range(rounds):
        path = rng.choice(paths(value))
        op = rng.randrange(5)
        if op == 0 and path:
            value = drop(value, path)
        elif op == 1:
            value = replace(value, path, random_value(rng))
        elif op == 2:
            value = replace(value, path, nested(rng.choice([100, 1000, 10000, 100000]), rng))
        elif op == 3 and isinstance(value, dict):
            value = {**value, random_string(rng, 12): random_value(rng)}
        else:
            value = replace(value, path, Raw(rng.choice(SPECIAL_SCALARS)))
    return value
