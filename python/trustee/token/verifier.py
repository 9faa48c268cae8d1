"""Attestation-token verification on the KBS side, as upstream's KBS verifies EAR and CoCo tokens.

How a verification key is chosen:

1. The token header carries ``jwk``: with ``insecure_header_jwk`` it is used as is; otherwise the
   JWK must carry an ``x5c`` chain whose leaf key equals the JWK and which chains to a certificate
   from ``trusted_certs_paths``.
   With a remote Attestation Service's published keys (``signer_keys``), a header JWK that is
   one of them is trusted as well (trustee.token.signer_keys).
2. Else the header ``kid`` is looked up in the union of ``trusted_jwk_sets`` (files, or https
   URLs serving a JWKS or an OpenID provider configuration).

The algorithm is the key's ``alg`` (the header ``alg`` when the key has none) and the header must
agree with it. ``exp`` is required, with 60 s leeway; ``nbf`` and ``aud`` are not checked.

I/O: trusted certificates and JWK set files are read once at construction; https JWK sets are
fetched through the injected ``fetch`` coroutine (returns the body, raises on failure), on first
use and again when a token names an unknown ``kid``, at most once per :data:`REFRESH_INTERVAL`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import trio

from trustee.crypto.jwk import JwkError, PublicKey, public_key_from_jwk, same_public_key
from trustee.crypto.jws import JwsError, check_time_claims, split_compact, verify_signature
from trustee.token.signer_keys import PublishedSignerKeys

if TYPE_CHECKING:
    from cryptography import x509

log = logging.getLogger(__name__)

Fetch = Callable[[str], Awaitable[bytes]]

LEEWAY_SECONDS = 60
REFRESH_INTERVAL = 60.0
OPENID_CONFIGURATION = "/.well-known/openid-configuration"

DEFAULT_TEE_PUBKEY_PATHS = (
    "/tdx/attester_runtime_data/tee-pubkey",
    "/tdx/attester_user_data/tee-pubkey",
    "/customized_claims/runtime_data/tee-pubkey",
    "/submods/cpu0/ear.veraison.annotated-evidence/runtime_data_claims/tee-pubkey",
    "/submods/cpu/ear.veraison.annotated-evidence/runtime_data_claims/tee-pubkey",
    "/tee-pubkey",
)


class TokenVerifierConfigError(ValueError):
    """``[attestation_token]`` cannot work as configured (reported at start-up)."""


class TokenVerifyError(Exception):
    """The token is not acceptable; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class TokenVerifierConfig:
    trusted_jwk_sets: list[str] = field(default_factory=list)
    trusted_certs_paths: list[str] = field(default_factory=list)
    insecure_header_jwk: bool = False
    extra_teekey_paths: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- JSON pointers


def _pointer_tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise TokenVerifierConfigError(f"JSON pointer {pointer!r} must be empty or start with '/'")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


_MISSING = object()


def _resolve(doc: Any, pointer: str) -> Any:
    node = doc
    for token in _pointer_tokens(pointer):
        if isinstance(node, Mapping) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return _MISSING
    return node


def extract_tee_pubkey(
    claims: Mapping[str, Any], extra_paths: Sequence[str] = ()
) -> dict[str, Any] | None:
    """The TEE public key JWK from verified claims: the first listed JSON pointer that exists."""
    for pointer in (*extra_paths, *DEFAULT_TEE_PUBKEY_PATHS):
        value = _resolve(claims, pointer)
        if value is _MISSING:
            continue
        if not isinstance(value, Mapping):
            raise TokenVerifyError(
                f"token claim {pointer} is a {type(value).__name__}, not a TEE public key JWK"
            )
        return dict(value)
    return None


# --------------------------------------------------------------------------- JWK sets


@dataclass(frozen=True)
class _Jwk:
    kid: str
    source: str
    alg: str | None
    key: PublicKey | None
    problem: str | None = None


class _SourceError(Exception):
    pass


