"""An attestation policy that gives no trust claims is refused at upload (it would make every
claim 0), in the v0.11 dialect one with per-claim rules is accepted, and every policy we ship
still is."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.e2e.harness import DEV_CONFIG
from trustee.assemble import assemble
from trustee.attestation.policies import (
    AttestationPolicyStore,
    PolicyStoreError,
    missing_claim_rules,
)
from trustee.attestation.service import AttestationService
from trustee.config import parse
from trustee.kbs import Kbs, Request
from trustee.policy.engine import PolicyCache
from trustee.protocol.errors import ERROR_TYPE_PREFIX
from trustee.storage.memory import MemoryStore

POLICIES = Path(__file__).resolve().parents[2] / "policies"

HEAD_MISSING = (
    "defines no `trust_claims` rule: an attestation policy must define "
    'data.policy.trust_claims, an object such as {"executables": 3, "hardware": 2}; without it '
    "every trust claim is 0 (`none`)"
)
LEGACY_MISSING = (
    "defines neither `trust_claims` nor a per-claim rule: an attestation policy must define "
    'data.policy.trust_claims, an object such as {"executables": 3, "hardware": 2}, or one rule '
    "per claim (executables, hardware, configuration, …); without them every attestation fails"
)

V1 = "package policy\nimport rego.v1\n"
# Only names in comments and strings: the engine, not the text, says which rules exist.
LOOKALIKE = (
    V1 + "# trust_claims := {}\n"
    'note := "trust_claims := {\\"executables\\": 3}"\n'
    "raw := `\nexecutables := 3\n`\n"
)
PER_CLAIM = V1 + "default executables := 33\nhardware := 2 if input.sample\n"
GIVING = {
    "v1": V1 + 'trust_claims := {"executables": 3}\n',
    "v0": 'package policy\ntrust_claims = {"executables": 3} { true }\n',
    "default only": V1 + "default trust_claims := {}\n",
    "conditional": V1 + 'trust_claims := {"hardware": 2} if input.sample.svn == "1"\n',
    # A rule that exists and fails on an empty input is still a rule.
    "failing on empty input": V1 + "trust_claims := x if x := 1 / 0\n",
    "conflicting": V1 + "trust_claims := 1 if true\ntrust_claims := 2 if true\n",
}


async def verdict(text: str, per_claim_rules: bool) -> str | None:
    return await missing_claim_rules(PolicyCache().compile(text), per_claim_rules)


@pytest.mark.parametrize("name", sorted(GIVING))
@pytest.mark.parametrize("per_claim_rules", [False, True])
async def test_a_policy_with_trust_claims_is_accepted(name: str, per_claim_rules: bool) -> None:
    assert await verdict(GIVING[name], per_claim_rules) is None


@pytest.mark.parametrize(
    "text",
    [
        V1 + "allow := true\n",
        LOOKALIKE,
        # The rule of another package is not data.policy.trust_claims.
        'package other\nimport rego.v1\ntrust_claims := {"executables": 3}\n',
    ],
    ids=["unrelated rule", "names in comments and strings", "other package"],
)
async def test_a_policy_without_trust_claims_is_refused(text: str) -> None:
    assert await verdict(text, False) == HEAD_MISSING
    assert await verdict(text, True) == LEGACY_MISSING


async def test_per_claim_rules_are_the_v0_11_dialect() -> None:
    assert await verdict(PER_CLAIM, True) is None
    assert await verdict(PER_CLAIM, False) == (
        HEAD_MISSING + "; executables, hardware: per-claim rules of the v0.11 dialect, read only "
        "under a v0.11-era configuration"
    )


@pytest.mark.parametrize("path", sorted(POLICIES.glob("default_*.rego")), ids=lambda p: p.stem)
async def test_every_shipped_policy_is_accepted_in_its_dialect(path: Path) -> None:
    # default_legacy is the v0.11 configurations' `default`; the others serve both dialects.
    dialects = [True] if path.stem == "default_legacy" else [False, True]
    for per_claim_rules in dialects:
        assert await verdict(path.read_text(), per_claim_rules) is None, path.name


async def test_the_store_refuses_before_storing_and_only_when_asked() -> None:
    kv = MemoryStore()
    policies = AttestationPolicyStore(kv, PolicyCache())
    await policies.install_defaults()
    shipped = await kv.get("attestation_service_policy", "default_cpu.rego")
    with pytest.raises(PolicyStoreError) as refused:
        await policies.set_policy("default_cpu", LOOKALIKE, require_claims=True)
    assert str(refused.value) == f"policy default_cpu {HEAD_MISSING}"
    assert await kv.get("attestation_service_policy", "default_cpu.rego") == shipped
    # Stored otherwise (a file edited in place is appraised, and its failure explained, later).
    await policies.set_policy("default_cpu", LOOKALIKE)
    assert await kv.get("attestation_service_policy", "default_cpu.rego") == LOOKALIKE.encode()


def upload(policy_id: str, text: str) -> Request:
    body = json.dumps(
        {
            "type": "rego",
            "policy_id": policy_id,
            "policy": base64.urlsafe_b64encode(text.encode()).decode().rstrip("="),
        }
    ).encode()
    path = "attestation-policy"
    return Request("POST", path, {}, body, {}, {}, f"/kbs/v0/{path}", "127.0.0.1")


async def kbs_of(config: str) -> Kbs:
    return await assemble(parse(config.replace("{port}", "8080")))


async def test_the_admin_api_answers_upstreams_error_with_the_reason() -> None:
    kbs = await kbs_of(DEV_CONFIG)
    reply = await kbs.handle(upload("default_cpu", PER_CLAIM))
    assert reply.status == 401
    assert json.loads(reply.body) == {
        "type": ERROR_TYPE_PREFIX + "AttestationError",
        "detail": "Attestation error: Set Attestation Policy failed",
        "reason": f"policy default_cpu {HEAD_MISSING}; executables, hardware: per-claim rules "
        "of the v0.11 dialect, read only under a v0.11-era configuration",
    }
    assert isinstance(kbs.attestation, AttestationService)
    stored = await kbs.attestation.policies.get("default_cpu")
    assert "trust_claims" in stored.text
    # upstream answers a successful set with 200 and an empty body; so do we.
    accepted = await kbs.handle(upload("default_cpu", GIVING["v1"]))
    assert (accepted.status, accepted.body) == (200, b"")


async def test_a_v0_11_configuration_takes_per_claim_rules(tmp_path: Path) -> None:
    config = (
        DEV_CONFIG.replace('authorization_mode = "InsecureAllowAll"', "insecure_api = true")
        + f'\n[policy_engine]\npolicy_path = "{tmp_path / "policy.rego"}"\n'
    )
    kbs = await kbs_of(config)
    assert isinstance(kbs.attestation, AttestationService) and kbs.attestation.legacy
    accepted = await kbs.handle(upload("default", (POLICIES / "default_legacy.rego").read_text()))
    assert (accepted.status, accepted.body) == (200, b"")
    refused = await kbs.handle(upload("default", V1 + "allow := true\n"))
    assert refused.status == 401
    assert json.loads(refused.body)["reason"] == f"policy default {LEGACY_MISSING}"
