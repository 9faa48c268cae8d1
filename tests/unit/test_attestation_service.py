"""The built-in Attestation Service end to end in-process: verify → transform → policy → EAR.

Uses the real `sample`/`sampledevice` verifiers of the native core, the shipped default
policies, the built-in RVPS and an ephemeral ES256 signer over a MemoryStore.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pytest

from trustee.attestation.ear import EarBroker, load_signer
from trustee.attestation.policies import (
    DEFAULT_POLICY_IDS,
    AttestationPolicyStore,
    PolicyStoreError,
    shipped_policy,
)
from trustee.attestation.rvps import ReferenceValueStore
from trustee.attestation.service import AttestationFailure, AttestationService
from trustee.config.model import TokenBrokerConfig
from trustee.crypto.jws import split_compact, verify_signature
from trustee.policy.engine import PolicyCache, PolicyCompileError
from trustee.protocol import binding
from trustee.protocol.rcar import EvidenceRequest
from trustee.storage.kv import NS_AS_POLICY, StorageError
from trustee.storage.memory import MemoryStore

TEE_PUBKEY = {
    "kty": "EC",
    "crv": "P-256",
    "alg": "ECDH-ES+A256KW",
    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
}
NONCE = "Y2hhbGxlbmdlLW5vbmNl"

FULL_SAMPLE_RVS: dict[str, Any] = {
    "svn": ["1"],
    "launch_digest": ["abcde"],
    "major_version": 1,
    "minimum_minor_version": 1,
}


@dataclass
class Env:
    store: MemoryStore
    policies: AttestationPolicyStore
    rvps: ReferenceValueStore
    broker: EarBroker
    service: AttestationService

    async def register(self, values: dict[str, Any]) -> None:
        payload = base64.b64encode(json.dumps(values).encode()).decode()
        await self.rvps.register(
            json.dumps({"version": "0.1.0", "type": "sample", "payload": payload}).encode()
        )

    def verified_claims(self, token: str) -> dict[str, Any]:
        parsed = split_compact(token)
        verify_signature(
            "ES256", self.broker.signer.key.public_key(), parsed.signing_input, parsed.signature
        )
        return parsed.claims()


async def make_env(**config: Any) -> Env:
    store = MemoryStore()
    policies = AttestationPolicyStore(store, PolicyCache())
    await policies.install_defaults()
    rvps = ReferenceValueStore(store)
    cfg = TokenBrokerConfig(**config)
    broker = EarBroker(cfg, load_signer(cfg))
    return Env(store, policies, rvps, broker, AttestationService(policies, rvps, broker, cfg))


def primary_runtime_data(additional_evidence: str = "") -> dict[str, Any]:
    return binding.primary_runtime_data(TEE_PUBKEY, NONCE, additional_evidence)


def jcs_sha384_b64(runtime_data: dict[str, Any]) -> str:
    # RFC 8785 for these plain string/object values equals sorted compact JSON.
    canonical = json.dumps(runtime_data, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha384(canonical).digest()
    assert digest == binding.runtime_data_digest(runtime_data, "sha384")
    return base64.b64encode(digest).decode()


def sample_request(
    runtime_data: dict[str, Any] | None = None,
    *,
    tee: str = "sample",
    svn: str = "1",
    report_data: str | None = None,
    init_data_toml: str | None = None,
    hash_algorithm: str = "sha384",
) -> EvidenceRequest:
    rd = runtime_data if runtime_data is not None else primary_runtime_data()
    if report_data is None:
        report_data = base64.b64encode(binding.runtime_data_digest(rd, hash_algorithm)).decode()
    return EvidenceRequest(
        tee=tee,
        evidence={"svn": svn, "report_data": report_data},
        runtime_data=rd,
        hash_algorithm=hash_algorithm,
        init_data_toml=init_data_toml,
    )


SAMPLE_CLAIMS = {
    "debug": False,
    "launch_digest": "abcde",
    "platform_version": {"major": 1, "minor": 4},
    "svn": "1",
}


def trust(executables: int, hardware: int, configuration: int) -> dict[str, int]:
    return {
        "instance-identity": 0,
        "configuration": configuration,
        "executables": executables,
        "file-system": 0,
        "hardware": hardware,
        "runtime-opaque": 0,
        "storage-opaque": 0,
        "sourced-data": 0,
    }


# --- the happy path ----------------------------------------------------------------------------


async def test_sample_evidence_without_reference_values() -> None:
    env = await make_env()
    rd = primary_runtime_data("e30")
    request = sample_request(rd, report_data=jcs_sha384_b64(rd))
    appraised = await env.service.evaluate([request], ["default"])

    claims = env.verified_claims(appraised.token)
    assert list(claims) == ["eat_profile", "iat", "ear.verifier-id", "submods", "exp", "iss"]
    assert list(claims["submods"]) == ["cpu0"]
    cpu0 = claims["submods"]["cpu0"]
    assert appraised.claims == claims  # exactly the signed payload
    assert list(cpu0) == [
        "ear.status",
        "ear.trustworthiness-vector",
        "ear.appraisal-policy-id",
        "ear.veraison.annotated-evidence",
        "ear.trustee.identifiers",
    ]
    assert cpu0["ear.status"] == "contraindicated"
    assert cpu0["ear.trustworthiness-vector"] == trust(33, 97, 2)
    assert list(cpu0["ear.trustworthiness-vector"]) == list(trust(0, 0, 0))
    assert cpu0["ear.appraisal-policy-id"] == "default"
    assert cpu0["ear.trustee.identifiers"] == {"validated": {}}

    annotated = cpu0["ear.veraison.annotated-evidence"]
    assert list(annotated) == ["report_data", "runtime_data_claims", "sample"]
    assert annotated["report_data"] == jcs_sha384_b64(rd)
    assert annotated["runtime_data_claims"] == rd
    assert annotated["runtime_data_claims"]["tee-pubkey"] == TEE_PUBKEY
    assert annotated["sample"] == SAMPLE_CLAIMS  # report_data hoisted out of `sample`
    assert "init_data" not in annotated and "init_data_claims" not in annotated


async def test_sample_evidence_with_full_reference_values_affirms() -> None:
    env = await make_env()
    await env.register(FULL_SAMPLE_RVS)
    appraised = await env.service.evaluate([sample_request()], ["default"])
    cpu0 = env.verified_claims(appraised.token)["submods"]["cpu0"]
    assert cpu0["ear.status"] == "affirming"
    assert cpu0["ear.trustworthiness-vector"] == trust(3, 2, 2)


async def test_reference_values_registered_after_first_evaluation_are_used() -> None:
    env = await make_env()
    first = await env.service.evaluate([sample_request()], ["default"])
    assert first.claims["submods"]["cpu0"]["ear.status"] == "contraindicated"
    await env.register(FULL_SAMPLE_RVS)
    second = await env.service.evaluate([sample_request()], ["default"])
    assert second.claims["submods"]["cpu0"]["ear.status"] == "affirming"


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
async def test_runtime_data_hash_algorithm(algorithm: str) -> None:
    env = await make_env()
    rd = primary_runtime_data()
    request = sample_request(rd, hash_algorithm=algorithm)
    appraised = await env.service.evaluate([request], ["default"])
    annotated = appraised.claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]
    expected = getattr(hashlib, algorithm)(
        json.dumps(rd, sort_keys=True, separators=(",", ":")).encode()
    ).digest()
    assert base64.b64decode(annotated["report_data"]) == expected
    # the sha384 digest does not satisfy a request bound with another algorithm
    with pytest.raises(AttestationFailure):
        await env.service.evaluate(
            [sample_request(rd, hash_algorithm=algorithm, report_data=jcs_sha384_b64(rd))],
            ["default"],
        )


async def test_wrong_report_data_fails_in_the_verifier() -> None:
    env = await make_env()
    rd = primary_runtime_data()
    other = primary_runtime_data("different")
    with pytest.raises(AttestationFailure) as info:
        await env.service.evaluate(
            [sample_request(rd, report_data=jcs_sha384_b64(other))], ["default"]
        )
    assert "Verifier evaluate failed" in info.value.reason
    assert "evidence[0] (sample)" in info.value.reason


async def test_report_data_mismatch_in_second_evidence_names_it() -> None:
    env = await make_env()
    device_rd = binding.device_runtime_data(TEE_PUBKEY, NONCE)
    bad = sample_request(device_rd, tee="sampledevice", report_data=base64.b64encode(b"x").decode())
    with pytest.raises(AttestationFailure) as info:
        await env.service.evaluate([sample_request(), bad], ["default"])
    assert "evidence[1] (sampledevice)" in info.value.reason
    assert "Verifier evaluate failed" in info.value.reason


async def test_additional_device_evidence_gives_gpu_submods() -> None:
    env = await make_env()
    device_rd = binding.device_runtime_data(TEE_PUBKEY, NONCE)
    requests = [
        sample_request(primary_runtime_data("additional")),
        sample_request(device_rd, tee="sampledevice", svn="2"),
        sample_request(device_rd, tee="sampledevice", svn="3"),
    ]
    appraised = await env.service.evaluate(requests, ["default"])
    submods = env.verified_claims(appraised.token)["submods"]
    assert list(submods) == ["cpu0", "gpu0", "gpu1"]
    gpu0 = submods["gpu0"]
    assert gpu0["ear.status"] == "contraindicated"
    assert gpu0["ear.trustworthiness-vector"] == trust(33, 97, 36)
    assert gpu0["ear.appraisal-policy-id"] == "default"
    assert "ear.trustee.identifiers" not in gpu0  # default_gpu has no extensions rule
    annotated = gpu0["ear.veraison.annotated-evidence"]
    assert list(annotated) == ["report_data", "runtime_data_claims", "sampledevice"]
    assert annotated["runtime_data_claims"] == device_rd
    assert annotated["sampledevice"] == {"svn": "2"}
    assert submods["gpu1"]["ear.veraison.annotated-evidence"]["sampledevice"] == {"svn": "3"}


async def test_custom_gpu_policy_affirms_sample_device() -> None:
    env = await make_env()
    await env.register({"device_svn": ["2"]})
    await env.policies.set_policy(
        "default_gpu",
        "package policy\nimport rego.v1\n"
        "default hardware := 97\n"
        'hardware := 2 if input.sampledevice.svn in query_reference_value("device_svn")\n'
        'trust_claims := {"hardware": hardware}\n',
    )
    device_rd = binding.device_runtime_data(TEE_PUBKEY, NONCE)
    appraised = await env.service.evaluate(
        [sample_request(), sample_request(device_rd, tee="sampledevice", svn="2")], ["default"]
    )
    gpu0 = appraised.claims["submods"]["gpu0"]
    assert gpu0["ear.status"] == "affirming"
    assert gpu0["ear.trustworthiness-vector"] == {"hardware": 2}


# --- init data ---------------------------------------------------------------------------------

INIT_DATA = """\
version = "0.1.0"
algorithm = "sha256"

