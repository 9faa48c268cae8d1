"""Collateral for simulated TDX (and SGX) quotes: TCB info, QE identity and CRLs, signed by the
test chain and laid out as Intel's PCS serves them."""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives import serialization

from trustee.simulate import certs
from trustee.simulate.tdx_chain import KeyPair, TdxChain
from trustee.simulate.tdx_platform import QeIdentity, TdxPlatform

TCB_EVALUATION_DATA_NUMBER = 17
COLLATERAL_LIFETIME = datetime.timedelta(days=30)

QE_ATTRIBUTES_MASK = bytes.fromhex("FBFFFFFFFFFFFFFF0000000000000000")

# Intel labels some TCB components with the category and type of firmware they stand for.
SGX_COMPONENT_LABELS = {
    0: ("BIOS", "Early Microcode Update"),
    1: ("OS/VMM", "SGX Late Microcode Update"),
    2: ("OS/VMM", "TXT SINIT"),
    3: ("BIOS", None),
    4: ("BIOS", None),
    5: ("BIOS", None),
    7: ("OS/VMM", "SEAMLDR ACM"),
}
TDX_COMPONENT_LABELS = {
    0: ("OS/VMM", "TDX Module"),
    1: ("OS/VMM", "TDX Module"),
    2: ("OS/VMM", "TDX Late Microcode Update"),
}


def collateral(
    platform: TdxPlatform,
    qe: QeIdentity,
    chain: TdxChain,
    now: datetime.datetime | None = None,
    *,
    status: str = "UpToDate",
    tee: str = "tdx",
) -> dict[str, str]:
    """Quote collateral in dcap-qvl's JSON form, valid from 1 h before `now` for 30 days;
    `tee` "sgx" gives the SGX documents (TCB info id SGX, QE identity id QE).

    TCB info and QE identity are signed over the exact compact JSON text placed in the
    result, which is what verifiers hash.
    """
    moment = certs.utc(now) if now else certs.now_utc()
    if tee == "sgx":
        tcb_document = sgx_tcb_info(platform, moment, status=status)
    else:
        tcb_document = tcb_info(platform, moment, status=status)
    tcb_info_text = _compact(tcb_document)
    qe_identity_text = _compact(qe_identity(qe, moment, identity="QE" if tee == "sgx" else "TD_QE"))
    root_cert = chain.root[1]
    tcb_signing_key, tcb_signing_cert = chain.tcb_signing
    signing_chain = certs.pem(tcb_signing_cert, root_cert)
    return {
        "pck_crl_issuer_chain": certs.pem(chain.pck_ca[1], root_cert),
        "root_ca_crl": root_crl_der(chain, moment).hex(),
        "pck_crl": pck_crl_der(chain, moment).hex(),
        "tcb_info_issuer_chain": signing_chain,
        "tcb_info": tcb_info_text,
        "tcb_info_signature": certs.p256_sign_raw(tcb_signing_key, tcb_info_text.encode()).hex(),
        "qe_identity_issuer_chain": signing_chain,
        "qe_identity": qe_identity_text,
        "qe_identity_signature": certs.p256_sign_raw(
            tcb_signing_key, qe_identity_text.encode()
        ).hex(),
    }


def tcb_info(
    platform: TdxPlatform, now: datetime.datetime, *, status: str = "UpToDate"
) -> dict[str, Any]:
    """TDX TCB info v3 whose first level matching `platform` has `status`.

    With `OutOfDate`, a newer level (PCE SVN one higher) is listed first as UpToDate, so
    the platform's own level is behind it, as after an Intel TCB recovery.
    """
    tee = platform.tee_tcb_svn
    return {
        **_tcb_info_head("TDX", platform, now),
        "tdxModule": _module_signer(),
        "tdxModuleIdentities": [
            {
                "id": f"TDX_{tee[1]:02X}",
                **_module_signer(),
                "tcbLevels": [
                    {"tcb": {"isvsvn": tee[0]}, "tcbDate": _tcb_date(now), "tcbStatus": "UpToDate"}
                ],
            }
        ],
        "tcbLevels": _tcb_levels(platform, now, status),
    }


def sgx_tcb_info(
    platform: TdxPlatform, now: datetime.datetime, *, status: str = "UpToDate"
) -> dict[str, Any]:
    """SGX TCB info v3 (levels of SGX components and PCE SVN only), rated as `tcb_info`."""
    return {
        **_tcb_info_head("SGX", platform, now),
        "tcbLevels": _tcb_levels(platform, now, status, with_tdx=False),
    }


def _tcb_info_head(tcb_id: str, platform: TdxPlatform, now: datetime.datetime) -> dict[str, Any]:
    # Intel's key order: the signed text is this dictionary's insertion order.
    issue_date, next_update = _window(now)
    return {
        "id": tcb_id,
        "version": 3,
        "issueDate": issue_date,
        "nextUpdate": next_update,
        "fmspc": platform.fmspc.hex().upper(),
        "pceId": platform.pce_id.hex().upper(),
        "tcbType": 0,
        "tcbEvaluationDataNumber": TCB_EVALUATION_DATA_NUMBER,
    }


