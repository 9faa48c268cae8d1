"""The shipped default attestation policies against the verified vectors.

Policies are loaded exactly as the service stores them (`shipped_policy`) and evaluated through
the same facade the AS uses, with `query_reference_value` backed by a recording lookup.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from trustee.attestation import ear
from trustee.attestation.policies import DEFAULT_POLICY_IDS, shipped_policy
from trustee.policy.engine import CompiledPolicy, RuleOutcome

RULES = ["data.policy.trust_claims", "data.policy.extensions"]

FULL_SAMPLE_RVS: dict[str, Any] = {
    "svn": ["1"],
    "launch_digest": ["abcde"],
    "major_version": 1,
    "minimum_minor_version": 1,
}


class Lookup:
    """`query_reference_value` backend that records every id the policy asks for."""

    def __init__(self, values: dict[str, Any] | None = None) -> None:
        self.values = values or {}
        self.queried: list[str] = []

    def __call__(self, rv_id: str) -> str | None:
        self.queried.append(rv_id)
        if rv_id not in self.values:
            return None
        return json.dumps(self.values[rv_id])


def trust(executables: int, hardware: int, configuration: int) -> dict[str, int]:
    return {
        "configuration": configuration,
        "executables": executables,
        "file-system": 0,
        "hardware": hardware,
        "instance-identity": 0,
        "runtime-opaque": 0,
        "sourced-data": 0,
        "storage-opaque": 0,
    }


def evaluate(
    name: str, input_doc: dict[str, Any], lookup: Lookup | None = None
) -> tuple[RuleOutcome, RuleOutcome]:
    policy = CompiledPolicy(shipped_policy(name))
    trust_claims, extensions = policy.evaluate(input_doc, None, RULES, lookup or Lookup())
    return trust_claims, extensions


def status(outcome: RuleOutcome) -> str:
    assert outcome.kind == "value"
    return ear.status_of(ear.trust_vector(outcome.value))


def runtime_data() -> dict[str, Any]:
    return {
        "tee-pubkey": {"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW", "x": "eA", "y": "eQ"},
        "nonce": "c2FtcGxlLW5vbmNl",
        "additional-evidence": "",
    }


def sample_input(**sample_overrides: Any) -> dict[str, Any]:
    """The policy input the AS builds for the sample verifier (svn "1")."""
    rd = runtime_data()
    report_data = base64.b64encode(
        hashlib.sha384(json.dumps(rd, sort_keys=True, separators=(",", ":")).encode()).digest()
    ).decode()
    sample = {
        "debug": False,
        "launch_digest": "abcde",
        "platform_version": {"major": 1, "minor": 4},
        "svn": "1",
    }
    sample.update(sample_overrides)
    return {"report_data": report_data, "runtime_data_claims": rd, "sample": sample}


# --- verified vectors ----------------------------------------------------------------------


def test_vector_a_default_cpu_without_reference_values() -> None:
    trust_claims, extensions = evaluate("default_cpu", sample_input())
    assert trust_claims.kind == "value"
    assert trust_claims.value == trust(33, 97, 2)
    assert status(trust_claims) == "contraindicated"
    # no init data: the identifiers extension is still emitted, with nothing validated
    assert extensions.kind == "value"
    assert extensions.value == [
        {"name": "ear.trustee.identifiers", "key": -18, "value": {"validated": {}}}
    ]


def test_vector_a_reference_value_lookups_short_circuit() -> None:
    lookup = Lookup()
    evaluate("default_cpu", sample_input(), lookup)
    # Only the sample section's first lookups run; other TEE sections are guarded by input.<tee>
    # and the remaining sample conditions are skipped once an `in null` is false.
    assert set(lookup.queried) == {"launch_digest", "svn"}


def test_vector_b_default_cpu_with_full_reference_values() -> None:
    trust_claims, _ = evaluate("default_cpu", sample_input(), Lookup(FULL_SAMPLE_RVS))
    assert trust_claims.value == trust(3, 2, 2)
    assert status(trust_claims) == "affirming"


def test_vector_c_missing_minimum_minor_version_still_affirms() -> None:
    rvs = {k: v for k, v in FULL_SAMPLE_RVS.items() if k != "minimum_minor_version"}
    lookup = Lookup(rvs)
    trust_claims, _ = evaluate("default_cpu", sample_input(), lookup)
    # `4 >= null` is true under Rego's cross-type ordering
    assert trust_claims.value == trust(3, 2, 2)
    assert status(trust_claims) == "affirming"
    assert "minimum_minor_version" in lookup.queried


def test_vector_d_scalar_reference_values_do_not_match_with_in() -> None:
    trust_claims, _ = evaluate(
        "default_cpu", sample_input(), Lookup({"svn": "1", "launch_digest": "abcde"})
    )
    assert trust_claims.value == trust(33, 97, 2)
    assert status(trust_claims) == "contraindicated"


def test_vector_f_default_gpu_never_affirms_the_sample_device() -> None:
    rd = runtime_data()
    del rd["additional-evidence"]
    input_doc = {"report_data": "", "runtime_data_claims": rd, "sampledevice": {"svn": "2"}}
    trust_claims, extensions = evaluate("default_gpu", input_doc, Lookup({"device_svn": ["2"]}))
    assert trust_claims.value == trust(33, 97, 36)
    assert status(trust_claims) == "contraindicated"
    assert extensions.kind == "absent"


def test_vector_g_default_ppcie_affirms_configuration() -> None:
    trust_claims, extensions = evaluate("default_ppcie", {"nvidia": {"anything": True}})
    assert trust_claims.value == trust(0, 0, 2)
    assert status(trust_claims) == "affirming"
    assert extensions.kind == "absent"


def _container(image: str | None, uid: int | None) -> dict[str, Any]:
    oci: dict[str, Any] = {"Process": {"Args": ["/bin/sh"]}}
    if image is not None:
        oci["Annotations"] = {"io.kubernetes.cri.image-name": image}
    if uid is not None:
        oci["Process"]["User"] = {"UID": uid, "GID": 0}
    return {"OCI": oci}


def test_vector_h_identifiers_from_agent_policy_claims() -> None:
    input_doc = sample_input()
    input_doc["init_data"] = base64.b64encode(b"\x01" * 32).decode()
    input_doc["init_data_claims"] = {
        "agent_policy_claims": {
            "containers": [_container("pause", 65535), _container("bitnami/nginx:latest", 1001)]
        }
    }
    _, extensions = evaluate("default_cpu", input_doc)
    assert extensions.value == [
        {
            "name": "ear.trustee.identifiers",
            "key": -18,
            "value": {
                "validated": {
                    "container_images": ["pause", "bitnami/nginx:latest"],
                    "container_uids": [65535, 1001],
                }
            },
        }
    ]


def test_identifiers_skip_containers_lacking_the_field() -> None:
    input_doc = sample_input()
    input_doc["init_data_claims"] = {
        "agent_policy_claims": {
            "containers": [_container(None, 65535), _container("bitnami/nginx:latest", None)]
        }
    }
    _, extensions = evaluate("default_cpu", input_doc)
    assert extensions.value[0]["value"] == {
        "validated": {"container_images": ["bitnami/nginx:latest"], "container_uids": [65535]}
    }

    input_doc["init_data_claims"] = {
        "agent_policy_claims": {"containers": [_container(None, 1001)]}
    }
    _, extensions = evaluate("default_cpu", input_doc)
    assert extensions.value[0]["value"] == {"validated": {"container_uids": [1001]}}


def test_identifiers_with_init_data_but_no_agent_policy() -> None:
    input_doc = sample_input()
    input_doc["init_data_claims"] = {"cdh.toml": {"image": {}}}
    _, extensions = evaluate("default_cpu", input_doc)
    assert extensions.value[0]["value"] == {"validated": {}}


# --- more sample-TEE behaviour -------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "rvs", "expected"),
    [
        ({"debug": True}, FULL_SAMPLE_RVS, trust(3, 2, 36)),
        ({"svn": "2"}, FULL_SAMPLE_RVS, trust(3, 97, 2)),
        ({"launch_digest": "other"}, FULL_SAMPLE_RVS, trust(33, 2, 2)),
        ({}, {**FULL_SAMPLE_RVS, "major_version": 2}, trust(3, 97, 2)),
        ({}, {**FULL_SAMPLE_RVS, "minimum_minor_version": 5}, trust(3, 97, 2)),
        ({}, {**FULL_SAMPLE_RVS, "svn": ["0", "1", "2"]}, trust(3, 2, 2)),
    ],
)
def test_sample_rules(overrides: dict[str, Any], rvs: dict[str, Any], expected: Any) -> None:
    trust_claims, _ = evaluate("default_cpu", sample_input(**overrides), Lookup(rvs))
    assert trust_claims.value == expected


def test_unknown_tee_gets_the_defaults() -> None:
    lookup = Lookup(FULL_SAMPLE_RVS)
    trust_claims, _ = evaluate("default_cpu", {"report_data": "", "cca": {"body": {}}}, lookup)
    assert trust_claims.value == trust(33, 97, 36)
    assert status(trust_claims) == "contraindicated"


# --- TDX / SNP -----------------------------------------------------------------------------

TDX_RVS: dict[str, Any] = {
    "rtmr_1": ["11" * 48],
    "rtmr_2": ["22" * 48],
    "tdvfkernel": "aa" * 48,
    "tdvfkernelparams": "bb" * 48,
    "mr_td": ["33" * 48],
    "xfam": ["e742060000000000"],
}


def tdx_input(*, with_boot_events: bool = True, **overrides: Any) -> dict[str, Any]:
    events: list[dict[str, Any]] = [
        {
            "details": {},
            "digests": [{"alg": "SHA-384", "digest": "00" * 48}],
            "index": 1,
            "type_name": "EV_SEPARATOR",
        }
    ]
    if with_boot_events:
        events += [
            {
                "details": {"device_paths": ["PciRoot(0x0)/Pci(0x1,0x0)", "File(kernel)"]},
                "digests": [{"alg": "SHA-384", "digest": "aa" * 48}],
                "index": 2,
                "type_name": "EV_EFI_BOOT_SERVICES_APPLICATION",
            },
            {
                "details": {"string": "LOADED_IMAGE::LoadOptions"},
                "digests": [{"alg": "SHA-384", "digest": "bb" * 48}],
                "index": 2,
                "type_name": "EV_EVENT_TAG",
            },
        ]
    tdx: dict[str, Any] = {
        "quote": {
            "header": {
                "version": "0400",
                "att_key_type": "0200",
                "tee_type": "81000000",
                "vendor_id": "939a7233f79c4ca9940a0db3957f0607",
            },
            "body": {
                "mr_td": "33" * 48,
                "rtmr_0": "00" * 48,
                "rtmr_1": "11" * 48,
                "rtmr_2": "22" * 48,
                "xfam": "e742060000000000",
            },
        },
        "td_attributes": {"debug": False, "septve_disable": True},
        "tcb_status": "UpToDate",
        "collateral_expiration_status": "0",
        "uefi_event_logs": events,
    }
    tdx.update(overrides)
    return {"report_data": "00" * 64, "runtime_data_claims": runtime_data(), "tdx": tdx}


def test_tdx_affirming_with_full_reference_values() -> None:
    trust_claims, _ = evaluate("default_cpu", tdx_input(), Lookup(TDX_RVS))
    assert trust_claims.value == trust(3, 2, 2)
    assert status(trust_claims) == "affirming"


def test_tdx_without_boot_events_vouches_for_rtmrs_only() -> None:
    trust_claims, _ = evaluate("default_cpu", tdx_input(with_boot_events=False), Lookup(TDX_RVS))
    assert trust_claims.value == trust(4, 2, 2)
    assert status(trust_claims) == "affirming"


def test_tdx_contraindicated_without_reference_values() -> None:
    trust_claims, _ = evaluate("default_cpu", tdx_input(), Lookup())
    assert trust_claims.value == trust(33, 97, 36)
    assert status(trust_claims) == "contraindicated"


@pytest.mark.parametrize(
    ("overrides", "expected", "expected_status"),
    [
        ({"tcb_status": "OutOfDate"}, trust(3, 97, 2), "contraindicated"),
        ({"collateral_expiration_status": "1"}, trust(3, 97, 2), "contraindicated"),
        ({"td_attributes": {"debug": True}}, trust(3, 2, 36), "warning"),
        ({"quote": {"header": {}, "body": {}}}, trust(33, 97, 36), "contraindicated"),
    ],
)
def test_tdx_checks(
    overrides: dict[str, Any], expected: dict[str, int], expected_status: str
) -> None:
    trust_claims, _ = evaluate("default_cpu", tdx_input(**overrides), Lookup(TDX_RVS))
    assert trust_claims.value == expected
    assert status(trust_claims) == expected_status


def test_tdx_input_does_not_fire_sample_rules() -> None:
    # Sample RVs registered too: the sample section must not contribute without input.sample.
    lookup = Lookup({**TDX_RVS, **FULL_SAMPLE_RVS})
    trust_claims, _ = evaluate("default_cpu", tdx_input(td_attributes={"debug": True}), lookup)
    assert trust_claims.value["configuration"] == 36
    assert "launch_digest" not in lookup.queried


SNP_RVS: dict[str, Any] = {
    "snp_launch_measurement": ["6a" * 48],
    "snp_bootloader": [10],
    "snp_microcode": [25],
    "snp_snp_svn": [23],
    "snp_tee_svn": [0],
    "snp_smt_enabled": True,
    "snp_tsme_enabled": False,
    "snp_guest_abi_major": 0,
    "snp_guest_abi_minor": 0,
    "snp_single_socket": False,
    "snp_smt_allowed": True,
}


def snp_input(**overrides: Any) -> dict[str, Any]:
    snp: dict[str, Any] = {
        "measurement": "6a" * 48,
        "report_data": "00" * 64,
        "init_data": "00" * 32,
        "chip_id": "37" * 64,
        "policy_abi_major": 0,
        "policy_abi_minor": 0,
        "policy_smt_allowed": True,
        "policy_migrate_ma": False,
        "policy_debug_allowed": False,
        "policy_single_socket": False,
        "reported_tcb_bootloader": 10,
        "reported_tcb_tee": 0,
        "reported_tcb_snp": 23,
        "reported_tcb_microcode": 25,
        "platform_tsme_enabled": False,
        "platform_smt_enabled": True,
    }
    snp.update(overrides)
    return {"report_data": "00" * 64, "runtime_data_claims": runtime_data(), "snp": snp}


def test_snp_affirming_with_full_reference_values() -> None:
    trust_claims, _ = evaluate("default_cpu", snp_input(), Lookup(SNP_RVS))
    assert trust_claims.value == trust(3, 2, 2)
    assert status(trust_claims) == "affirming"


def test_snp_contraindicated_without_reference_values() -> None:
    trust_claims, _ = evaluate("default_cpu", snp_input(), Lookup())
    # the two policy flags are safe, so configuration falls back to 3
    assert trust_claims.value == trust(33, 97, 3)
    assert status(trust_claims) == "contraindicated"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"platform_smt_enabled": False}, trust(3, 2, 3)),
        ({"policy_debug_allowed": True}, trust(3, 2, 36)),
        ({"policy_migrate_ma": True}, trust(3, 2, 36)),
        ({"reported_tcb_microcode": 24}, trust(3, 97, 2)),
        ({"measurement": "00" * 48}, trust(33, 2, 2)),
    ],
)
def test_snp_checks(overrides: dict[str, Any], expected: dict[str, int]) -> None:
    trust_claims, _ = evaluate("default_cpu", snp_input(**overrides), Lookup(SNP_RVS))
    assert trust_claims.value == expected


# --- Azure vTPM, TPM, SGX ---------------------------------------------------------------

AZ_SNP_RVS: dict[str, Any] = {
    "measurement": ["bWVhc3VyZW1lbnQ="],
    "snp_pcr11": ["11" * 32],
    "tcb_bootloader": ["3"],
    "tcb_microcode": ["209"],
    "tcb_snp": ["20"],
    "tcb_tee": ["0"],
    "smt_enabled": ["true"],
    "tsme_enabled": ["false"],
    "abi_major": ["0"],
    "abi_minor": ["31"],
    "single_socket": ["false"],
    "smt_allowed": ["true"],
}


def az_snp_input(pcr11: str = "11" * 32, **overrides: Any) -> dict[str, Any]:
    # The verifier's claims are strings throughout, as upstream formats them.
    claims: dict[str, Any] = {
        "measurement": "bWVhc3VyZW1lbnQ=",
        "reported_tcb_bootloader": "3",
        "reported_tcb_microcode": "209",
        "reported_tcb_snp": "20",
        "reported_tcb_tee": "0",
        "platform_smt_enabled": "true",
        "platform_tsme_enabled": "false",
        "policy_abi_major": "0",
        "policy_abi_minor": "31",
        "policy_single_socket": "false",
        "policy_smt_allowed": "true",
        "tpm": {f"pcr{i:02}": ("11" * 32 if i != 11 else pcr11) for i in range(24)},
    }
    claims.update(overrides)
    return {"report_data": "00" * 9, "az-snp-vtpm": claims}


def test_az_snp_vtpm_affirming_with_full_reference_values() -> None:
    trust_claims, _ = evaluate("default_cpu", az_snp_input(), Lookup(AZ_SNP_RVS))
    assert trust_claims.value == trust(3, 2, 2)
    assert status(trust_claims) == "affirming"


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        (az_snp_input(pcr11="22" * 32), trust(33, 2, 2)),
        (az_snp_input(reported_tcb_snp="19"), trust(3, 97, 2)),
        (az_snp_input(platform_smt_enabled="false"), trust(3, 2, 36)),
    ],
)
def test_az_snp_vtpm_checks(claims: dict[str, Any], expected: dict[str, int]) -> None:
    trust_claims, _ = evaluate("default_cpu", claims, Lookup(AZ_SNP_RVS))
    assert trust_claims.value == expected


def az_tdx_input(**overrides: Any) -> dict[str, Any]:
    tdx = tdx_input()["tdx"]
    claims: dict[str, Any] = {
        "quote": tdx["quote"],
        "tcb_status": "UpToDate",
        "tpm": {f"pcr{i:02}": "44" * 32 for i in range(24)},
    }
    claims.update(overrides)
    return {"report_data": "00" * 9, "az-tdx-vtpm": claims}


AZ_TDX_RVS: dict[str, Any] = {
    "tdx_pcr11": ["44" * 32],
    "mr_td": ["33" * 48],
    "xfam": ["e742060000000000"],
}


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        (az_tdx_input(), trust(3, 2, 2)),
        (az_tdx_input(tcb_status="OutOfDate"), trust(3, 97, 2)),
        (az_tdx_input(tpm={"pcr11": "45" * 32}), trust(33, 2, 2)),
    ],
)
def test_az_tdx_vtpm_rules(claims: dict[str, Any], expected: dict[str, int]) -> None:
    trust_claims, _ = evaluate("default_cpu", claims, Lookup(AZ_TDX_RVS))
    assert trust_claims.value == expected


def tpm_input(
    ak: str = "AK-ONE", certified: bool = False, pcr11: str = "55" * 32
) -> dict[str, Any]:
    claims: dict[str, Any] = {f"pcr{i:02}": "55" * 32 for i in range(24)}
    claims |= {"pcr11": pcr11, "ak_public": ak, "ak_certified": certified}
    return {"report_data": "00" * 32, "tpm": claims}


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        # The AK is trusted through the reference values or, with `tpm_ak_roots`, through its
        # certificate; hardware is the verifier's word.
        (tpm_input(), trust(3, 2, 0)),
        (tpm_input(ak="AK-TWO"), trust(33, 2, 0)),
        (tpm_input(ak="AK-TWO", certified=True), trust(3, 2, 0)),
        (tpm_input(certified=True), trust(3, 2, 0)),
        # A certified AK does not replace the PCR11 reference value.
        (tpm_input(ak="AK-TWO", certified=True, pcr11="56" * 32), trust(33, 2, 0)),
    ],
)
def test_tpm_rules(claims: dict[str, Any], expected: dict[str, int]) -> None:
    rvs = {"tpm_pcr11": ["55" * 32], "trusted_aks": ["AK-ONE"]}
    trust_claims, _ = evaluate("default_cpu", claims, Lookup(rvs))
    assert trust_claims.value == expected


SGX_RVS: dict[str, Any] = {
    "mr_enclave": ["66" * 32],
    "mr_signer": ["77" * 32],
    "isv_prod_id": ["0100"],
    "isv_svn": ["0200"],
}


def sgx_input(**body: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "header": {"version": "0300", "vendor_id": "939a7233f79c4ca9940a0db3957f0607"},
        "body": {
            "mr_enclave": "66" * 32,
            "mr_signer": "77" * 32,
            "isv_prod_id": "0100",
            "isv_svn": "0200",
            "attributes.flags": "0500000000000000",
        }
        | body,
        "tcb_status": "UpToDate",
    }
    return {"report_data": "00" * 64, "sgx": claims}


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        (sgx_input(), trust(3, 2, 2)),
        (sgx_input(mr_enclave="67" * 32), trust(33, 2, 2)),
        # INIT | DEBUG | MODE64BIT: a debug enclave is never an approved configuration.
        (sgx_input(**{"attributes.flags": "0700000000000000"}), trust(3, 2, 36)),
        (sgx_input(isv_svn="0100"), trust(3, 2, 36)),
    ],
)
def test_sgx_rules(claims: dict[str, Any], expected: dict[str, int]) -> None:
    trust_claims, _ = evaluate("default_cpu", claims, Lookup(SGX_RVS))
    assert trust_claims.value == expected


def test_sgx_out_of_date_tcb_is_not_genuine_hardware() -> None:
    claims = sgx_input()
    claims["sgx"]["tcb_status"] = "OutOfDate"
    trust_claims, _ = evaluate("default_cpu", claims, Lookup(SGX_RVS))
    assert trust_claims.value == trust(3, 97, 2)


# --- all shipped policies ------------------------------------------------------------------


@pytest.mark.parametrize("name", DEFAULT_POLICY_IDS)
def test_shipped_policies_are_rego_v1_with_all_trust_claims(name: str) -> None:
    policy = CompiledPolicy(shipped_policy(name))
    assert policy.syntax == "v1"
    trust_claims, _ = policy.evaluate({}, None, RULES, Lookup())
    assert trust_claims.kind == "value"
    assert set(trust_claims.value) == set(ear.TRUST_CLAIMS)


def test_default_switch_never_affirms_the_sample_device() -> None:
    trust_claims, extensions = evaluate(
        "default_switch", {"sampledevice": {"svn": "2"}}, Lookup({"device_svn": ["2"]})
    )
    assert trust_claims.value == trust(33, 97, 36)
    assert extensions.kind == "absent"
