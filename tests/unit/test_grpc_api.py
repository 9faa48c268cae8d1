"""The committed gRPC stubs: regenerating them from proto/ gives the same files, and the
messages and services have the field numbers, oneofs and names upstream's AS and RVPS use on
the wire (a renumbered field would silently misread an upstream client's request)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor

from trustee.grpc_api import attestation_pb2, reference_pb2

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "python" / "trustee" / "grpc_api"

STRING = FieldDescriptor.TYPE_STRING


def test_regenerating_gives_the_committed_stubs(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="regeneration needs grpcio-tools (dev extra)")
    done = subprocess.run(
        [sys.executable, str(ROOT / "proto" / "generate.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    fresh = {p.name: p.read_bytes() for p in (tmp_path / "trustee" / "grpc_api").iterdir()}
    committed = {p.name: p.read_bytes() for p in COMMITTED.glob("*_pb2*")}
    assert sorted(fresh) == sorted(committed)
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert stale == [], "run `make grpc-stubs` and commit the result"


def _fields(message: type) -> dict[str, tuple[int, int, str | None]]:
    descriptor = message.DESCRIPTOR  # type: ignore[attr-defined]
    return {
        f.name: (f.number, f.type, f.containing_oneof.name if f.containing_oneof else None)
        for f in descriptor.fields
    }


def test_attestation_messages_match_the_wire() -> None:
    individual = _fields(attestation_pb2.IndividualAttestationRequest)
    assert individual == {
        "tee": (1, STRING, None),
        "evidence": (3, STRING, None),
        "raw_runtime_data": (4, STRING, "runtime_data"),
        "structured_runtime_data": (5, STRING, "runtime_data"),
        "init_data_digest": (6, STRING, "init_data"),
        "init_data_toml": (7, STRING, "init_data"),
        "runtime_data_hash_algorithm": (8, STRING, None),
    }
    request = attestation_pb2.AttestationRequest.DESCRIPTOR
    assert request.fields_by_name["verification_requests"].number == 1
    assert request.fields_by_name["policy_ids"].number == 2
    assert _fields(attestation_pb2.AttestationResponse) == {"attestation_token": (1, STRING, None)}
    assert _fields(attestation_pb2.SetPolicyRequest) == {
        "policy_id": (1, STRING, None),
        "policy": (2, STRING, None),
    }
    inner = attestation_pb2.ChallengeRequest.DESCRIPTOR.fields_by_name["inner"]
    assert inner.number == 1
    assert inner.message_type is not None and inner.message_type.GetOptions().map_entry
    assert _fields(attestation_pb2.ChallengeResponse) == {
        "attestation_challenge": (1, STRING, None)
    }


def test_an_upstream_encoded_request_decodes() -> None:
    # Hand-encoded as any proto3 implementation writes it: tee (1), evidence (3),
    # structured_runtime_data (5), init_data_toml (7), runtime_data_hash_algorithm (8).
    def field(number: int, text: bytes) -> bytes:
        return bytes([number << 3 | 2, len(text)]) + text

    individual = field(1, b"sample") + field(3, b"ZXY") + field(5, b"{}")
    individual += field(7, b"x=1") + field(8, b"sha256")
    wire = field(1, individual) + field(2, b"default")
    request = attestation_pb2.AttestationRequest.FromString(wire)
    item = request.verification_requests[0]
    assert (item.tee, item.evidence, item.runtime_data_hash_algorithm) == (
        "sample",
        "ZXY",
        "sha256",
    )
    assert item.WhichOneof("runtime_data") == "structured_runtime_data"
    assert item.WhichOneof("init_data") == "init_data_toml"
    assert list(request.policy_ids) == ["default"]


def test_reference_messages_match_the_wire() -> None:
    result = reference_pb2.ReferenceValueQueryResponse.DESCRIPTOR.fields_by_name[
        "reference_value_results"
    ]
    assert result.number == 1 and result.has_presence
    assert not reference_pb2.ReferenceValueQueryResponse().HasField("reference_value_results")
    assert _fields(reference_pb2.ReferenceValueQueryRequest) == {
        "reference_value_id": (1, STRING, None)
    }
    assert _fields(reference_pb2.ReferenceValueRegisterRequest) == {"message": (1, STRING, None)}


@pytest.mark.parametrize(
    ("module", "service", "methods"),
    [
        (
            attestation_pb2,
            "attestation.AttestationService",
            ["AttestationEvaluate", "SetAttestationPolicy", "GetAttestationChallenge"],
        ),
        (
            reference_pb2,
            "reference.ReferenceValueProviderService",
            ["QueryReferenceValue", "RegisterReferenceValue"],
        ),
    ],
)
def test_services_have_the_wire_names(module: object, service: str, methods: list[str]) -> None:
    descriptor = module.DESCRIPTOR  # type: ignore[attr-defined]
    found = descriptor.services_by_name[service.split(".")[1]]
    assert found.full_name == service
    assert [m.name for m in found.methods] == methods
