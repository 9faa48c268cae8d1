"""The sgx verifier through the Rust core: a simulated SGX enclave's quote v3 with its simulated
collateral appraises, each tamper fails its own check, the bindings are the SGX ones (64-byte
REPORT_DATA and CONFIGID), and the DCAP verifiers refuse each other's quotes."""

from __future__ import annotations

import datetime
import hashlib
import json
from typing import Any

import pytest

from trustee import _core
from trustee.simulate.sgx import DEFAULT_MR_ENCLAVE, SgxTestPki, SimulatedSgxAttester, sgx_evidence
from trustee.simulate.tdx import TdxTestPki, tdx_evidence_json

NOW = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=datetime.UTC)
NOW_UNIX = int(NOW.timestamp())
REPORT_DATA = hashlib.sha384(b"runtime data").digest()
# Offsets in an SGX quote v3: body at 48, signature data at 436 (quote signature, attestation
# key, then the QE report at 564).
BODY_MR_ENCLAVE = 48 + 64
QUOTE_SIGNATURE = 436
QE_REPORT_MR_ENCLAVE = 564 + 64
ATTESTATION_KEY = 500
PCK_CHAIN_PEM = 1024 + 150


@pytest.fixture(scope="module")
def pki() -> SgxTestPki:
    return SgxTestPki.generate(now=NOW - datetime.timedelta(days=2))


@pytest.fixture(scope="module")
def verifiers(pki: SgxTestPki) -> _core.Verifiers:
    return _core.Verifiers([hashlib.sha256(pki.root_der).digest()])


def evidence(quote: bytes) -> bytes:
    return json.dumps(sgx_evidence(quote)).encode()


def collateral(pki: SgxTestPki, status: str = "UpToDate") -> bytes:
    return json.dumps(pki.collateral(NOW, status=status)).encode()


def verify(
    verifiers: _core.Verifiers,
    pki: SgxTestPki,
    quote: bytes,
    *,
    tee: str = "sgx",
    report_data: bytes | None = REPORT_DATA,
    init_data: bytes | None = None,
    status: str = "UpToDate",
) -> dict[str, Any]:
    claims = verifiers.verify(
        tee, evidence(quote), report_data, init_data, NOW_UNIX, collateral(pki, status)
    )
    assert len(claims) == 1 and claims[0].tee_class == "cpu"
    result: dict[str, Any] = json.loads(claims[0].json)
    return result


def test_simulated_quote_appraises_up_to_date(pki: SgxTestPki, verifiers: _core.Verifiers) -> None:
    mr_enclave = hashlib.sha256(b"my enclave").digest()
    claims = verify(verifiers, pki, pki.quote(REPORT_DATA, mr_enclave=mr_enclave, isv_svn=7))
    assert claims["tcb_status"] == "UpToDate"
    assert claims["collateral_expiration_status"] == "0"
    assert claims["advisory_ids"] == []
    body = claims["body"]
    assert body["mr_enclave"] == mr_enclave.hex()
    assert body["isv_svn"] == "0700"
    assert claims["report_data"] == REPORT_DATA.ljust(64, b"\0").hex()
    assert claims["header"]["version"] == "0300"
    pce_svn = pki.platform_pki.platform.pce_svn
    assert claims["header"]["pce_svn"] == pce_svn.to_bytes(2, "little").hex()
    # Upstream reports the PCK's platform instance ID byte-reversed (its Occlum golden agrees).
    piid = pki.platform_pki.platform.platform_instance_id
    assert claims["platform_instance_id"] == piid[::-1].hex()


def test_out_of_date_collateral_rates_the_platform(
    pki: SgxTestPki, verifiers: _core.Verifiers
) -> None:
    claims = verify(verifiers, pki, pki.quote(REPORT_DATA), status="OutOfDate")
    assert claims["tcb_status"] == "OutOfDate"
    assert claims["advisory_ids"] == ["INTEL-SA-00000"]


@pytest.mark.parametrize(
    ("offset", "reason"),
    [
        (BODY_MR_ENCLAVE, "quote signature check failed"),
        (QE_REPORT_MR_ENCLAVE, "QE report signature check failed"),
        (QUOTE_SIGNATURE + 3, "quote signature check failed"),
        (ATTESTATION_KEY + 5, "QE report data binding check failed"),
        (PCK_CHAIN_PEM, "PCK certificate chain"),
    ],
)
def test_each_tamper_fails_its_own_check(
    pki: SgxTestPki, verifiers: _core.Verifiers, offset: int, reason: str
) -> None:
    tampered = bytearray(pki.quote(REPORT_DATA))
    tampered[offset] ^= 1
    with pytest.raises(_core.VerifierError, match=reason):
        verify(verifiers, pki, bytes(tampered))


