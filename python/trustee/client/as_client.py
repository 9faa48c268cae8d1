"""A client of a standalone Attestation Service's REST API (upstream's `restful-as`).

`evidence_request` makes one verification request with our attesters (the sample TEE, or a
simulated TDX/SNP guest of `trustee simulate init`), bound to the given runtime data and
init-data; `AsClient` posts requests to `/attestation` and checks the token it gets against the
service's JWKS.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from trustee import __version__, jsonfast
from trustee.attestation import as_wire
from trustee.attestation.initdata import InitDataError, parse_init_data
from trustee.client.attesters import (
    SIMULATED_TEE_ENV,
    Attester,
    SampleAttester,
    SampleDeviceAttester,
    simulated_attester,
)
from trustee.client.errors import AsAnswerError, HttpError, KbsClientError
from trustee.client.generations import tls_verify
from trustee.crypto.jwk import JwkError, public_key_from_jwk
from trustee.crypto.jws import JwsError, split_compact, verify_signature
from trustee.protocol import binding, limits
from trustee.protocol.limits import InputLimitError
from trustee.protocol.rcar import EvidenceRequest

AS_TEES = ("sample", "sampledevice", "tdx", "snp", "sgx")
JWKS_PATH = "/.well-known/jwks.json"
REQUEST_TIMEOUT_S = 60.0
USER_AGENT = f"trustee-client/{__version__}"
# What the token's signature may use: the AS signs with ES256.
TOKEN_ALGS = frozenset({"ES256", "ES384", "RS256", "RS384", "PS256", "PS384"})


def attester_for(tee: str, env: Mapping[str, str] | None = None) -> Attester:
    """The attester for `tee`: the sample ones, or a simulated guest of the PKI that
    TRUSTEE_SIMULATED_PKI names."""
    if tee == "sample":
        return SampleAttester()
    if tee == "sampledevice":
        return SampleDeviceAttester()
    if tee in ("tdx", "snp", "sgx"):
        environ = dict(os.environ if env is None else env)
        environ[SIMULATED_TEE_ENV] = tee
        return simulated_attester(environ)
    raise KbsClientError(f"--tee {tee}: no attester; use one of {', '.join(AS_TEES)}")


@dataclass(frozen=True)
class Binding:
    """What the evidence binds: runtime data (structured JSON, or raw bytes used as the report
    data as they are) and init-data (TOML, sent as text or only as its digest)."""

    runtime_data: Any = None
    raw_runtime_data: bytes | None = None
    hash_algorithm: str = "sha384"
    init_data_toml: str | None = None
    send_init_data_digest: bool = False


def evidence_request(attester: Attester, bound: Binding) -> EvidenceRequest:
    """A verification request carrying fresh evidence from `attester`."""
    if bound.raw_runtime_data is not None:
        report_data = bound.raw_runtime_data
    else:
        report_data = binding.runtime_data_digest(bound.runtime_data, bound.hash_algorithm)
    init_digest = None
    if bound.init_data_toml is not None:
        try:
            init_digest = parse_init_data(bound.init_data_toml).digest
        except (InitDataError, InputLimitError) as exc:
            raise KbsClientError(f"init-data: {exc}") from exc
    evidence = attester.evidence(report_data, init_digest)
    return EvidenceRequest(
        tee=attester.tee,
        evidence=evidence,
        runtime_data=bound.runtime_data if bound.raw_runtime_data is None else None,
        hash_algorithm=bound.hash_algorithm,
        init_data_toml=None if bound.send_init_data_digest else bound.init_data_toml,
        raw_runtime_data=bound.raw_runtime_data,
        init_data_digest=init_digest if bound.send_init_data_digest else None,
    )


def attestation_body(requests: Sequence[EvidenceRequest], policy_ids: Sequence[str]) -> bytes:
    return jsonfast.dumps(as_wire.to_json(requests, policy_ids))


class AsClient:
    def __init__(self, url: str, *, cacert: str | None = None) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(
            verify=tls_verify(cacert),
            timeout=REQUEST_TIMEOUT_S,
            headers={"User-Agent": USER_AGENT},
        )

    async def __aenter__(self) -> AsClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> bytes:
        url = self.url + path
        try:
            answer = await self._http.request(method, url, **kwargs)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise HttpError(f"{method} {url}: {exc}", method=method, url=url) from exc
        if answer.status_code != 200:
            text = answer.content.decode("utf-8", "replace")
            raise AsAnswerError(
                f"{method} {url}: HTTP {answer.status_code}: {text}",
                status=answer.status_code,
                info=None,
                body=text,
                method=method,
                url=url,
            )
        return answer.content

    async def attest(self, requests: Sequence[EvidenceRequest], policy_ids: Sequence[str]) -> str:
        """The EAR token the service issues for `requests`."""
        body = attestation_body(requests, policy_ids)
        headers = {"Content-Type": "application/json"}
        answer = await self._call("POST", "/attestation", content=body, headers=headers)
        return answer.decode("utf-8", "replace").strip()

    async def verified_claims(self, token: str) -> dict[str, Any]:
        """The token's claims, once its signature verifies with a key of the service's JWKS."""
        doc = _jwks(await self._call("GET", JWKS_PATH), self.url + JWKS_PATH)
        try:
            parsed = split_compact(token)
        except JwsError as exc:
            raise KbsClientError(f"the Attestation Service's answer is not a token: {exc}") from exc
        alg = parsed.header.get("alg")
        if alg not in TOKEN_ALGS:
            raise KbsClientError(f"the token's alg {alg!r} is not one an AS signs with")
        failures = []
        for jwk in doc:
            try:
                key = public_key_from_jwk(jwk)
                verify_signature(alg, key, parsed.signing_input, parsed.signature)
            except (JwkError, JwsError) as exc:
                failures.append(str(exc))
                continue
            return parsed.claims()
        why = "; ".join(failures) or "the set is empty"
        raise KbsClientError(f"the token verifies with no key of {self.url}{JWKS_PATH}: {why}")


def _jwks(body: bytes, where: str) -> list[Any]:
    try:
        doc = limits.loads(body, "the JWK set")
    except (ValueError, InputLimitError) as exc:
        raise KbsClientError(f"{where} is not JSON: {exc}") from exc
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list):
        raise KbsClientError(f"{where} is not a JWK set (no `keys` array)")
    return keys
