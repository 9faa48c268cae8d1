"""Sans-IO RCAR (Request → Challenge → Attestation → Response) for every protocol generation.

`/auth`'s `version` picks the generation and the session remembers it: 0.1.0 and 0.1.1
(kbs-client ≤ v0.11), 0.2.0 (v0.12–v0.13) send `{tee-pubkey, tee-evidence}` bound with
SHA-384(JCS{nonce, tee-pubkey}); 0.4.0 sends `{init-data, runtime-data, tee-evidence}` bound with
the `additional-evidence` member too. Functions take bytes/dicts and return bytes/dicts; failures
raise KbsError with upstream's fixed detail strings and a `reason` naming what was wrong.
"""

from __future__ import annotations

import base64
import re
import secrets
import uuid
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from trustee import jsonfast
from trustee.protocol import binding, limits
from trustee.protocol.errors import KbsError, attest_failed, auth_failed
from trustee.protocol.generations import CURRENT, WireGeneration, wire_generation
from trustee.protocol.limits import InputLimitError
from trustee.protocol.tees import ACCEPTED_TEES

SESSION_COOKIE = "kbs-session-id"

# Every client's /auth is about a hundred bytes (`extra-params` names a few hash algorithms at
# most); the bound is checked before parsing, so an unauthenticated caller cannot make the
# server build large structures.
MAX_AUTH_BODY_BYTES = 16 * 1024
# `version` is the one client string a session keeps; semver allows build metadata of any
# length, which would otherwise ride along into every stored session.
MAX_VERSION_LENGTH = 64
# The EAR token a session keeps (with its claims) grows with the evidence and init-data it
# attests; a bound per session keeps the session store's memory proportional to its count.
MAX_SESSION_TOKEN_BYTES = 1024 * 1024

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)


@dataclass(frozen=True)
class AuthRequest:
    # `extra-params` is validated and dropped: nothing after /auth reads it, so sessions do
    # not carry what the client chose to put there.
    version: str
    tee: str
    generation: str = CURRENT.version


@dataclass
class Session:
    id: str
    version: str
    tee: str
    nonce: str
    expires_at: float  # unix seconds, fixed at /auth
    token: str | None = None
    generation: str = CURRENT.version
    attested_claims: dict[str, Any] | None = field(default=None, repr=False)
    attested_claims_json: str | None = field(default=None, repr=False)
    # Sealed (stateless) sessions only: the cookie value when it is not the id, and why this
    # process's token verifier refused the token it issued, if it did.
    cookie: str | None = field(default=None, repr=False)
    verifier_refusal: str | None = None
    token_ref: str | None = None  # the issued token's audit id

    @property
    def attested(self) -> bool:
        return self.token is not None or self.attested_claims_json is not None

    @property
    def cookie_value(self) -> str:
        return self.cookie if self.cookie is not None else self.id

    def expired(self, now: float) -> bool:
        return now >= self.expires_at


@dataclass(frozen=True)
class Attestation:
    init_data: dict[str, str] | None
    nonce: str
    tee_pubkey: dict[str, Any]
    primary_evidence: Any
    additional_evidence: str


@dataclass(frozen=True)
class FlatAttestation:
    """A "flat" body (0.1.x / 0.2.0): no nonce (the binding covers it), no init-data, no
    devices."""

    tee_pubkey: dict[str, Any]
    evidence: Any


@dataclass(frozen=True)
class EvidenceRequest:
    """One evidence to verify, with its expected binding (AS VerificationRequest)."""

    tee: str
    evidence: Any
    # Structured runtime data: its canonical JSON digest is the expected report data, and it
    # becomes the token's `runtime_data_claims`.
    runtime_data: Any | None
    hash_algorithm: str
    init_data_toml: str | None = None
    # What a standalone AS may be given instead (upstream's `raw` runtime data and init-data
    # digest): the expected bytes themselves, with no claims.
    raw_runtime_data: bytes | None = None
    init_data_digest: bytes | None = None


def _json(body: bytes) -> Any:
    try:
        return limits.loads(body)
    except ValueError as exc:
        raise ValueError(f"body is not JSON: {exc}") from exc


def parse_version(text: str) -> tuple[int, int, int, str | None]:
    m = _SEMVER.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a semantic version")
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4)


def version_matches(text: str, accepted: str) -> bool:
    """Upstream's `=X.Y.Z` requirement: build metadata ignored, any pre-release fails."""
    major, minor, patch, pre = parse_version(text)
    want = parse_version(accepted)
    return pre is None and (major, minor, patch) == want[:3]