def _json(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _SourceError(f"{what} is not JSON: {exc}") from exc


def _parse_jwk_set(doc: Any, source: str) -> list[_Jwk]:
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list):
        raise _SourceError(f"{source} is not a JWK set (no 'keys' array)")
    out = []
    for i, jwk in enumerate(keys):
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
            log.warning("JWK #%d in %s has no string 'kid'; it can never be selected", i, source)
            continue
        alg = jwk.get("alg") if isinstance(jwk.get("alg"), str) else None
        try:
            key = public_key_from_jwk(jwk, exact_coordinates=False)
        except JwkError as exc:
            log.warning("JWK %r in %s is unusable: %s", jwk["kid"], source, exc)
            out.append(_Jwk(jwk["kid"], source, alg, None, str(exc)))
            continue
        out.append(_Jwk(jwk["kid"], source, alg, key))
    return out


def _local_path(location: str) -> str | None:
    """The file path of a file:// or bare-path location; None for https; error otherwise."""
    if location.startswith("https://"):
        return None
    if location.startswith("file://"):
        parts = urlsplit(location)
        if parts.netloc not in ("", "localhost"):
            raise TokenVerifierConfigError(f"file URL {location!r} names a host; use file:///path")
        return unquote(parts.path)
    if "://" in location:
        raise TokenVerifierConfigError(
            f"trusted JWK set {location!r}: only https://, file:// or a local path are supported"
        )
    return location


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise TokenVerifierConfigError(f"cannot read {what} {path!r}: {exc}") from exc


# --------------------------------------------------------------------------- verifier


