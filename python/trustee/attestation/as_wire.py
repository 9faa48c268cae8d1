"""The standalone Attestation Service's request shape (upstream's `AttestationRequest`), sans I/O.

Both front ends reduce what they received to `Individual` values (the REST JSON body through
`from_json`, a gRPC message field by field) and turn them into the service's EvidenceRequests
here, so both refuse the same inputs with the same words. The KBS's remote-AS clients build
their requests with `to_json`.

Two kinds of refusal, as upstream answers them: `AsBodyError` is a body of the wrong shape
(REST 400, before anything is looked at); `AsRequestError` is a value that cannot be used
(undecodable base64, an unknown TEE, an unknown hash), answered as an internal error whose text
is a chain of what was being done and why.
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trustee import jsonfast
from trustee.crypto.b64 import Base64Error, b64url_decode_nopad, b64url_encode
from trustee.protocol import limits
from trustee.protocol.binding import HASH_ALGORITHMS
from trustee.protocol.rcar import EvidenceRequest
from trustee.protocol.tees import verifier_name

# The TEE names upstream's standalone AS takes (kbs-types serde names, as its front ends list
# them); a name outside this list is refused before any verifier is chosen.
AS_TEES = frozenset(
    {
        "az-snp-vtpm",
        "az-tdx-vtpm",
        "sgx",
        "snp",
        "tdx",
        "cca",
        "csv",
        "se",
        "tpm",
        "sample",
        "sampledevice",
        "hygondcu",
        "nvidia",
    }
)
DEFAULT_HASH = "sha384"
DEFAULT_POLICY_IDS = ("default",)
RUNTIME_DATA_KINDS = ("raw", "structured")
INIT_DATA_KINDS = ("init_data_digest", "init_data_toml")


class AsBodyError(ValueError):
    """The body does not have the request's shape (a missing field, a wrong type)."""


class AsRequestError(ValueError):
    """A value that cannot be used: `chain` is what was being done, outermost first, then why."""

    def __init__(self, *chain: str) -> None:
        super().__init__(": ".join(chain))
        self.chain = list(chain)


@dataclass(frozen=True)
class Individual:
    """One verification request as it arrived, before any decoding."""

    tee: str
    evidence: str  # base64url (no padding) of the evidence's JSON text
    runtime_data: tuple[str, Any] | None = None  # ("raw", base64url) | ("structured", JSON)
    init_data: tuple[str, str] | None = None  # ("init_data_digest", base64url) | (…_toml, text)
    hash_algorithm: str | None = None  # None or "": the default, sha384


def _b64(text: str, what: str) -> bytes:
    try:
        return b64url_decode_nopad(text)
    except (Base64Error, binascii.Error) as exc:
        raise AsRequestError(what, str(exc)) from exc


def hash_algorithm(name: str | None) -> str:
    if not name:
        return DEFAULT_HASH
    lowered = name.lower()
    if lowered not in HASH_ALGORITHMS:
        raise AsRequestError(
            "parse runtime data HashAlgorithm failed",
            f"{name!r} is not one of {', '.join(HASH_ALGORITHMS)}",
        )
    return lowered


def evidence_request(item: Individual) -> EvidenceRequest:
    """Decode one request's values; raises AsRequestError naming the value that failed."""
    raw = _b64(item.evidence, "base64 decode evidence")
    try:
        evidence = limits.loads(raw, "evidence")
    except ValueError as exc:
        raise AsRequestError("failed to parse evidence as JSON", str(exc)) from exc
    if item.tee not in AS_TEES:
        raise AsRequestError(f"tee `{item.tee}` not supported")
    algorithm = hash_algorithm(item.hash_algorithm)
    structured: Any | None = None
    raw_runtime: bytes | None = None
    if item.runtime_data is not None:
        kind, value = item.runtime_data
        if kind == "raw":
            raw_runtime = _b64(value, "decode given Runtime Data")
        else:
            structured = value
    toml: str | None = None
    digest: bytes | None = None
    if item.init_data is not None:
        kind, text = item.init_data
        if kind == "init_data_digest":
            digest = _b64(text, "decode given Init Data")
        else:
            toml = text
    return EvidenceRequest(
        tee=item.tee,
        evidence=evidence,
        runtime_data=structured,
        hash_algorithm=algorithm,
        init_data_toml=toml,
        raw_runtime_data=raw_runtime,
        init_data_digest=digest,
    )


