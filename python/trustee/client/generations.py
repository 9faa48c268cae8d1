"""What differs between KBS protocol generations on the client side, behind `Generation`: the
version string, the `/attest` body, the TEE key type and the JWE form; `GENERATIONS` lists them by
the protocol version they declare. Also the wire models (challenge, token, init-data) and the
small encodings (compact JSON, the legacy admin token) the client and tests share."""

from __future__ import annotations

import json
import logging
import os
import ssl
import time
import tomllib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from trustee.client.attesters import AttesterSet
from trustee.client.errors import (
    DecryptResponseError,
    EvidenceError,
    KbsClientError,
    ResponseDeserializationError,
    _preview,
)
from trustee.crypto.b64 import Base64Error, b64std_encode, b64url_decode
from trustee.crypto.jwk import (
    TEE_EC_ALG,
    TEE_RSA_ALG,
    JwkError,
    PrivateKey,
    describe_key,
    ec_curve_name,
    generate_tee_key,
    public_jwk,
    tee_public_jwk,
)
from trustee.crypto.jws import sign_compact
from trustee.protocol import binding, jwe
from trustee.protocol.generations import V0_1_0, V0_1_1, V0_2_0, V0_4_0, WireGeneration
from trustee.protocol.tees import LEGACY_WIRE_SPELLING

log = logging.getLogger("trustee.client.kbs")

DEFAULT_ATTESTATION_POLICY_ID = V0_4_0.default_attestation_policy_id
LEGACY_ATTESTATION_POLICY_ID = V0_1_1.default_attestation_policy_id
LEGACY_ADMIN_TOKEN_LIFETIME_S = 7200


# --------------------------------------------------------------------------------------------
# Wire models