def parse_auth_request(body: bytes, accepted_versions: list[str]) -> AuthRequest:
    if len(body) > MAX_AUTH_BODY_BYTES:
        raise InputLimitError(
            f"/auth body of {len(body)} bytes is larger than {MAX_AUTH_BODY_BYTES} bytes"
        )
    try:
        doc = _json(body)
        if not isinstance(doc, dict):
            raise ValueError("body is not a JSON object")
        version, tee = doc.get("version"), doc.get("tee")
        if not isinstance(version, str):
            raise ValueError("`version` is missing or not a string")
        if not isinstance(tee, str):
            raise ValueError("`tee` is missing or not a string")
        if tee not in ACCEPTED_TEES:
            raise ValueError(f"unknown tee {tee!r}")
        if "extra-params" not in doc:
            raise ValueError("`extra-params` is missing")
    except ValueError as exc:
        raise auth_failed("deserialize Request", f"/auth body: {exc}") from exc
    if len(version) > MAX_VERSION_LENGTH:
        raise InputLimitError(
            f"/auth `version` of {len(version)} characters is longer than {MAX_VERSION_LENGTH}"
        )
    try:
        parse_version(version)
    except ValueError as exc:
        raise auth_failed("failed to parse KBS version", str(exc)) from exc
    generation = next((v for v in accepted_versions if version_matches(version, v)), None)
    if generation is None:
        expect = ", ".join(f"={v}" for v in accepted_versions)
        raise auth_failed(
            f"KBS Client Protocol Version Mismatch: expect {expect} while the request is {version}",
            f"protocol version {version} is not accepted (accepted: {expect})",
        )
    if wire_generation(generation).extra_params_text and not isinstance(doc["extra-params"], str):
        # kbs-types 0.6 typed `extra-params` as a string.
        raise auth_failed(
            "deserialize Request", "/auth body: 0.1.0 `extra-params` must be a string"
        )
    return AuthRequest(version=version, tee=tee, generation=generation)


def make_nonce() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def new_session(request: AuthRequest, timeout_min: int, now: float) -> Session:
    return Session(
        id=uuid.uuid4().hex,
        version=request.version,
        tee=request.tee,
        nonce=make_nonce(),
        expires_at=now + timeout_min * 60,
        generation=request.generation,
    )


def challenge_body(session: Session) -> bytes:
    return jsonfast.dumps({"nonce": session.nonce, "extra-params": ""})


def check_session_token(token: str) -> None:
    """Refuse to keep a token beyond the per-session bound (it carries the attested claims)."""
    if len(token) > MAX_SESSION_TOKEN_BYTES:
        raise InputLimitError(
            f"the attestation token of {len(token)} bytes is larger than the "
            f"{MAX_SESSION_TOKEN_BYTES} bytes a session keeps; send less evidence or init-data"
        )


def set_cookie_value(session: Session) -> str:
    # Only Expires: clients scope the cookie to /kbs/v0 by default; a Path would narrow it.
    expires = formatdate(int(session.expires_at), usegmt=True)
    return f"{SESSION_COOKIE}={session.cookie_value}; Expires={expires}"


def token_body(token: str) -> bytes:
    return jsonfast.dumps({"token": token})


_KEY_MEMBERS = {"EC": ("crv", "alg", "x", "y"), "RSA": ("alg", "n", "e"), "AKP": ("alg", "pub")}


def _tee_pubkey(value: Any, generation: WireGeneration = CURRENT) -> dict[str, Any]:
    """Re-serialise only the typed members of the key, as upstream's typed parse does."""
    if not isinstance(value, dict):
        raise ValueError("tee-pubkey is not an object")
    kty = value.get("kty")
    allowed_types = generation.tee_key_types
    if allowed_types is None:
        # kbs-types 0.6: a plain {kty, alg, n, e} struct whatever the kty says.
        if not isinstance(kty, str):
            raise ValueError("tee-pubkey member 'kty' is missing or not a string")
        members: tuple[str, ...] = ("alg", "n", "e")
    else:
        if kty not in allowed_types:
            allowed = " or ".join(allowed_types)
            raise ValueError(
                f"tee-pubkey kty {kty!r} is not {allowed} (protocol {generation.version})"
            )
        members = _KEY_MEMBERS[kty]
    out: dict[str, Any] = {"kty": kty}
    for name in members:
        if not isinstance(value.get(name), str):
            raise ValueError(f"tee-pubkey member {name!r} is missing or not a string")
        out[name] = value[name]
    return out