def test_tampered_signature_and_body_name_different_things(
    pki: SgxTestPki, verifiers: _core.Verifiers
) -> None:
    quote = pki.quote(REPORT_DATA)
    messages = []
    for offset in (BODY_MR_ENCLAVE, QE_REPORT_MR_ENCLAVE):
        tampered = bytearray(quote)
        tampered[offset] ^= 1
        with pytest.raises(_core.VerifierError) as info:
            verify(verifiers, pki, bytes(tampered))
        messages.append(str(info.value))
    assert messages[0] != messages[1]


def test_bindings_are_regularized_to_64_bytes(pki: SgxTestPki, verifiers: _core.Verifiers) -> None:
    init = hashlib.sha256(b"init data").digest()
    quote = pki.quote(REPORT_DATA, config_id=init)
    verify(verifiers, pki, quote, init_data=init)
    with pytest.raises(_core.VerifierError, match="REPORT_DATA"):
        verify(verifiers, pki, quote, report_data=hashlib.sha384(b"other").digest())
    with pytest.raises(_core.VerifierError, match="CONFIGID"):
        verify(verifiers, pki, quote, init_data=hashlib.sha256(b"other").digest())


def test_tdx_collateral_is_refused_for_sgx(pki: SgxTestPki, verifiers: _core.Verifiers) -> None:
    tdx_collateral = json.dumps(pki.platform_pki.collateral(NOW)).encode()
    with pytest.raises(_core.VerifierError, match="not a SGX TCB info"):
        verifiers.verify(
            "sgx", evidence(pki.quote(REPORT_DATA)), None, None, NOW_UNIX, tdx_collateral
        )


def test_dcap_verifiers_refuse_each_others_quotes(
    pki: SgxTestPki, verifiers: _core.Verifiers
) -> None:
    tdx_pki: TdxTestPki = pki.platform_pki
    tdx_quote = tdx_evidence_json(tdx_pki.quote(REPORT_DATA))
    with pytest.raises(_core.VerifierError, match="TDX quotes, for the tdx verifier"):
        verifiers.verify("sgx", tdx_quote, None, None, NOW_UNIX, collateral(pki))
    with pytest.raises(_core.VerifierError, match="SGX quote, for the sgx verifier"):
        verify(verifiers, pki, pki.quote(REPORT_DATA), tee="tdx")


def test_empty_quote_is_refused(verifiers: _core.Verifiers) -> None:
    with pytest.raises(_core.VerifierError, match="empty"):
        verifiers.verify("sgx", b'{"quote":""}', None, None, NOW_UNIX, None)


def test_collateral_key_names_the_tee(pki: SgxTestPki) -> None:
    fmspc, ca, pce_id, tee = _core.tdx_collateral_key(evidence(pki.quote(REPORT_DATA)))
    platform = pki.platform_pki.platform
    assert (fmspc, ca, pce_id, tee) == (
        platform.fmspc.hex().upper(),
        "platform",
        platform.pce_id.hex().upper(),
        "sgx",
    )
    tdx = tdx_evidence_json(pki.platform_pki.quote(REPORT_DATA))
    assert _core.tdx_collateral_key(tdx)[3] == "tdx"


def test_attester_binds_report_data_config_id_and_measurement(pki: SgxTestPki) -> None:
    mr_enclave = bytes(range(32))
    attester = SimulatedSgxAttester(pki, mr_enclave=mr_enclave)
    init = hashlib.sha384(b"init").digest()
    ev = attester.evidence(REPORT_DATA, init)
    verifiers = _core.Verifiers([hashlib.sha256(pki.root_der).digest()])
    claims = verifiers.verify(
        "sgx", json.dumps(ev).encode(), REPORT_DATA, init, NOW_UNIX, collateral(pki)
    )
    body = json.loads(claims[0].json)["body"]
    assert body["mr_enclave"] == mr_enclave.hex()
    assert SimulatedSgxAttester(pki).mr_enclave == DEFAULT_MR_ENCLAVE
