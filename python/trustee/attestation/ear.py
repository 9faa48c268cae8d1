"""EAR attestation tokens: AR4SI trust vectors, status tiers, ES256 signing (native core).

Claim names, order and tiers follow upstream's broker (ear 0.5.0 names with dots), because
resource policies written for upstream read exactly these paths.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustee import _core, jsonfast, offload
from trustee.config.model import TokenBrokerConfig
from trustee.crypto.b64 import b64std_encode, b64url_encode
from trustee.crypto.jws import encode_header

log = logging.getLogger(__name__)

TRUST_CLAIMS = (
    "instance-identity",
    "configuration",
    "executables",
    "file-system",
    "hardware",
    "runtime-opaque",
    "storage-opaque",
    "sourced-data",
)
STATUS_ORDER = ("none", "affirming", "warning", "contraindicated")


class EarError(Exception):
    pass


def _as_i8(value: int) -> int:
    # Upstream stores trust claims as i8 with wrap-around; keep that arithmetic.
    return ((value + 128) % 256) - 128


def tier(value: int) -> str:
    if -1 <= value <= 1:
        return "none"
    if -32 <= value < 32:
        return "affirming"
    if -96 <= value < 96:
        return "warning"
    return "contraindicated"


def trust_vector(trust_claims: Any) -> dict[str, int]:
    """Validate a policy's `trust_claims` object into an ordered trustworthiness vector."""
    if trust_claims is None:
        return dict.fromkeys(TRUST_CLAIMS, 0)
    if not isinstance(trust_claims, dict):
        raise EarError("Trust claims is not an object")
    values: dict[str, int] = {}
    for name, value in trust_claims.items():
        if name not in TRUST_CLAIMS:
            raise EarError(f"Unknown trust claim {name!r}")
        if not isinstance(value, int) or isinstance(value, bool):
            raise EarError(f"Trust claim value not number: {name} = {value!r}")
        values[name] = _as_i8(value)
    if not values:
        raise EarError("At least one policy claim must be set.")
    return {name: values[name] for name in TRUST_CLAIMS if name in values}


def status_of(vector: dict[str, int]) -> str:
    worst = 0
    for value in vector.values():
        worst = max(worst, STATUS_ORDER.index(tier(value)))
    return STATUS_ORDER[worst]


def validate_extensions(extensions: Any) -> list[tuple[str, Any]]:
    if extensions is None:
        return []
    if not isinstance(extensions, list):
        raise EarError("Policy extensions is not an array")
    names: set[str] = set()
    keys: set[int] = set()
    out = []
    for ext in extensions:
        if not isinstance(ext, dict) or not isinstance(ext.get("name"), str):
            raise EarError(f"Policy extension {ext!r} needs a string `name`")
        key = ext.get("key")
        if not isinstance(key, int) or isinstance(key, bool) or not -(2**31) <= key < 2**31:
            raise EarError(f"Policy extension {ext['name']!r} needs an int32 `key`")
        if ext["name"] in names or key in keys:
            raise EarError(f"Policy extension {ext['name']!r} duplicates a name or key")
        names.add(ext["name"])
        keys.add(key)
        if ext.get("value") is not None:
            out.append((ext["name"], ext["value"]))
    return sorted(out)


def appraisal(
    vector: dict[str, int],
    policy_id: str,
    annotated_evidence: dict[str, Any],
    extensions: list[tuple[str, Any]],
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ear.status": status_of(vector),
        "ear.trustworthiness-vector": vector,
        "ear.appraisal-policy-id": policy_id,
    }
    if annotated_evidence:
        result["ear.veraison.annotated-evidence"] = annotated_evidence
    for name, value in extensions:
        result[name] = value
    return result