def parse_attestation(
    body: bytes, generation: str = CURRENT.version
) -> Attestation | FlatAttestation:
    try:
        doc = _json(body)
        if not isinstance(doc, dict):
            raise ValueError("body is not a JSON object")
        speaks = wire_generation(generation)
        if speaks.attest_body == "flat":
            return _flat_attestation(doc, speaks)
        if "runtime-data" not in doc and "tee-pubkey" in doc:
            raise ValueError(
                "generation mismatch: the session speaks 0.4.0 but the body is a 0.1.x/0.2.0 "
                "attestation (top-level tee-pubkey)"
            )
        rd = doc.get("runtime-data")
        te = doc.get("tee-evidence")
        if not isinstance(rd, dict):
            raise ValueError("`runtime-data` is missing or not an object")
        if not isinstance(te, dict):
            raise ValueError("`tee-evidence` is missing or not an object")
        nonce = rd.get("nonce")
        if not isinstance(nonce, str):
            raise ValueError("`runtime-data.nonce` is missing or not a string")
        if "primary_evidence" not in te:
            raise ValueError("`tee-evidence.primary_evidence` is missing")
        additional = te.get("additional_evidence", "")
        if not isinstance(additional, str):
            raise ValueError("`tee-evidence.additional_evidence` must be a string")
        init = doc.get("init-data")
        init_data: dict[str, str] | None = None
        if init is not None:
            if not isinstance(init, dict) or not all(
                isinstance(init.get(k), str) for k in ("format", "body")
            ):
                raise ValueError("`init-data` must be {format, body} strings or null")
            init_data = {"format": init["format"], "body": init["body"]}
        return Attestation(
            init_data=init_data,
            nonce=nonce,
            tee_pubkey=_tee_pubkey(rd.get("tee-pubkey")),
            primary_evidence=te["primary_evidence"],
            additional_evidence=additional,
        )
    except ValueError as exc:
        raise attest_failed(f"/attest body: {exc}") from exc


def _flat_attestation(doc: dict[str, Any], generation: WireGeneration) -> FlatAttestation:
    version = generation.version
    if "runtime-data" in doc or "tee-pubkey" not in doc:
        raise ValueError(
            f"generation mismatch: the session speaks {version} but the body is not a "
            f"{version} attestation (needs top-level tee-pubkey and tee-evidence)"
        )
    if "tee-evidence" not in doc:
        raise ValueError("`tee-evidence` is missing")
    evidence = doc["tee-evidence"]
    if generation.evidence_text:
        # 0.1.0 carried the attester's evidence as a JSON string.
        if not isinstance(evidence, str):
            raise ValueError("0.1.0 `tee-evidence` must be a string")
        try:
            evidence = limits.loads(evidence, "0.1.0 `tee-evidence`")
        except ValueError as exc:
            raise ValueError(f"0.1.0 `tee-evidence` string is not JSON: {exc}") from exc
    return FlatAttestation(tee_pubkey=_tee_pubkey(doc["tee-pubkey"], generation), evidence=evidence)


def binding_hash(tee: str) -> str:
    return "sha512" if tee == "se" else "sha384"


def evidence_requests(
    session: Session, att: Attestation | FlatAttestation
) -> list[EvidenceRequest]:
    """Check the nonce and build one request per evidence with its expected binding."""
    if isinstance(att, FlatAttestation):
        # The nonce comes from the session; the binding check is the nonce check.
        return [
            EvidenceRequest(
                tee=session.tee,
                evidence=att.evidence,
                runtime_data=binding.device_runtime_data(att.tee_pubkey, session.nonce),
                hash_algorithm="sha384",
            )
        ]
    if att.nonce != session.nonce:
        raise attest_failed("runtime-data.nonce does not match the session's challenge nonce")
    init_toml: str | None = None
    if att.init_data is not None:
        if att.init_data["format"] != "toml":
            raise attest_failed(
                f"init-data format {att.init_data['format']!r} is not supported (only toml)"
            )
        init_toml = att.init_data["body"]
    alg = binding_hash(session.tee)
    requests = [
        EvidenceRequest(
            tee=session.tee,
            evidence=att.primary_evidence,
            runtime_data=binding.primary_runtime_data(
                att.tee_pubkey, session.nonce, att.additional_evidence
            ),
            hash_algorithm=alg,
            init_data_toml=init_toml,
        )
    ]
    if att.additional_evidence != "":
        try:
            devices = limits.loads(att.additional_evidence, "additional_evidence")
        except ValueError as exc:
            raise attest_failed(f"additional_evidence is not JSON: {exc}") from exc
        if not isinstance(devices, dict):
            raise attest_failed("additional_evidence is not a JSON object of tee → evidence")
        for tee, evidence in devices.items():
            if tee not in ACCEPTED_TEES:
                raise attest_failed(f"additional_evidence names unknown tee {tee!r}")
            requests.append(
                EvidenceRequest(
                    tee=tee,
                    evidence=evidence,
                    runtime_data=binding.device_runtime_data(att.tee_pubkey, session.nonce),
                    hash_algorithm=alg,
                )
            )
    return requests


__all__ = [
    "SESSION_COOKIE",
    "Attestation",
    "AuthRequest",
    "EvidenceRequest",
    "FlatAttestation",
    "KbsError",
    "Session",
    "challenge_body",
    "check_session_token",
    "evidence_requests",
    "make_nonce",
    "new_session",
    "parse_attestation",
    "parse_auth_request",
    "set_cookie_value",
    "token_body",
]