class AttestationTokenVerifier:
    """Verifies attestation tokens (EAR JWTs or third-party JWTs) and returns their claims."""

    def __init__(
        self,
        config: TokenVerifierConfig,
        fetch: Fetch | None = None,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        signer_keys: PublishedSignerKeys | None = None,
    ) -> None:
        self.signer_keys = signer_keys
        if not (
            config.trusted_jwk_sets
            or config.trusted_certs_paths
            or config.insecure_header_jwk
            or signer_keys is not None
        ):
            raise TokenVerifierConfigError(
                "Cannot verify token since no trusted verification materials are provided: set "
                "[attestation_token] trusted_jwk_sets or trusted_certs_paths, or "
                "insecure_header_jwk = true (accepts any key in the token header; testing only)"
            )
        for pointer in config.extra_teekey_paths:
            _pointer_tokens(pointer)
        self._config = config
        self._fetch = fetch
        self._clock = clock
        self._monotonic = monotonic
        self._anchors = [
            cert for path in config.trusted_certs_paths for cert in self._load_certs(path)
        ]
        self._local_keys: list[_Jwk] = []
        self._remote_urls: list[str] = []
        for location in config.trusted_jwk_sets:
            path = _local_path(location)
            if path is None:
                self._remote_urls.append(location)
                continue
            try:
                doc = _json(_read(path, "JWK set file"), f"JWK set file {path!r}")
                self._local_keys += _parse_jwk_set(doc, path)
            except _SourceError as exc:
                raise TokenVerifierConfigError(str(exc)) from exc
        if self._remote_urls and fetch is None:
            raise TokenVerifierConfigError(
                f"trusted JWK set {self._remote_urls[0]!r} needs an HTTP fetcher; construct the "
                "verifier with fetch=…"
            )
        self._remote_keys: dict[str, list[_Jwk]] = {}
        self._remote_errors: dict[str, str] = {}
        self._last_refresh: float | None = None
        self._refresh_lock = trio.Lock()
        if config.insecure_header_jwk:
            log.warning(
                "insecure_header_jwk is enabled: tokens are verified with whatever key their own "
                "header carries, so anyone can mint an accepted token. Use only for testing."
            )

    @staticmethod
    def _load_certs(path: str) -> list[x509.Certificate]:
        # X.509 parsing loads on first use: most servers trust JWK sets or the header key.
        from trustee.crypto.x509chain import ChainError, load_pem_certificates

        try:
            return load_pem_certificates(_read(path, "trusted certificate file"))
        except ChainError as exc:
            raise TokenVerifierConfigError(f"trusted certificate file {path!r}: {exc}") from exc

    # ----------------------------------------------------------------- remote JWK sets

    async def _get_json(self, url: str, what: str) -> Any:
        assert self._fetch is not None
        try:
            body = await self._fetch(url)
        except Exception as exc:
            raise _SourceError(f"fetching {what} {url} failed: {exc}") from exc
        return _json(body, f"{what} {url}")

    async def _load_remote(self, url: str) -> list[_Jwk]:
        try:
            doc = await self._get_json(url, "JWK set")
            if isinstance(doc, dict) and "keys" in doc:
                return _parse_jwk_set(doc, url)
            if isinstance(doc, dict) and "jwks_uri" in doc:
                return await self._load_jwks_uri(doc, url)
            first = f"{url} serves neither a JWK set nor an OpenID configuration"
        except _SourceError as exc:
            first = str(exc)
        if url.rstrip("/").endswith(OPENID_CONFIGURATION):
            raise _SourceError(first)
        discovery = url.rstrip("/") + OPENID_CONFIGURATION
        try:
            return await self._load_jwks_uri(
                await self._get_json(discovery, "OpenID configuration"), discovery
            )
        except _SourceError as exc:
            raise _SourceError(f"{first}; OpenID discovery: {exc}") from exc

    async def _load_jwks_uri(self, doc: Any, origin: str) -> list[_Jwk]:
        uri = doc.get("jwks_uri") if isinstance(doc, dict) else None
        if not isinstance(uri, str) or not uri.startswith("https://"):
            raise _SourceError(f"{origin} has no https 'jwks_uri' (got {uri!r})")
        return _parse_jwk_set(await self._get_json(uri, "JWK set"), uri)

    async def _refresh(self) -> None:
        async with self._refresh_lock:
            now = self._monotonic()
            if self._last_refresh is not None and now - self._last_refresh < REFRESH_INTERVAL:
                return
            self._last_refresh = now
            for url in self._remote_urls:
                try:
                    self._remote_keys[url] = await self._load_remote(url)
                    self._remote_errors.pop(url, None)
                except _SourceError as exc:
                    self._remote_errors[url] = str(exc)
                    log.warning("cannot load trusted JWK set %s: %s", url, exc)

    async def load_remote_jwk_sets(self) -> None:
        """Fetch the https JWK sets now (at start-up); raise if any of them cannot be loaded."""
        self._last_refresh = None
        await self._refresh()
        if self._remote_errors:
            raise TokenVerifierConfigError("; ".join(self._remote_errors.values()))

    def _find_kid(self, kid: str) -> _Jwk | None:
        remote = (k for url in self._remote_urls for k in self._remote_keys.get(url, ()))
        for candidate in (*self._local_keys, *remote):
            if candidate.kid == kid:
                return candidate
        return None

    async def _key_for_kid(self, kid: str) -> _Jwk:
        found = self._find_kid(kid)
        if found is None and self._remote_urls:
            await self._refresh()
            found = self._find_kid(kid)
        if found is None:
            problems = "; ".join(self._remote_errors.values())
            raise TokenVerifyError(
                f"kid {kid!r} not found in trusted JWK sets"
                + (f" (some sets could not be loaded: {problems})" if problems else "")
            )
        if found.key is None:
            raise TokenVerifyError(f"kid {kid!r} in {found.source} is unusable: {found.problem}")
        return found

    # ----------------------------------------------------------------- header jwk

    def _header_jwk(self, jwk: Any, now: float) -> tuple[PublicKey, str | None]:
        from trustee.crypto.x509chain import ChainError, certificates_from_x5c, verify_chain

        if not isinstance(jwk, dict):
            raise TokenVerifyError("token header 'jwk' must be a JSON object")
        try:
            key = public_key_from_jwk(jwk, exact_coordinates=False)
        except JwkError as exc:
            raise TokenVerifyError(f"token header jwk is invalid: {exc}") from exc
        alg = jwk.get("alg") if isinstance(jwk.get("alg"), str) else None
        if self._config.insecure_header_jwk:
            return key, alg
        if not self._anchors:
            raise TokenVerifyError(
                "token header jwk is not trusted: insecure_header_jwk is false and no "
                "trusted_certs_paths are configured to validate its x5c chain"
            )
        if not jwk.get("x5c"):
            raise TokenVerifyError(
                "token header jwk has no x5c certificate chain, so it cannot be trusted "
                "(configure trusted_jwk_sets with a kid, or sign with a certified key)"
            )
        try:
            certs = certificates_from_x5c(jwk["x5c"])
        except ChainError as exc:
            raise TokenVerifyError(f"token header jwk x5c is invalid: {exc}") from exc
        if not same_public_key(certs[0].public_key(), key):
            raise TokenVerifyError("x5c leaf key does not match header jwk")
        try:
            verify_chain(certs[0], certs[1:], self._anchors, datetime.fromtimestamp(now, UTC))
        except ChainError as exc:
            raise TokenVerifyError(f"x5c chain is not trusted: {exc}") from exc
        return key, alg

    async def _header_key(self, jwk: Any, now: float) -> tuple[PublicKey, str | None]:
        if self.signer_keys is None or not isinstance(jwk, dict):
            return self._header_jwk(jwk, now)
        try:
            key = public_key_from_jwk(jwk, exact_coordinates=False)
        except JwkError as exc:
            raise TokenVerifyError(f"token header jwk is invalid: {exc}") from exc
        if await self.signer_keys.trusts(key):
            alg = jwk.get("alg")
            return key, alg if isinstance(alg, str) else None
        try:
            return self._header_jwk(jwk, now)
        except TokenVerifyError as exc:
            published = self.signer_keys
            why = f"; {published.problem}" if published.problem else ""
            raise TokenVerifyError(
                f"token header jwk is not a key the Attestation Service publishes at "
                f"{published.source}{why}; and {exc.reason}"
            ) from exc

    # ----------------------------------------------------------------- public API

    async def verify(self, token: str) -> dict[str, Any]:
        """Verify ``token`` and return its claims, or raise :class:`TokenVerifyError`."""
        try:
            parsed = split_compact(token)
        except JwsError as exc:
            raise TokenVerifyError(f"malformed token: {exc}") from exc
        header = parsed.header
        now = self._clock()
        if "jwk" in header:
            key, key_alg = await self._header_key(header["jwk"], now)
        elif isinstance(header.get("kid"), str):
            found = await self._key_for_kid(header["kid"])
            assert found.key is not None
            key, key_alg = found.key, found.alg
        else:
            raise TokenVerifyError(
                "token header has neither 'jwk' nor a string 'kid'; no key to verify it with"
            )
        header_alg = header.get("alg")
        alg = key_alg or header_alg
        if not isinstance(alg, str):
            raise TokenVerifyError("token header has no 'alg' and the key names none")
        if header_alg != alg:
            raise TokenVerifyError(f"token alg {header_alg!r} does not match the key's alg {alg!r}")
        try:
            verify_signature(alg, key, parsed.signing_input, parsed.signature)
        except JwsError as exc:
            raise TokenVerifyError(f"token signature check failed: {exc}") from exc
        try:
            claims = parsed.claims()
        except JwsError as exc:
            raise TokenVerifyError(f"token claims are unusable: {exc}") from exc
        try:
            check_time_claims(claims, now, LEEWAY_SECONDS, require_exp=True)
        except JwsError as exc:
            raise TokenVerifyError(str(exc)) from exc
        return claims

    def extract_tee_pubkey(self, claims: Mapping[str, Any]) -> dict[str, Any] | None:
        """The TEE public key from verified claims (configured pointers first)."""
        return extract_tee_pubkey(claims, self._config.extra_teekey_paths)