@dataclass
class Signer:
    key: ec.EllipticCurvePrivateKey
    x5c: list[str] | None = None
    x5u: str | None = None

    def header_jwk(self) -> dict[str, Any]:
        numbers = self.key.public_key().public_numbers()
        jwk: dict[str, Any] = {"alg": "ES256"}
        if self.x5u is not None:
            jwk["x5u"] = self.x5u
        if self.x5c is not None:
            jwk["x5c"] = self.x5c
        jwk["kty"] = "EC"
        jwk["crv"] = "P-256"
        jwk["x"] = b64url_encode(numbers.x.to_bytes(32, "big"))
        jwk["y"] = b64url_encode(numbers.y.to_bytes(32, "big"))
        return jwk


def load_signer(config: TokenBrokerConfig) -> Signer:
    if config.signer is None:
        log.info(
            "No Token Signer key in config file, create an ephemeral key and without CA pubkey cert"
        )
        return Signer(ec.generate_private_key(ec.SECP256R1()))
    try:
        key = serialization.load_pem_private_key(Path(config.signer.key_path).read_bytes(), None)
    except (OSError, ValueError, TypeError) as exc:
        raise EarError(f"signer.key_path {config.signer.key_path}: cannot load key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise EarError("Only P-256 attestation token signing keys are supported")
    x5c = None
    if config.signer.cert_path is not None:
        try:
            # X.509 parsing is loaded only by servers that configure a signer certificate.
            from trustee.crypto.x509chain import load_pem_certificates

            certs = load_pem_certificates(Path(config.signer.cert_path).read_bytes())
        except (OSError, ValueError) as exc:
            raise EarError(f"signer.cert_path {config.signer.cert_path}: {exc}") from exc
        if not certs:
            raise EarError(f"signer.cert_path {config.signer.cert_path}: no certificate")
        x5c = [b64std_encode(c.public_bytes(serialization.Encoding.DER)) for c in certs]
    return Signer(key, x5c=x5c, x5u=config.signer.cert_url)


@dataclass(frozen=True)
class IssuedToken:
    token: str
    claims: dict[str, Any]
    # The payload text: policies that read the claims as input can skip re-serialising them.
    claims_json: str


class EarBroker:
    def __init__(self, config: TokenBrokerConfig, signer: Signer) -> None:
        self.config = config
        self.signer = signer
        self._header_b64 = encode_header({"typ": "JWT", "alg": "ES256", "jwk": signer.header_jwk()})
        self._native = _core.Es256Signer(
            signer.key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    def issue(self, submods: dict[str, dict[str, Any]], now: float | None = None) -> str:
        return self.issue_full(submods, now).token

    def issue_full(
        self, submods: dict[str, dict[str, Any]], now: float | None = None
    ) -> IssuedToken:
        """The signed token, its claims, and the claims' JSON text (the token's payload)."""
        claims, text = self._claims(submods, now)
        return IssuedToken(self.reissue(text), claims, text)

    async def issue_offloaded(
        self, submods: dict[str, dict[str, Any]], now: float | None = None
    ) -> IssuedToken:
        """`issue_full` with the signature made on an offload thread."""
        claims, text = self._claims(submods, now)
        signing_input = self._signing_input(text)
        native = self._native
        token = await offload.DEFAULT.call(
            lambda job_id: native.submit_sign_compact(job_id, signing_input),
            lambda: native.sign_compact(signing_input),
        )
        return IssuedToken(token, claims, text)

    def reissue(self, claims_json: str) -> str:
        """A token over claims this broker issued before (a stateless session's repeated
        /attest): the same payload, a fresh signature."""
        return self._native.sign_compact(self._signing_input(claims_json))

    def _signing_input(self, claims_json: str) -> str:
        return f"{self._header_b64}.{b64url_encode(claims_json.encode())}"

    def _claims(
        self, submods: dict[str, dict[str, Any]], now: float | None
    ) -> tuple[dict[str, Any], str]:
        iat = int(now if now is not None else time.time())
        claims = {
            "eat_profile": self.config.profile_name,
            "iat": iat,
            "ear.verifier-id": {
                "developer": self.config.developer_name,
                "build": self.config.build_name,
            },
            "submods": dict(sorted(submods.items())),
            "exp": iat + self.config.duration_min * 60,
            "iss": self.config.issuer_name,
        }
        return claims, jsonfast.dumps_str(claims)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.signer.header_jwk()]}
