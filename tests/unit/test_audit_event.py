from __future__ import annotations

import json
import re
from types import MappingProxyType

import rfc8785

from trustee.audit import event as ev


def test_cloudevent_structure_and_request_id() -> None:
    e = ev.attestation_verified(
        tee="tdx",
        generation="v4",
        evidence_digest="sha384:ab",
        verifier="tdx-dcap",
        policy_id="default",
        ear_status="affirming",
        trust_vector={"instance-identity": 2},
        request_id="req-1",
    )
    ce = e.cloudevent()
    assert ce["specversion"] == "1.0"
    assert ce["type"] == "org.trustee-py.attestation.verified"
    assert ce["source"] == "trustee-py/kbs"
    assert ce["datacontenttype"] == "application/json"
    assert ce["requestid"] == "req-1"
    assert ce["subject"] == "sha384:ab"
    assert re.fullmatch(r"[0-9a-f]{32}", ce["id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", ce["time"])
    assert ce["data"]["trust_vector"] == {"instance-identity": 2}
    json.dumps(ce)


def test_request_id_absent_when_not_given() -> None:
    ce = ev.token_issued(jti="jti-1", exp=1700000000).cloudevent()
    assert "requestid" not in ce
    assert ce["data"] == {"jti": "jti-1", "exp": 1700000000}


def test_canonical_data_is_rfc8785_of_plain_data() -> None:
    e = ev.new_event("x.y", MappingProxyType({"b": (1, 2), "a": MappingProxyType({"z": 1.0})}))
    assert e.canonical_data() == b'{"a":{"z":1},"b":[1,2]}'
    assert e.canonical_data() == rfc8785.dumps({"a": {"z": 1}, "b": [1, 2]})


def test_constructor_types() -> None:
    types = {
        ev.session_created(session_id="s", tee="snp").type,
        ev.attestation_failed(
            tee="snp",
            generation=None,
            evidence_digest=None,
            verifier=None,
            policy_id=None,
            reason="snp.report.signature",
        ).type,
        ev.resource_released(path="default/key/1", policy_digest="sha256:p", jti="j").type,
        ev.resource_denied(
            path="default/key/1", policy_digest="sha256:p", jti="j", reason="policy"
        ).type,
        ev.admin_change(
            identity="admin", endpoint="/kbs/v0/resource-policy", digest="sha256:d"
        ).type,
        ev.policy_changed(kind="resource", policy_id="default", digest="sha256:d").type,
        ev.reference_value_changed(name="mr_td", digest="sha256:d").type,
        ev.collateral_fetched(tee="tdx", key="fmspc/00606a000000", source="pcs").type,
        ev.collateral_expired(
            tee="tdx", key="fmspc/00606a000000", not_after="2026-01-01T00:00:00Z"
        ).type,
    }
    assert all(t.startswith("org.trustee-py.") for t in types)
    assert len(types) == 9
    assert ev.collateral_fetched(tee="tdx", key="k", source="pcs").data["source"] == "pcs"
    assert ev.token_issued(jti="j", exp=1, event_source="trustee-py/as").source == "trustee-py/as"