[data]
"aa.toml" = '''
[token_configs.kbs]
url = "http://127.0.0.1:8080"
'''
"policy.rego" = '''
package agent_policy
policy_data := {
  "containers": [
    {"OCI": {"Annotations": {"io.kubernetes.cri.image-name": "pause"},
             "Process": {"User": {"UID": 65535}}}},
    {"OCI": {"Annotations": {"io.kubernetes.cri.image-name": "bitnami/nginx:latest"},
             "Process": {"User": {"UID": 1001}}}}
  ]
}
'''
"""


async def test_init_data_is_bound_and_exposed() -> None:
    env = await make_env()
    request = sample_request(init_data_toml=INIT_DATA)
    appraised = await env.service.evaluate([request], ["default"])
    cpu0 = env.verified_claims(appraised.token)["submods"]["cpu0"]
    annotated = cpu0["ear.veraison.annotated-evidence"]
    assert list(annotated) == [
        "init_data",
        "init_data_claims",
        "report_data",
        "runtime_data_claims",
        "sample",
    ]
    assert (
        annotated["init_data"]
        == base64.b64encode(hashlib.sha256(INIT_DATA.encode()).digest()).decode()
    )
    claims = annotated["init_data_claims"]
    assert claims["aa.toml"] == {"token_configs": {"kbs": {"url": "http://127.0.0.1:8080"}}}
    assert "policy.rego" not in claims
    assert len(claims["agent_policy_claims"]["containers"]) == 2
    assert annotated["sample"] == SAMPLE_CLAIMS
    assert cpu0["ear.trustee.identifiers"] == {
        "validated": {
            "container_images": ["pause", "bitnami/nginx:latest"],
            "container_uids": [65535, 1001],
        }
    }


async def test_bad_init_data_fails() -> None:
    env = await make_env()
    request = sample_request(init_data_toml='version = "0.1.0"\nalgorithm = "md5"\n')
    with pytest.raises(AttestationFailure) as info:
        await env.service.evaluate([request], ["default"])
    assert "evidence[0] (sample)" in info.value.reason
    assert "init-data" in info.value.reason


# --- preconditions, policy selection -------------------------------------------------------


async def test_empty_inputs() -> None:
    env = await make_env()
    with pytest.raises(AttestationFailure, match=r"^No verification requests provided\.$"):
        await env.service.evaluate([], ["default"])
    with pytest.raises(
        AttestationFailure, match=r"^No policy is given for EAR token generation\.$"
    ):
        await env.service.evaluate([sample_request()], [])


async def test_only_the_first_policy_id_is_used() -> None:
    env = await make_env()
    await env.policies.set_policy(
        "mine_cpu",
        'package policy\nimport rego.v1\ntrust_claims := {"executables": 3, "hardware": 2}\n',
    )
    appraised = await env.service.evaluate([sample_request()], ["mine", "default"])
    cpu0 = appraised.claims["submods"]["cpu0"]
    assert cpu0["ear.appraisal-policy-id"] == "mine"
    assert cpu0["ear.trustworthiness-vector"] == {"executables": 3, "hardware": 2}
    assert cpu0["ear.status"] == "affirming"
    with pytest.raises(AttestationFailure, match=r"Policy `other_cpu\.rego` not found"):
        await env.service.evaluate([sample_request()], ["other", "default"])


async def test_missing_class_policy_fails_the_whole_evaluation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = await make_env()
    assert await env.store.delete(NS_AS_POLICY, "default_gpu.rego")

    async def read_only(*_args: object, **_kwargs: object) -> bool:
        raise StorageError("read-only")

    # A lost default is re-installed at lookup; here the store cannot take it back.
    monkeypatch.setattr(env.store, "set", read_only)
    device_rd = binding.device_runtime_data(TEE_PUBKEY, NONCE)
    with pytest.raises(AttestationFailure) as info:
        await env.service.evaluate(
            [sample_request(), sample_request(device_rd, tee="sampledevice")], ["default"]
        )
    assert "Policy `default_gpu.rego` not found" in info.value.reason
    # cpu-only evidence still works
    await env.service.evaluate([sample_request()], ["default"])


# --- verbose_token -----------------------------------------------------------------------------


async def test_verbose_token_false_drops_additional_evidence() -> None:
    env = await make_env(verbose_token=False)
    rd = primary_runtime_data('{"big": "evidence"}')
    appraised = await env.service.evaluate([sample_request(rd)], ["default"])
    annotated = env.verified_claims(appraised.token)["submods"]["cpu0"][
        "ear.veraison.annotated-evidence"
    ]
    assert annotated["runtime_data_claims"] == {"tee-pubkey": TEE_PUBKEY, "nonce": NONCE}
    # the binding was still checked over the full runtime data
    assert annotated["report_data"] == jcs_sha384_b64(rd)


async def test_verbose_token_true_keeps_additional_evidence() -> None:
    env = await make_env(verbose_token=True)
    rd = primary_runtime_data('{"big": "evidence"}')
    appraised = await env.service.evaluate([sample_request(rd)], ["default"])
    annotated = appraised.claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]
    assert annotated["runtime_data_claims"]["additional-evidence"] == '{"big": "evidence"}'


# --- policy results ---------------------------------------------------------------------------

POLICY_HEAD = "package policy\nimport rego.v1\n"


async def test_undefined_trust_claims_fails() -> None:
    env = await make_env()
    await env.policies.set_policy(
        "default_cpu", POLICY_HEAD + 'trust_claims := {"hardware": 2} if input.nothing\n'
    )
    with pytest.raises(AttestationFailure) as info:
        await env.service.evaluate([sample_request()], ["default"])
    assert "Trust claims is not an object" in info.value.reason
    assert "default_cpu" in info.value.reason


async def test_absent_trust_claims_gives_all_zero_vector() -> None:
    env = await make_env()
    await env.policies.set_policy("default_cpu", POLICY_HEAD + "x := 1\n")
    appraised = await env.service.evaluate([sample_request()], ["default"])
    cpu0 = appraised.claims["submods"]["cpu0"]
    assert cpu0["ear.trustworthiness-vector"] == trust(0, 0, 0)
    assert cpu0["ear.status"] == "none"
    assert "ear.trustee.identifiers" not in cpu0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("trust_claims := {}\n", "At least one policy claim must be set."),
        ('trust_claims := ["hardware"]\n', "Trust claims is not an object"),
        ('trust_claims := {"hardware": "2"}\n', "Trust claim value not number"),
        ('trust_claims := {"bogus": 2}\n', "bogus"),
        (
            'trust_claims := {"hardware": 2}\n'
            'extensions := [{"name": "a", "key": 1, "value": 1}, '
            '{"name": "a", "key": 2, "value": 2}]\n',
            "duplicates",
        ),
        ('trust_claims := {"hardware": 2}\nextensions := {"name": "a"}\n', "not an array"),
    ],
)
async def test_invalid_policy_results_fail(body: str, message: str) -> None:
    env = await make_env()
    await env.policies.set_policy("default_cpu", POLICY_HEAD + body)
    with pytest.raises(AttestationFailure) as info:
        await env.service.evaluate([sample_request()], ["default"])
    assert message in info.value.reason


async def test_policy_extensions_are_emitted_sorted() -> None:
    env = await make_env()
    await env.policies.set_policy(
        "default_cpu",
        POLICY_HEAD + 'trust_claims := {"hardware": 2}\n'
        'extensions := [{"name": "z.ext", "key": 5, "value": [1]}, '
        '{"name": "a.ext", "key": 6, "value": {"k": "v"}}, '
        '{"name": "n.ext", "key": 7, "value": null}]\n',
    )
    appraised = await env.service.evaluate([sample_request()], ["default"])
    cpu0 = env.verified_claims(appraised.token)["submods"]["cpu0"]
    assert list(cpu0)[-2:] == ["a.ext", "z.ext"]
    assert cpu0["a.ext"] == {"k": "v"}
    assert cpu0["z.ext"] == [1]
    assert "n.ext" not in cpu0


async def test_policy_runtime_error_fails() -> None:
    env = await make_env()
    await env.policies.set_policy(
        "default_cpu",
        POLICY_HEAD + "x := 1 if input.sample\nx := 2 if input.sample\n"
        'trust_claims := {"hardware": x}\n',
    )
    with pytest.raises(AttestationFailure) as info:
        await env.service.evaluate([sample_request()], ["default"])
    assert "policy default_cpu" in info.value.reason
    assert "conflicts" in info.value.reason


async def test_policy_sees_the_annotated_evidence_as_input() -> None:
    env = await make_env()
    await env.policies.set_policy(
        "default_cpu",
        POLICY_HEAD + "default hardware := 97\n"
        "hardware := 2 if {\n"
        '  input.sample.svn == "1"\n'
        "  not input.sample.report_data\n"
        f'  input.runtime_data_claims.nonce == "{NONCE}"\n'
        '  input.runtime_data_claims["tee-pubkey"].kty == "EC"\n'
        "  count(input.report_data) > 0\n"
        "}\n"
        'trust_claims := {"hardware": hardware}\n',
    )
    appraised = await env.service.evaluate([sample_request()], ["default"])
    assert appraised.claims["submods"]["cpu0"]["ear.trustworthiness-vector"] == {"hardware": 2}


# --- policy store --------------------------------------------------------------------------------


async def test_install_defaults_stores_all_shipped_policies() -> None:
    store = MemoryStore()
    policies = AttestationPolicyStore(store, PolicyCache())
    assert await policies.install_defaults() == list(DEFAULT_POLICY_IDS)
    assert sorted(await policies.list_ids()) == sorted(DEFAULT_POLICY_IDS)
    for pid in DEFAULT_POLICY_IDS:
        assert await store.get(NS_AS_POLICY, f"{pid}.rego") == shipped_policy(pid).encode()
    assert await policies.install_defaults() == []


async def test_set_policy_with_invalid_rego_keeps_the_old_policy() -> None:
    env = await make_env()
    good = POLICY_HEAD + 'trust_claims := {"hardware": 2}\n'
    await env.policies.set_policy("default_cpu", good)
    with pytest.raises(PolicyCompileError):
        await env.policies.set_policy("default_cpu", "package policy\ntrust_claims := {\n")
    assert await env.store.get(NS_AS_POLICY, "default_cpu.rego") == good.encode()
    assert (await env.policies.get("default_cpu")).text == good
    appraised = await env.service.evaluate([sample_request()], ["default"])
    assert appraised.claims["submods"]["cpu0"]["ear.trustworthiness-vector"] == {"hardware": 2}


async def test_set_policy_rejects_bad_ids() -> None:
    env = await make_env()
    for bad in ("", "../x", "a/b", "a b"):
        with pytest.raises(PolicyStoreError):
            await env.policies.set_policy(bad, POLICY_HEAD + 'trust_claims := {"hardware": 2}\n')


async def test_user_modified_default_survives_install_defaults() -> None:
    env = await make_env()
    custom = POLICY_HEAD + 'trust_claims := {"executables": 3}\n'
    await env.policies.set_policy("default_cpu", custom)
    # a restart: a new policy store over the same storage installs the shipped defaults again
    restarted = AttestationPolicyStore(env.store, PolicyCache())
    installed = await restarted.install_defaults()
    assert "default_cpu" not in installed
    assert await env.store.get(NS_AS_POLICY, "default_cpu.rego") == custom.encode()
    assert (await restarted.get("default_cpu")).text == custom
    service = AttestationService(restarted, env.rvps, env.broker, env.service.config)
    appraised = await service.evaluate([sample_request()], ["default"])
    assert appraised.claims["submods"]["cpu0"]["ear.trustworthiness-vector"] == {"executables": 3}


async def test_stored_policy_that_does_not_compile() -> None:
    env = await make_env()
    await env.store.set(NS_AS_POLICY, "broken_cpu.rego", b"package policy\nthis is not rego {")
    with pytest.raises(AttestationFailure) as info:
        await env.service.evaluate([sample_request()], ["broken"])
    assert "broken_cpu.rego" in info.value.reason


@dataclass
class _Verified:
    json: str
    tee_class: str = "cpu"


async def test_legacy_tee_spelling_nests_claims_under_the_verifier_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Protocol 0.1.x/0.2.0 clients say "azsnpvtpm"; policies (default_cpu included) and the
    # remote-AS path name the TEE "az-snp-vtpm", whichever generation the guest speaks.
    env = await make_env()
    asked: list[str] = []

    async def verify(tee: str, *_: Any) -> list[_Verified]:
        asked.append(tee)
        return [_Verified(json.dumps({"tpm": {"pcr11": "00"}}))]

    monkeypatch.setattr(env.service.hardware, "verify_offloaded", verify)
    request = EvidenceRequest(
        tee="azsnpvtpm", evidence={}, runtime_data=primary_runtime_data(), hash_algorithm="sha384"
    )
    appraised = await env.service.evaluate([request], ["default"])
    annotated = appraised.claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]
    assert asked == ["az-snp-vtpm"]
    assert annotated == {"az-snp-vtpm": {"tpm": {"pcr11": "00"}}}
