"""`trustee-client config set-attestation-policy` against a real KBS: a policy that gives no
trust claims is refused with one line naming what it lacks, and the policy in force stays; a
v0.11-era configuration takes the per-claim rules of its dialect."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.harness import DEV_CONFIG, run_kbs, run_module
from trustee.attestation.policies import TRUST_CLAIMS_RULE as RULE
from trustee.attestation.policies import shipped_policy
from trustee.policy.explain import explain

NO_CLAIMS = "package policy\n\nimport rego.v1\n\n# trust_claims := {}\nallow := true\n"
PER_CLAIM = "package policy\n\nimport rego.v1\n\ndefault executables := 33\nhardware := 2\n"
CLAIMS_OBJECT = 'an object such as {"executables": 3, "hardware": 2}'


async def set_policy(url: str, policy: Path, *argv: str) -> tuple[int, str, str]:
    return await run_module(
        "trustee.client.cli", "--url", url, *argv, "config", "set-attestation-policy",
        "--policy-file", str(policy),
    )  # fmt: skip


async def refusal(url: str, policy: Path, *argv: str) -> str:
    code, out, err = await set_policy(url, policy, *argv)
    assert (code, out) == (1, ""), (code, out, err)
    assert err.count("\n") == 1, err
    return err.removesuffix("\n")


async def test_a_policy_without_trust_claims_is_refused(tmp_path: Path) -> None:
    no_claims = tmp_path / "no-claims.rego"
    no_claims.write_text(NO_CLAIMS)
    per_claim = tmp_path / "per-claim.rego"
    per_claim.write_text(PER_CLAIM)
    async with run_kbs(DEV_CONFIG, tmp_path) as kbs:
        assert await refusal(kbs.url, no_claims) == (
            "trustee-client: AttestationError: policy default_cpu defines no `trust_claims` "
            "rule: an attestation policy must define data.policy.trust_claims, "
            f"{CLAIMS_OBJECT}; without it every trust claim is 0 (`none`)"
        )
        assert await refusal(kbs.url, per_claim) == (
            "trustee-client: AttestationError: policy default_cpu defines no `trust_claims` "
            "rule: an attestation policy must define data.policy.trust_claims, "
            f"{CLAIMS_OBJECT}; without it every trust claim is 0 (`none`); executables, "
            "hardware: per-claim rules of the v0.11 dialect, read only under a v0.11-era "
            "configuration"
        )
        async with kbs.client() as http:
            # The shipped policy is still in force.
            r = await http.post(
                "/kbs/v0/policy-explain",
                json={"kind": "attestation", "input": {}, "rules": [RULE]},
            )
        assert r.status_code == 200, r.text
        shipped_decision = explain(shipped_policy("default_cpu"), {}, None, [RULE])["decision"]
        assert r.json()["decision"] == shipped_decision
        for name in ("default_cpu", "default_gpu"):
            shipped = tmp_path / f"{name}.rego"
            shipped.write_text(shipped_policy(name))
            code, _, err = await set_policy(kbs.url, shipped)
            assert code == 0, err


async def test_a_v0_11_configuration_takes_per_claim_rules(tmp_path: Path) -> None:
    config = (
        DEV_CONFIG.replace('authorization_mode = "InsecureAllowAll"', "insecure_api = true")
        + f'\n[policy_engine]\npolicy_path = "{tmp_path / "policy.rego"}"\n'
    )
    legacy = tmp_path / "default.rego"
    legacy.write_text(shipped_policy("default"))
    no_claims = tmp_path / "no-claims.rego"
    no_claims.write_text(NO_CLAIMS)
    async with run_kbs(config, tmp_path) as kbs:
        # kbs-client of that era uploads to policy id `default`.
        code, _, err = await set_policy(kbs.url, legacy, "--protocol", "0.1.1")
        assert code == 0, err
        assert await refusal(kbs.url, no_claims, "--protocol", "0.1.1") == (
            "trustee-client: AttestationError: policy default defines neither `trust_claims` "
            "nor a per-claim rule: an attestation policy must define data.policy.trust_claims, "
            f"{CLAIMS_OBJECT}, or one rule per claim (executables, hardware, configuration, …); "
            "without them every attestation fails"
        )