def _module_signer() -> dict[str, Any]:
    return {
        "mrsigner": "00" * 48,
        "attributes": "0000000000000000",
        "attributesMask": "FFFFFFFFFFFFFFFF",
    }


def _tcb_levels(
    platform: TdxPlatform, now: datetime.datetime, status: str, *, with_tdx: bool = True
) -> list[Any]:
    tee = platform.tee_tcb_svn
    sgx, pce_svn = platform.sgx_tcb_components, platform.pce_svn
    # Module SVNs are judged by the module identity, so the levels leave bytes 0-1 at zero
    # when the module major version is set, as Intel's TCB info does.
    tdx: bytes | None = ((bytes(2) + tee[2:]) if tee[1] else tee) if with_tdx else None
    levels = []
    own_date = _tcb_date(now)
    if status != "UpToDate":
        levels.append(_tcb_level(sgx, pce_svn + 1, tdx, own_date, "UpToDate"))
        own_date = "2023-02-15T00:00:00Z"
    levels.append(_tcb_level(sgx, pce_svn, tdx, own_date, status))
    older = [max(svn - 1, 0) for svn in sgx]
    oldest_tdx = bytes(16) if with_tdx else None
    levels.append(_tcb_level(older, 0, oldest_tdx, "2018-01-04T00:00:00Z", "OutOfDate"))
    return levels


def _tcb_level(
    sgx: Sequence[int], pce_svn: int, tdx: bytes | None, date: str, status: str
) -> dict[str, Any]:
    tcb: dict[str, Any] = {
        "sgxtcbcomponents": _components(sgx, SGX_COMPONENT_LABELS),
        "pcesvn": pce_svn,
    }
    if tdx is not None:
        tcb["tdxtcbcomponents"] = _components(tdx, TDX_COMPONENT_LABELS)
    out: dict[str, Any] = {
        "tcb": tcb,
        "tcbDate": date,
        "tcbStatus": status,
    }
    if status != "UpToDate":
        out["advisoryIDs"] = ["INTEL-SA-00000"]
    return out


def _components(
    svns: Sequence[int], labels: Mapping[int, tuple[str, str | None]]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for index, svn in enumerate(svns):
        entry: dict[str, Any] = {"svn": svn}
        if index in labels:
            category, kind = labels[index]
            entry["category"] = category
            if kind is not None:
                entry["type"] = kind
        out.append(entry)
    return out


def qe_identity(
    qe: QeIdentity, now: datetime.datetime, *, identity: str = "TD_QE"
) -> dict[str, Any]:
    """QE identity v2 (`identity` TD_QE or QE) matching the simulated QE (UpToDate)."""
    issue_date, next_update = _window(now)
    attributes = bytes(b & m for b, m in zip(qe.attributes, QE_ATTRIBUTES_MASK, strict=True))
    return {
        "id": identity,
        "version": 2,
        "issueDate": issue_date,
        "nextUpdate": next_update,
        "tcbEvaluationDataNumber": TCB_EVALUATION_DATA_NUMBER,
        "miscselect": qe.misc_select.hex().upper(),
        "miscselectMask": "FFFFFFFF",
        "attributes": attributes.hex().upper(),
        "attributesMask": QE_ATTRIBUTES_MASK.hex().upper(),
        "mrsigner": qe.mr_signer.hex().upper(),
        "isvprodid": qe.isv_prod_id,
        "tcbLevels": [
            {"tcb": {"isvsvn": qe.isv_svn}, "tcbDate": _tcb_date(now), "tcbStatus": "UpToDate"}
        ],
    }


def pck_crl_der(chain: TdxChain, now: datetime.datetime) -> bytes:
    # One revoked serial that is not ours, so a verifier's revocation lookup has work to do.
    return _crl_der(chain.pck_ca, now, revoked_serials=[chain.pck[1].serial_number ^ 0x5A5A])


def root_crl_der(chain: TdxChain, now: datetime.datetime) -> bytes:
    return _crl_der(chain.root, now)


def _crl_der(issuer: KeyPair, now: datetime.datetime, revoked_serials: Sequence[int] = ()) -> bytes:
    this_update, next_update = _window_times(now)
    key, cert = issuer
    crl = certs.crl(
        issuer=cert,
        issuer_key=key,
        this_update=this_update,
        next_update=next_update,
        revoked_serials=revoked_serials,
    )
    return crl.public_bytes(serialization.Encoding.DER)


def _compact(value: dict[str, Any]) -> str:
    # Insertion order is Intel's key order; no whitespace, exactly like PCS serves it.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _window_times(now: datetime.datetime) -> tuple[datetime.datetime, datetime.datetime]:
    start = certs.utc(now) - datetime.timedelta(hours=1)
    return start, start + COLLATERAL_LIFETIME


def _window(now: datetime.datetime) -> tuple[str, str]:
    start, end = _window_times(now)
    return certs.intel_time(start), certs.intel_time(end)


def _tcb_date(now: datetime.datetime) -> str:
    day = certs.utc(now) - datetime.timedelta(days=30)
    return day.strftime("%Y-%m-%dT00:00:00Z")