def policy_ids(ids: Sequence[str]) -> list[str]:
    """The ids as given, or `default` when none is (the token is built on the first)."""
    return list(ids) if ids else list(DEFAULT_POLICY_IDS)


def _one_of(doc: Any, kinds: tuple[str, ...], where: str) -> tuple[str, Any] | None:
    """serde's externally tagged enum: `{"<kind>": value}` with exactly one known key."""
    if doc is None:
        return None
    if not isinstance(doc, dict) or len(doc) != 1 or next(iter(doc)) not in kinds:
        raise AsBodyError(f"`{where}` must be an object with one of: {', '.join(kinds)}")
    ((kind, value),) = doc.items()
    if kind != "structured" and not isinstance(value, str):
        raise AsBodyError(f"`{where}.{kind}` must be a string")
    return kind, value


def _string(doc: dict[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    value = doc.get(key)
    if value is None and not required:
        return None
    if value is None:
        raise AsBodyError(f"missing field `{key}` in {where}")
    if not isinstance(value, str):
        raise AsBodyError(f"`{key}` in {where} must be a string")
    return value


def _individual(doc: Any, index: int) -> Individual:
    where = f"verification_requests[{index}]"
    if not isinstance(doc, dict):
        raise AsBodyError(f"{where} must be an object")
    tee = _string(doc, "tee", where)
    evidence = _string(doc, "evidence", where)
    assert tee is not None and evidence is not None
    init = _one_of(doc.get("init_data"), INIT_DATA_KINDS, f"{where}.init_data")
    return Individual(
        tee=tee,
        evidence=evidence,
        runtime_data=_one_of(doc.get("runtime_data"), RUNTIME_DATA_KINDS, f"{where}.runtime_data"),
        init_data=None if init is None else (init[0], str(init[1])),
        hash_algorithm=_string(doc, "runtime_data_hash_algorithm", where, required=False),
    )


def from_json(doc: Any) -> tuple[list[Individual], list[str]]:
    """The REST body: `{"verification_requests": [...], "policy_ids": [...]}` (both required)."""
    if not isinstance(doc, dict):
        raise AsBodyError("the body must be a JSON object")
    items, ids = doc.get("verification_requests"), doc.get("policy_ids")
    if items is None:
        raise AsBodyError("missing field `verification_requests`")
    if ids is None:
        raise AsBodyError("missing field `policy_ids`")
    if not isinstance(items, list):
        raise AsBodyError("`verification_requests` must be an array")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise AsBodyError("`policy_ids` must be an array of strings")
    return [_individual(item, i) for i, item in enumerate(items)], ids


def individual_json(req: EvidenceRequest) -> dict[str, Any]:
    """One EvidenceRequest as the REST body carries it (the KBS's remote-AS client)."""
    doc: dict[str, Any] = {
        "tee": verifier_name(req.tee),
        "evidence": b64url_encode(jsonfast.dumps(req.evidence)),
        "runtime_data_hash_algorithm": req.hash_algorithm,
    }
    if req.raw_runtime_data is not None:
        doc["runtime_data"] = {"raw": b64url_encode(req.raw_runtime_data)}
    elif req.runtime_data is not None:
        doc["runtime_data"] = {"structured": req.runtime_data}
    if req.init_data_digest is not None:
        doc["init_data"] = {"init_data_digest": b64url_encode(req.init_data_digest)}
    elif req.init_data_toml is not None:
        doc["init_data"] = {"init_data_toml": req.init_data_toml}
    return doc


def to_json(requests: Sequence[EvidenceRequest], ids: Sequence[str]) -> dict[str, Any]:
    return {
        "verification_requests": [individual_json(r) for r in requests],
        "policy_ids": list(ids),
    }