@dataclass(frozen=True)
class Challenge:
    nonce: str
    extra_params: Any

    @classmethod
    def parse(cls, content: bytes) -> Challenge:
        try:
            doc = json.loads(content)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ResponseDeserializationError(f"challenge is not JSON: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("nonce"), str):
            raise ResponseDeserializationError(
                f"challenge needs a string `nonce`: {_preview(content)}"
            )
        # A missing `extra-params` is a deserialisation error upstream, not "use defaults".
        if "extra-params" not in doc:
            raise ResponseDeserializationError("challenge has no `extra-params` field")
        return cls(nonce=doc["nonce"], extra_params=doc["extra-params"])


@dataclass(frozen=True)
class Token:
    """An attestation token; only `exp`/`nbf` are read (the client never verifies it)."""

    content: str
    exp: int | None = None
    nbf: int | None = None

    @classmethod
    def parse(cls, content: str) -> Token:
        parts = content.split(".")
        if len(parts) < 2:
            raise KbsClientError("illegal token format: not a JWT")
        try:
            claims = json.loads(b64url_decode(parts[1]))
        except (Base64Error, ValueError, UnicodeDecodeError) as exc:
            raise KbsClientError(f"illegal token format: {exc}") from exc
        if not isinstance(claims, dict):
            raise KbsClientError("illegal token format: claims are not a JSON object")
        return cls(content=content, exp=_int_claim(claims, "exp"), nbf=_int_claim(claims, "nbf"))

    def is_valid(self, now: float | None = None) -> bool:
        t = time.time() if now is None else now
        if self.exp is not None and self.exp < t:
            return False
        return not (self.nbf is not None and self.nbf > t)


def _int_claim(claims: Mapping[str, Any], name: str) -> int | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise KbsClientError(f"illegal token format: `{name}` is not a number")
    return int(value)


@dataclass(frozen=True)
class InitData:
    """Init-data as the client sends it: the raw text is what both sides hash."""

    body: str
    format: str = "toml"

    def wire(self) -> dict[str, str]:
        return {"format": self.format, "body": self.body}

    def digest(self) -> bytes | None:
        """Digest a hardware TEE would hold in its init-data field (TDX MRCONFIGID, SNP HOSTDATA).

        The algorithm comes from the document's own `algorithm` key; the guest side has no
        default for it. Text that is not such a document yields None: the client still sends it
        unchanged (the upstream client never validates it; the server decides).
        """
        if self.format != "toml":
            return None
        try:
            doc = tomllib.loads(self.body)
        except tomllib.TOMLDecodeError:
            return None
        algorithm = doc.get("algorithm")
        if not isinstance(algorithm, str):
            return None
        try:
            return binding.digest(algorithm, self.body.encode())
        except binding.BindingError:
            return None


# --------------------------------------------------------------------------------------------
# Protocol generations


class Generation(ABC):
    """One KBS protocol generation as the client speaks it; what the generation *is* (its
    version, body shape, key types, JWE form) is its row of the shared generations table."""

    def __init__(self, wire: WireGeneration) -> None:
        self.wire = wire

    @property
    def version(self) -> str:
        return self.wire.version

    @property
    def jwe_form(self) -> jwe.JweForm:
        return self.wire.jwe_form

    @property
    def supports_init_data(self) -> bool:
        return self.wire.init_data

    @property
    def default_attestation_policy_id(self) -> str:
        """The id kbs-client of that era uploads `set-attestation-policy` to without `--id`."""
        return self.wire.default_attestation_policy_id

    def generate_tee_key(self) -> PrivateKey:
        """The key pair the client makes when it is given none."""
        return generate_tee_key()

    def tee_public_jwk(self, key: PrivateKey) -> dict[str, Any]:
        """The `tee-pubkey` JWK for `key`; JwkError for a key this generation cannot use."""
        return tee_public_jwk(key)

    def decrypt(self, response: Any, tee_key: PrivateKey) -> bytes:
        """Plaintext of an encrypted resource response."""
        if not isinstance(response, Mapping):
            raise DecryptResponseError("the response is not a JWE JSON object")
        try:
            return jwe.decrypt(response, tee_key, form=self.jwe_form)
        except jwe.JweError as exc:
            raise DecryptResponseError(str(exc)) from exc

    @abstractmethod
    def auth_request(self, tee: str) -> dict[str, Any]:
        """Body of POST /kbs/v0/auth."""

    @abstractmethod
    def attestation(
        self,
        challenge: Challenge,
        tee_pubkey: dict[str, Any],
        attesters: AttesterSet,
        init_data: InitData | None,
    ) -> dict[str, Any]:
        """Body of POST /kbs/v0/attest, with evidence bound to the challenge and the key."""


class Protocol040(Generation):
    """Protocol 0.4.0 (trustee v0.14 → today): composite evidence, JCS-bound runtime data."""

    # What we can hash; sm3 (which the Rust client also offers) is left out on purpose: a
    # server that picked it would get a binding we cannot compute.
    supported_hash_algorithms = ("sha256", "sha384", "sha512")

    def auth_request(self, tee: str) -> dict[str, Any]:
        return {
            "version": self.version,
            "tee": tee,
            "extra-params": {"supported-hash-algorithms": list(self.supported_hash_algorithms)},
        }

    def attestation(
        self,
        challenge: Challenge,
        tee_pubkey: dict[str, Any],
        attesters: AttesterSet,
        init_data: InitData | None,
    ) -> dict[str, Any]:
        try:
            algorithm = binding.select_hash_algorithm(challenge.extra_params)
            device_digest = binding.runtime_data_digest(
                binding.device_runtime_data(tee_pubkey, challenge.nonce), algorithm
            )
        except binding.BindingError as exc:
            raise KbsClientError(f"cannot bind runtime data: {exc}") from exc

        devices = {
            attester.tee: _collect(attester.tee, attester.evidence, device_digest, None)
            for attester in attesters.devices
        }
        # The device map travels as a JSON *string* and that exact string is hashed into the
        # primary binding, so it is serialised once here and used for both.
        additional = compact_json(devices) if devices else ""

        try:
            primary_digest = binding.runtime_data_digest(
                binding.primary_runtime_data(tee_pubkey, challenge.nonce, additional), algorithm
            )
        except binding.BindingError as exc:
            raise KbsClientError(f"cannot bind runtime data: {exc}") from exc
        primary = attesters.primary
        init_digest = init_data.digest() if init_data is not None else None
        evidence = _collect(primary.tee, primary.evidence, primary_digest, init_digest)

        return {
            "init-data": init_data.wire() if init_data is not None else None,
            "runtime-data": {"nonce": challenge.nonce, "tee-pubkey": tee_pubkey},
            "tee-evidence": {"primary_evidence": evidence, "additional_evidence": additional},
        }


class FlatProtocol(Generation):
    """What protocols 0.1.0, 0.1.1 and 0.2.0 share: the "flat" `/attest` body and TEE key
    handling.

    `/attest` carries only `tee-pubkey` and `tee-evidence`; the evidence binds
    SHA-384(JCS({"nonce", "tee-pubkey"})) — serde_json's sorted compact output in those
    clients, which equals JCS for these string-only objects. No init-data, no device evidence.
    """

    supported_hash_algorithms = ("sha256", "sha384", "sha512")

    def auth_extra_params(self) -> Any:
        if self.wire.extra_params_text:
            return ""
        return {"supported-hash-algorithms": list(self.supported_hash_algorithms)}

    def auth_request(self, tee: str) -> dict[str, Any]:
        # The clients of these generations name the Azure TEEs without hyphens.
        wire_tee = LEGACY_WIRE_SPELLING.get(tee, tee)
        return {"version": self.version, "tee": wire_tee, "extra-params": self.auth_extra_params()}

    def hash_algorithm(self, extra_params: Any) -> str:
        """The binding hash: SHA-384 unless the challenge selects another (no server does)."""
        if self.wire.extra_params_text:
            # kbs-types 0.6 types the challenge's extra-params as a string and the client has
            # SHA-384 hard-wired.
            if not isinstance(extra_params, str):
                raise ResponseDeserializationError(
                    f"protocol {self.version} challenge `extra-params` must be a string"
                )
            return "sha384"
        if not isinstance(extra_params, Mapping) or "selected-hash-algorithm" not in extra_params:
            return "sha384"
        chosen = extra_params["selected-hash-algorithm"]
        if not isinstance(chosen, str):
            raise KbsClientError("challenge selected-hash-algorithm must be a string")
        name = chosen.lower().replace("-", "")
        if name not in self.supported_hash_algorithms:
            raise KbsClientError(f"unsupported selected-hash-algorithm {chosen!r}")
        return name

    def attestation(
        self,
        challenge: Challenge,
        tee_pubkey: dict[str, Any],
        attesters: AttesterSet,
        init_data: InitData | None,
    ) -> dict[str, Any]:
        if init_data is not None:
            raise KbsClientError(_no_init_data(self.version))
        algorithm = self.hash_algorithm(challenge.extra_params)
        try:
            report_data = binding.runtime_data_digest(
                {"nonce": challenge.nonce, "tee-pubkey": tee_pubkey}, algorithm
            )
        except binding.BindingError as exc:
            raise KbsClientError(f"cannot bind runtime data: {exc}") from exc
        if attesters.devices:
            log.debug(
                "protocol %s has no device evidence; ignoring %s",
                self.version,
                ", ".join(a.tee for a in attesters.devices),
            )
        primary = attesters.primary
        evidence = _collect(primary.tee, primary.evidence, report_data, None)
        return {
            "tee-pubkey": tee_pubkey,
            "tee-evidence": self._wire_evidence(primary.tee, evidence),
        }

    def _wire_evidence(self, tee: str, evidence: Any) -> Any:
        # Upstream attesters hand over JSON text; ours may hand over the object. Either way the
        # text is in the attester's own member order.
        text = evidence if isinstance(evidence, str) else compact_json(evidence)
        if self.wire.evidence_text:
            return text
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise EvidenceError(f"{tee}: evidence is not JSON: {exc}") from exc
        # These clients parse the text into a serde_json map without order preservation, so
        # the evidence goes out sorted ({"report_data":…,"svn":"1"} for sample).
        return _sorted_json(value)


class Protocol01x(FlatProtocol):
    """What 0.1.0 and 0.1.1 share: an RSA key exported as RSA1_5 and the non-RFC JWE."""

    def generate_tee_key(self) -> PrivateKey:
        return generate_tee_key("rsa")

    def tee_public_jwk(self, key: PrivateKey) -> dict[str, Any]:
        if not isinstance(key, rsa.RSAPrivateKey):
            raise JwkError(
                f"protocol {self.version} TEE keys are RSA only (RSA1_5), got an "
                f"{describe_key(key)}"
            )
        return public_jwk(key, alg=jwe.ALG_RSA1_5)


class Protocol010(Protocol01x):
    """Protocol 0.1.0 (kbs-client ≤ v0.9): string extra-params, evidence as a JSON string
    (both flags of its row in the generations table)."""


class Protocol011(Protocol01x):
    """Protocol 0.1.1 (kbs-client v0.10/v0.11, the seed client): evidence as a sorted object."""


class Protocol020(FlatProtocol):
    """Protocol 0.2.0 (kbs-client v0.12/v0.13): P-256 key by default, RFC JWE on P-256 only."""

    def tee_public_jwk(self, key: PrivateKey) -> dict[str, Any]:
        if isinstance(key, ec.EllipticCurvePrivateKey):
            crv = ec_curve_name(key.curve)
            if crv != "P-256":
                raise JwkError(f"protocol {self.version} TEE EC keys must be P-256, not {crv}")
            return public_jwk(key, alg=TEE_EC_ALG)
        if isinstance(key, rsa.RSAPrivateKey):
            return public_jwk(key, alg=TEE_RSA_ALG)
        raise JwkError(f"a TEE key must be EC P-256 or RSA, got an {describe_key(key)}")


def _sorted_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted_json(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_json(v) for v in value]
    return value


def _no_init_data(version: str) -> str:
    return (
        f"KBS protocol {version} has no init-data; INIT_DATA needs protocol "
        f"{PROTOCOL_0_4_0.version}"
    )


def _collect(
    tee: str,
    produce: Callable[[bytes, bytes | None], Any],
    report_data: bytes,
    init_data_digest: bytes | None,
) -> Any:
    try:
        return produce(report_data, init_data_digest)
    except Exception as exc:  # an attester may fail in any way; report which one did
        raise EvidenceError(f"{tee}: {exc}") from exc


PROTOCOL_0_1_0 = Protocol010(V0_1_0)
PROTOCOL_0_1_1 = Protocol011(V0_1_1)
PROTOCOL_0_2_0 = Protocol020(V0_2_0)
PROTOCOL_0_4_0 = Protocol040(V0_4_0)
GENERATIONS: dict[str, Generation] = {
    g.version: g for g in (PROTOCOL_0_1_0, PROTOCOL_0_1_1, PROTOCOL_0_2_0, PROTOCOL_0_4_0)
}


def legacy_admin_token(key: ed25519.Ed25519PrivateKey, now: int | None = None) -> str:
    """An admin JWT as kbs-client ≤ v0.17 signs one per request with `--auth-private-key`.

    Header `{"alg":"EdDSA","typ":"JWT"}`, claims `{"iat","exp","nbf"}` with a two-hour life;
    no `role`, `iss` or `aud` (legacy admin checks require none).
    """
    issued = int(time.time()) if now is None else now
    claims = {"iat": issued, "exp": issued + LEGACY_ADMIN_TOKEN_LIFETIME_S, "nbf": issued}
    return sign_compact({"alg": "EdDSA", "typ": "JWT"}, compact_json(claims).encode(), key)


def compact_json(value: Any) -> str:
    """JSON the way serde_json writes it: no whitespace, non-ASCII left as UTF-8."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def sample_reference_value_message(name: str, value: Any) -> dict[str, str]:
    """The RVPS registration message for the `sample` extractor."""
    payload = compact_json({name: value}).encode()
    # Keys sorted: kbs-client builds this with serde_json's default (sorted) map.
    return {"payload": b64std_encode(payload), "type": "sample", "version": "0.1.0"}


def tls_verify(cert_file: str | os.PathLike[str] | None) -> ssl.SSLContext | bool:
    """System trust plus the extra KBS root from `cert_file` (kbs-client adds, not replaces)."""
    if cert_file is None:
        return True
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cafile=os.fspath(cert_file))
    except (OSError, ssl.SSLError) as exc:
        raise KbsClientError(
            f"cannot load KBS root certificate {os.fspath(cert_file)}: {exc}"
        ) from exc
    return context
