"""The built-in AS under a v0.11-era configuration.

Legacy mode: the first CPU submod is named `cpu` and is appraised with policy id `default`
(policy_ids[0]), not `default_cpu`; the policy may use `trust_claims` or the per-claim dialect
(`executables`, `hardware`, `configuration`, …) with reference values in `data.reference`.
Policies live at `<policy_dir>/opa/<id>.rego`, reference values in the LocalJson array file.
HEAD mode is unchanged (`cpu0`, `default_cpu`).
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.shared import seed_file
from trustee.assemble import assemble
from trustee.attestation.ear import EarBroker, load_signer
from trustee.attestation.policies import (
    DEFAULT_POLICY_IDS,
    LEGACY_DEFAULT_POLICY_IDS,
    AttestationPolicyStore,
    shipped_policy,
)
from trustee.attestation.rvps import ReferenceValueStore
from trustee.attestation.service import AttestationFailure, AttestationService
from trustee.config import parse
from trustee.config.model import TokenBrokerConfig
from trustee.crypto.jws import split_compact, verify_signature
from trustee.policy.engine import PolicyCache
from trustee.protocol import binding
from trustee.protocol.rcar import EvidenceRequest
from trustee.storage.kv import KeyValueStore, StorageError
from trustee.storage.localfs import LocalFsStore
from trustee.storage.memory import MemoryStore
from trustee.storage.rvfile import ReferenceValueFile

POLICIES_DIR = Path(__file__).resolve().parents[2] / "policies"

# The RFC 7517 A.1 RSA key as a G1 client exports it, the nonce
# bytes 00..1f, and the report data the sample attester returns for them.
RFC_RSA_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPe"
    "bWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY3"
    "68QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM"
    "4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)
TEE_PUBKEY = {"kty": "RSA", "alg": "RSA1_5", "n": RFC_RSA_N, "e": "AQAB"}
NONCE = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
REPORT_DATA = "UsbUQEYqzIL35lTN47l6MjhK+9U1DhEBOxUMjaRcKCZj3vl0Ka9jk97o7w+PSFYS"

SEED_VECTOR = {"configuration": 36, "executables": 33, "hardware": 97}
FUTURE = "2099-01-01T00:00:00Z"

TRUST_CLAIMS_POLICY = (
    'package policy\nimport rego.v1\ntrust_claims := {"executables": 3, "hardware": 2}\n'
)


def legacy_request(svn: str = "1") -> EvidenceRequest:
    """What the legacy /attest handler builds: binding over {nonce, tee-pubkey}, SHA-384."""
    runtime_data = binding.device_runtime_data(TEE_PUBKEY, NONCE)
    return EvidenceRequest(
        tee="sample",
        evidence={"report_data": REPORT_DATA, "svn": svn},
        runtime_data=runtime_data,
        hash_algorithm="sha384",
    )


def head_request() -> EvidenceRequest:
    rd = binding.primary_runtime_data(TEE_PUBKEY, NONCE, "")
    report_data = base64.b64encode(binding.runtime_data_digest(rd, "sha384")).decode()
    return EvidenceRequest(
        tee="sample",
        evidence={"svn": "1", "report_data": report_data},
        runtime_data=rd,
        hash_algorithm="sha384",
    )


def device_request(svn: str = "2") -> EvidenceRequest:
    rd = binding.device_runtime_data(TEE_PUBKEY, NONCE)
    report_data = base64.b64encode(binding.runtime_data_digest(rd, "sha384")).decode()
    return EvidenceRequest(
        tee="sampledevice",
        evidence={"svn": svn, "report_data": report_data},
        runtime_data=rd,
        hash_algorithm="sha384",
    )


def rv_record(name: str, values: list[str], expiration: str = FUTURE) -> dict[str, Any]:
    """The v0.11 LocalJson record form."""
    return {
        "version": "0.1.0",
        "name": name,
        "expiration": expiration,
        "hash-value": [{"alg": "sha256", "value": v} for v in values],
    }


def write_rv_file(path: Path, records: list[dict[str, Any]], bump_s: int = 0) -> None:
    path.write_text(json.dumps(records) if records else "[\n]")
    if bump_s:
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump_s * 1_000_000_000))


@dataclass
class Env:
    policy_dir: Path
    rv_file: Path
    policies: AttestationPolicyStore
    broker: EarBroker
    service: AttestationService
    installed: list[str]

    def verified_claims(self, token: str) -> dict[str, Any]:
        parsed = split_compact(token)
        verify_signature(
            "ES256", self.broker.signer.key.public_key(), parsed.signing_input, parsed.signature
        )
        return parsed.claims()


async def make_env(
    tmp_path: Path, *, legacy: bool = True, records: list[dict[str, Any]] | None = None
) -> Env:
    """As assemble.assemble assembles a v0.11 config: <policy_dir>/opa policies, the RV file."""
    policy_dir = tmp_path / "policies"
    rv_file = tmp_path / "reference-values.json"
    write_rv_file(rv_file, records or [])
    store: KeyValueStore = LocalFsStore(policy_dir) if legacy else MemoryStore()
    policies = AttestationPolicyStore(
        store,
        PolicyCache(),
        namespace="opa" if legacy else "attestation_service_policy",
        defaults=LEGACY_DEFAULT_POLICY_IDS if legacy else DEFAULT_POLICY_IDS,
    )
    installed = await policies.install_defaults()
    rvps = ReferenceValueStore(ReferenceValueFile(rv_file))
    cfg = TokenBrokerConfig()
    broker = EarBroker(cfg, load_signer(cfg))
    service = AttestationService(policies, rvps, broker, cfg, legacy=legacy)
    return Env(policy_dir, rv_file, policies, broker, service, installed)


# --- policy files ------------------------------------------------------------------------------


async def test_legacy_defaults_land_in_policy_dir_opa(tmp_path: Path) -> None:
    env = await make_env(tmp_path)
    assert env.installed == list(LEGACY_DEFAULT_POLICY_IDS)
    assert LEGACY_DEFAULT_POLICY_IDS[0] == "default"
    opa = env.policy_dir / "opa"
    assert sorted(p.name for p in opa.iterdir()) == sorted(
        f"{pid}.rego" for pid in LEGACY_DEFAULT_POLICY_IDS
    )
    assert not (opa / "default_cpu.rego").exists()
    shipped = (POLICIES_DIR / "default_legacy.rego").read_text()
    assert (opa / "default.rego").read_text() == shipped == shipped_policy("default")
    # The per-claim dialect, not trust_claims.
    assert "trust_claims" not in shipped.split("package policy", 1)[1]


async def test_operator_edited_default_is_kept_and_used(tmp_path: Path) -> None:
    opa = tmp_path / "policies" / "opa"
    opa.mkdir(parents=True)
    (opa / "default.rego").write_text(TRUST_CLAIMS_POLICY)
    env = await make_env(tmp_path)
    assert "default" not in env.installed
    assert (opa / "default.rego").read_text() == TRUST_CLAIMS_POLICY
    appraised = await env.service.evaluate([legacy_request()], ["default"])
    cpu = appraised.claims["submods"]["cpu"]
    assert cpu["ear.trustworthiness-vector"] == {"executables": 3, "hardware": 2}
    assert cpu["ear.status"] == "affirming"


async def test_set_policy_writes_policy_dir_opa_id_rego(tmp_path: Path) -> None:
    env = await make_env(tmp_path)
    await env.policies.set_policy("default", TRUST_CLAIMS_POLICY)
    assert (env.policy_dir / "opa" / "default.rego").read_text() == TRUST_CLAIMS_POLICY
    await env.policies.set_policy("mine", TRUST_CLAIMS_POLICY)
    assert (env.policy_dir / "opa" / "mine.rego").read_text() == TRUST_CLAIMS_POLICY
    assert "mine" in await env.policies.list_ids()


# --- the seed flow -----------------------------------------------------------------------------


async def test_binding_matches_the_spec_vector() -> None:
    rd = legacy_request().runtime_data
    assert rd == {"tee-pubkey": TEE_PUBKEY, "nonce": NONCE}
    assert base64.b64encode(binding.runtime_data_digest(rd, "sha384")).decode() == REPORT_DATA


async def test_seed_without_reference_values_is_contraindicated(tmp_path: Path) -> None:
    env = await make_env(tmp_path)  # the seed's `[\n]` RV file
    appraised = await env.service.evaluate([legacy_request()], ["default"])
    claims = env.verified_claims(appraised.token)
    assert claims["submods"] == appraised.claims["submods"]
    assert list(claims["submods"]) == ["cpu"]
    cpu = claims["submods"]["cpu"]
    assert cpu["ear.status"] == "contraindicated"
    assert cpu["ear.trustworthiness-vector"] == SEED_VECTOR
    assert list(cpu["ear.trustworthiness-vector"]) == ["configuration", "executables", "hardware"]
    assert cpu["ear.appraisal-policy-id"] == "default"
    annotated = cpu["ear.veraison.annotated-evidence"]
    assert annotated["report_data"] == REPORT_DATA
    # No additional-evidence member in the legacy runtime data claims.
    assert annotated["runtime_data_claims"] == {"nonce": NONCE, "tee-pubkey": TEE_PUBKEY}
    assert annotated["sample"]["svn"] == "1"
    assert "report_data" not in annotated["sample"]


async def test_svn_reference_value_gives_hardware_2_warning(tmp_path: Path) -> None:
    env = await make_env(tmp_path, records=[rv_record("svn", ["1"])])
    appraised = await env.service.evaluate([legacy_request()], ["default"])
    cpu = appraised.claims["submods"]["cpu"]
    assert cpu["ear.trustworthiness-vector"] == {
        "configuration": 36,
        "executables": 33,
        "hardware": 2,
    }
    assert cpu["ear.status"] == "warning"


async def test_reference_values_are_matched_by_membership(tmp_path: Path) -> None:
    env = await make_env(tmp_path, records=[rv_record("svn", ["0", "2"])])
    appraised = await env.service.evaluate([legacy_request(svn="1")], ["default"])
    assert appraised.claims["submods"]["cpu"]["ear.trustworthiness-vector"]["hardware"] == 97
    # svn is not part of the binding, so the same report data serves another svn.
    appraised = await env.service.evaluate([legacy_request(svn="2")], ["default"])
    assert appraised.claims["submods"]["cpu"]["ear.trustworthiness-vector"]["hardware"] == 2


async def test_expired_reference_value_is_not_used(tmp_path: Path) -> None:
    env = await make_env(
        tmp_path, records=[rv_record("svn", ["1"], expiration="2000-01-01T00:00:00Z")]
    )
    appraised = await env.service.evaluate([legacy_request()], ["default"])
    assert appraised.claims["submods"]["cpu"]["ear.trustworthiness-vector"] == SEED_VECTOR


async def test_rv_file_edit_is_used_without_restart(tmp_path: Path) -> None:
    env = await make_env(tmp_path)
    first = await env.service.evaluate([legacy_request()], ["default"])
    assert first.claims["submods"]["cpu"]["ear.status"] == "contraindicated"
    write_rv_file(env.rv_file, [rv_record("svn", ["1"])], bump_s=5)
    second = await env.service.evaluate([legacy_request()], ["default"])
    assert second.claims["submods"]["cpu"]["ear.trustworthiness-vector"]["hardware"] == 2
    assert second.claims["submods"]["cpu"]["ear.status"] == "warning"
    write_rv_file(env.rv_file, [], bump_s=10)
    third = await env.service.evaluate([legacy_request()], ["default"])
    assert third.claims["submods"]["cpu"]["ear.trustworthiness-vector"] == SEED_VECTOR


async def test_all_sample_reference_values(tmp_path: Path) -> None:
    env = await make_env(
        tmp_path, records=[rv_record("svn", ["1"]), rv_record("launch_digest", ["abcde"])]
    )
    appraised = await env.service.evaluate([legacy_request()], ["default"])
    cpu = appraised.claims["submods"]["cpu"]
    # The sample verifier reports launch_digest "abcde" (as upstream from v0.12).
    assert cpu["ear.veraison.annotated-evidence"]["sample"]["launch_digest"] == "abcde"
    assert cpu["ear.trustworthiness-vector"] == {
        "configuration": 36,
        "executables": 3,
        "hardware": 2,
    }
    # configuration stays 36 (no sample rule sets it): still a warning.
    assert cpu["ear.status"] == "warning"


# --- the policy dialects in legacy mode ------------------------------------------------------


async def test_trust_claims_policy_still_works_in_legacy_mode(tmp_path: Path) -> None:
    env = await make_env(tmp_path)
    await env.policies.set_policy("default", TRUST_CLAIMS_POLICY)
    appraised = await env.service.evaluate([legacy_request()], ["default"])
    cpu = appraised.claims["submods"]["cpu"]
    assert cpu["ear.trustworthiness-vector"] == {"executables": 3, "hardware": 2}
    assert cpu["ear.status"] == "affirming"


async def test_trust_claims_wins_over_per_claim_rules(tmp_path: Path) -> None:
    env = await make_env(tmp_path)
    await env.policies.set_policy(
        "default",
        'package policy\nimport rego.v1\ntrust_claims := {"hardware": 2}\nexecutables := 97\n',
    )
    appraised = await env.service.evaluate([legacy_request()], ["default"])
    assert appraised.claims["submods"]["cpu"]["ear.trustworthiness-vector"] == {"hardware": 2}


async def test_per_claim_rules_read_data_reference(tmp_path: Path) -> None:
    env = await make_env(tmp_path, records=[rv_record("my_svns", ["1"])])
    await env.policies.set_policy(
        "default",
        "package policy\nimport rego.v1\n"
        "default hardware := 97\n"
        "hardware := 2 if input.sample.svn in data.reference.my_svns\n"
        "executables := count(data.reference.my_svns)\n",
    )
    appraised = await env.service.evaluate([legacy_request()], ["default"])
    assert appraised.claims["submods"]["cpu"]["ear.trustworthiness-vector"] == {
        "executables": 1,
        "hardware": 2,
    }


async def test_old_brace_syntax_per_claim_policy(tmp_path: Path) -> None:
    # v0.11 shipped Rego v0 engines: `rule { … }` without `if`.
    env = await make_env(tmp_path, records=[rv_record("svn", ["1"])])
    await env.policies.set_policy(
        "default",
        "package policy\ndefault hardware = 97\n"
        "hardware = 2 { input.sample.svn == data.reference.svn[_] }\n",
    )
    appraised = await env.service.evaluate([legacy_request()], ["default"])
    assert appraised.claims["submods"]["cpu"]["ear.trustworthiness-vector"] == {"hardware": 2}


@pytest.mark.parametrize("value", ['"2"', "2.5", "true", "[2]", '{"a": 1}'])
async def test_non_integer_per_claim_rule_fails(tmp_path: Path, value: str) -> None:
    env = await make_env(tmp_path)
    await env.policies.set_policy(
        "default", f"package policy\nimport rego.v1\nexecutables := 3\nhardware := {value}\n"
    )
    with pytest.raises(AttestationFailure) as info:
        await env.service.evaluate([legacy_request()], ["default"])
    assert "hardware" in info.value.reason
    assert "default" in info.value.reason


async def test_undefined_per_claim_rule_fails(tmp_path: Path) -> None:
    env = await make_env(tmp_path)
    await env.policies.set_policy(
        "default",
        "package policy\nimport rego.v1\nexecutables := 3\nhardware := 2 if input.nothing\n",
    )
    with pytest.raises(AttestationFailure, match="hardware"):
        await env.service.evaluate([legacy_request()], ["default"])


async def test_policy_without_any_claim_fails(tmp_path: Path) -> None:
    env = await make_env(tmp_path)
    await env.policies.set_policy("default", "package policy\nimport rego.v1\nallow := true\n")
    with pytest.raises(AttestationFailure):
        await env.service.evaluate([legacy_request()], ["default"])


async def test_policy_id_is_policy_ids_first(tmp_path: Path) -> None:
    env = await make_env(tmp_path)
    await env.policies.set_policy("mine", TRUST_CLAIMS_POLICY)
    appraised = await env.service.evaluate([legacy_request()], ["mine", "default"])
    cpu = appraised.claims["submods"]["cpu"]
    assert cpu["ear.appraisal-policy-id"] == "mine"
    assert cpu["ear.trustworthiness-vector"] == {"executables": 3, "hardware": 2}
    with pytest.raises(AttestationFailure, match=r"Policy `other\.rego` not found"):
        await env.service.evaluate([legacy_request()], ["other"])


async def test_legacy_device_evidence_keeps_head_names(tmp_path: Path) -> None:
    env = await make_env(tmp_path)
    appraised = await env.service.evaluate([legacy_request(), device_request()], ["default"])
    submods = appraised.claims["submods"]
    assert list(submods) == ["cpu", "gpu0"]
    assert submods["cpu"]["ear.trustworthiness-vector"] == SEED_VECTOR
    assert submods["gpu0"]["ear.appraisal-policy-id"] == "default"


# --- operator deployment shapes --------------------------------------------------------------


async def test_as_policy_file_edit_is_used_without_restart(tmp_path: Path) -> None:
    # trustee-operator v0.3.0 mounts the attestation-policy ConfigMap at <policy_dir>/opa and
    # kubelet refreshes default.rego in place; v0.11 read <policy_dir>/opa/<id>.rego on every
    # evaluation, so the edit applies without a restart.
    env = await make_env(tmp_path)
    first = await env.service.evaluate([legacy_request()], ["default"])
    assert first.claims["submods"]["cpu"]["ear.trustworthiness-vector"] == SEED_VECTOR
    (env.policy_dir / "opa" / "default.rego").write_text(TRUST_CLAIMS_POLICY)
    second = await env.service.evaluate([legacy_request()], ["default"])
    assert second.claims["submods"]["cpu"]["ear.trustworthiness-vector"] == {
        "executables": 3,
        "hardware": 2,
    }


class ReadOnlyStore(LocalFsStore):
    """A LocalFsStore whose directory is a read-only ConfigMap volume (EROFS on writes)."""

    async def set(self, namespace: str, key: str, value: bytes, *, overwrite: bool = True) -> bool:
        if not overwrite and await self.get(namespace, key) is not None:
            return False
        raise StorageError(f"cannot write {self.root / namespace / key}: Read-only file system")


async def test_read_only_operator_policy_dir_does_not_prevent_start(tmp_path: Path) -> None:
    # kbsAttestationPolicyConfigMapName: <policy_dir>/opa is a read-only volume holding only
    # default.rego. v0.11 wrote nothing there (default.rego exists) and started.
    opa = tmp_path / "policies" / "opa"
    opa.mkdir(parents=True)
    (opa / "default.rego").write_text(TRUST_CLAIMS_POLICY)
    policies = AttestationPolicyStore(
        ReadOnlyStore(tmp_path / "policies"),
        PolicyCache(),
        namespace="opa",
        defaults=LEGACY_DEFAULT_POLICY_IDS,
    )
    await policies.install_defaults()  # must not raise
    rvps = ReferenceValueStore(MemoryStore())
    cfg = TokenBrokerConfig()
    service = AttestationService(policies, rvps, EarBroker(cfg, load_signer(cfg)), cfg, legacy=True)
    appraised = await service.evaluate([legacy_request()], ["default"])
    assert appraised.claims["submods"]["cpu"]["ear.status"] == "affirming"


@pytest.mark.parametrize("content", ["[", '{"svn": ["1"]}', "[{]"])
async def test_malformed_rv_file_is_an_attestation_failure(tmp_path: Path, content: str) -> None:
    # An operator's typo in the reference-values ConfigMap: /attest must fail the v0.11 way
    # (401 "RCAR handshake Attest failed", reason naming the file), not with an internal error.
    env = await make_env(tmp_path)
    env.rv_file.write_text(content)
    with pytest.raises(AttestationFailure) as info:
        await env.service.evaluate([legacy_request()], ["default"])
    assert str(env.rv_file) in info.value.reason


# --- HEAD is unchanged --------------------------------------------------------------------------


async def test_head_mode_uses_cpu0_and_default_cpu(tmp_path: Path) -> None:
    env = await make_env(tmp_path, legacy=False)
    assert env.installed == list(DEFAULT_POLICY_IDS)
    appraised = await env.service.evaluate([head_request()], ["default"])
    claims = env.verified_claims(appraised.token)
    assert list(claims["submods"]) == ["cpu0"]
    cpu0 = claims["submods"]["cpu0"]
    assert cpu0["ear.appraisal-policy-id"] == "default"
    assert cpu0["ear.status"] == "contraindicated"
    assert "additional-evidence" in cpu0["ear.veraison.annotated-evidence"]["runtime_data_claims"]


async def test_same_store_head_picks_default_cpu_legacy_picks_default(tmp_path: Path) -> None:
    store = MemoryStore()
    policies = AttestationPolicyStore(store, PolicyCache())
    await policies.set_policy(
        "default", 'package policy\nimport rego.v1\ntrust_claims := {"hardware": 2}\n'
    )
    await policies.set_policy(
        "default_cpu", 'package policy\nimport rego.v1\ntrust_claims := {"executables": 3}\n'
    )
    rvps = ReferenceValueStore(MemoryStore())
    cfg = TokenBrokerConfig()
    broker = EarBroker(cfg, load_signer(cfg))
    head = AttestationService(policies, rvps, broker, cfg)
    legacy = AttestationService(policies, rvps, broker, cfg, legacy=True)

    head_out = (await head.evaluate([head_request()], ["default"])).claims["submods"]
    assert list(head_out) == ["cpu0"]
    assert head_out["cpu0"]["ear.trustworthiness-vector"] == {"executables": 3}

    legacy_out = (await legacy.evaluate([legacy_request()], ["default"])).claims["submods"]
    assert list(legacy_out) == ["cpu"]
    assert legacy_out["cpu"]["ear.trustworthiness-vector"] == {"hardware": 2}


async def test_head_mode_does_not_consult_per_claim_rules(tmp_path: Path) -> None:
    env = await make_env(tmp_path, legacy=False)
    await env.policies.set_policy(
        "default_cpu", "package policy\nimport rego.v1\nhardware := 2\nexecutables := 3\n"
    )
    appraised = await env.service.evaluate([head_request()], ["default"])
    vector = appraised.claims["submods"]["cpu0"]["ear.trustworthiness-vector"]
    assert "hardware" not in vector or vector["hardware"] != 2
    assert "executables" not in vector or vector["executables"] != 3


# --- the seed deployment, assembled -----------------------------------------------------------


def _seed_text() -> str:
    return seed_file("kbs-config.toml").read_text()


async def test_seed_config_assembles_a_legacy_kbs(tmp_path: Path) -> None:
    text = _seed_text()
    for old in (
        "/opt/confidential-containers/attestation-service/policies",
        "/opt/confidential-containers/rvps/reference-values/reference-values.json",
        "/opt/confidential-containers/kbs/repository",
        "/opt/confidential-containers/opa/policy.rego",
    ):
        assert old in text
        text = text.replace(old, str(tmp_path / old.lstrip("/")))
    rv_file = tmp_path / "opt/confidential-containers/rvps/reference-values/reference-values.json"
    rv_file.parent.mkdir(parents=True)
    rv_file.write_text(seed_file("reference-values.json").read_text())
    config = parse(text)
    assert config.dialect == "v0.11"

    kbs = await assemble(config)
    assert isinstance(kbs.attestation, AttestationService) and kbs.attestation.legacy
    assert kbs.resource_policy.legacy
    opt = tmp_path / "opt/confidential-containers"
    assert (opt / "attestation-service/policies/opa/default.rego").read_text() == shipped_policy(
        "default"
    )
    assert (opt / "kbs/repository/default").is_dir()
    assert (opt / "opa/policy.rego").is_file()  # the legacy default, written as it was absent

    appraised = await kbs.attestation.evaluate([legacy_request()], ["default"])
    cpu = appraised.claims["submods"]["cpu"]
    assert cpu["ear.trustworthiness-vector"] == SEED_VECTOR
    assert cpu["ear.status"] == "contraindicated"
