"""Admin authorisation for upstream's v0.21 `[admin] authorization_mode`.

Decisions are plain functions of (headers, uri, peer): the HTTP layer asks, this module answers
allow or AdminDenied(reason) with upstream's reason strings (clients and tests match them).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from trustee.config.model import AdminConfig, IdentityProvider
from trustee.crypto.jwk import JwkError, PublicKey, load_public_key_pem, public_key_from_jwk
from trustee.crypto.jws import JwsError, check_time_claims, split_compact, verify_signature
from trustee.protocol.headers import HeaderLookup, bearer_token

log = logging.getLogger(__name__)

Fetch = Callable[[str], Awaitable[bytes]]


class AdminDenied(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AdminConfigError(Exception):
    pass


@dataclass
class _Provider:
    config: IdentityProvider
    pem_key: PublicKey | None = None
    jwks: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class AdminIdentity:
    role: str | None
    issuer: str | None = None
    subject: str | None = None

    def describe(self) -> str:
        who = self.subject or "anonymous"
        return f"{who} (role {self.role})" if self.role else who


async def _read_uri(uri: str, fetch: Fetch | None) -> bytes:
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        if fetch is None:
            raise AdminConfigError(f"{uri}: fetching over HTTP is not available")
        return await fetch(uri)
    path = parsed.path if parsed.scheme == "file" else uri
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise AdminConfigError(f"{uri}: {exc.strerror}") from exc


class AdminAuthorizer:
    def __init__(self, config: AdminConfig) -> None:
        self.config = config
        self._providers: list[_Provider] = []
        self._acls = [(rule.role, re.compile(rule.allowed_endpoints)) for rule in config.acls]
        self._legacy_keys: list[tuple[str, PublicKey]] = []

    async def load(self, fetch: Fetch | None = None) -> None:
        """Load every identity provider's keys; errors name the provider's URI."""
        if self.config.legacy_public_key is not None:
            self._legacy_keys = [("admin", self._ed25519(self.config.legacy_public_key))]
        for persona in self.config.personas:
            self._legacy_keys.append((persona.id, self._ed25519(persona.public_key_path)))
        if self.config.startup_warning:
            log.warning("%s", self.config.startup_warning)
        for idp in self.config.identity_providers:
            provider = _Provider(idp)
            if idp.public_key_uri:
                try:
                    provider.pem_key = load_public_key_pem(
                        await _read_uri(idp.public_key_uri, fetch)
                    )
                except (JwkError, ValueError) as exc:
                    raise AdminConfigError(
                        f"{idp.public_key_uri}: not a public key: {exc}"
                    ) from exc
            if idp.jwk_set_uri:
                provider.jwks = await self._load_jwks(idp.jwk_set_uri, fetch)
            self._providers.append(provider)
        if self.config.mode == "InsecureAllowAll" and not self.config.startup_warning:
            log.warning(
                "Admin authorization_mode InsecureAllowAll: admin endpoints are open%s",
                " to loopback clients" if self.config.loopback_only else " to anyone",
            )

    @staticmethod
    def _ed25519(path: str) -> PublicKey:
        try:
            key = load_public_key_pem(Path(path).read_bytes())
        except OSError as exc:
            raise AdminConfigError(f"{path}: {exc.strerror}") from exc
        except (JwkError, ValueError) as exc:
            raise AdminConfigError(f"{path}: not a public key: {exc}") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise AdminConfigError(f"{path}: admin keys of this form must be Ed25519")
        return key

    async def _load_jwks(self, uri: str, fetch: Fetch | None) -> list[dict[str, Any]]:
        raw = await _read_uri(uri, fetch)
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise AdminConfigError(f"{uri}: not JSON: {exc}") from exc
        if isinstance(doc, dict) and "jwks_uri" in doc:
            return await self._load_jwks(str(doc["jwks_uri"]), fetch)
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            if uri.startswith(("http://", "https://")) and not uri.endswith("openid-configuration"):
                return await self._load_jwks(
                    uri.rstrip("/") + "/.well-known/openid-configuration", fetch
                )
            raise AdminConfigError(f"{uri}: not a JWK set")
        return [k for k in doc["keys"] if isinstance(k, dict)]

    def authorize(
        self, headers: HeaderLookup, uri: str, peer_is_loopback: bool, now: float | None = None
    ) -> AdminIdentity:
        mode = self.config.mode
        if mode == "DenyAll":
            raise AdminDenied("Admin access denied as DenyAll authorization_mode is enabled")
        if mode == "InsecureAllowAll":
            if self.config.loopback_only and not peer_is_loopback:
                raise AdminDenied(
                    "the development admin API only answers loopback clients; "
                    "configure [admin] for remote administration"
                )
            log.debug("Admin access granted as AllowAll authorization_mode is enabled")
            return AdminIdentity(role=None)
        token = _bearer(headers)
        if mode in ("LegacyPublicKey", "Simple"):
            return self._authorize_legacy(token, uri, time.time() if now is None else now)
        claims = self._verify(token, time.time() if now is None else now)
        role = claims.get("role")
        if not isinstance(role, str):
            raise AdminDenied(
                "Failed to parse claims from token: Missing required `role` claim in JWT"
            )
        for acl_role, pattern in self._acls:
            if acl_role == role and pattern.fullmatch(uri):
                sub = claims.get("sub")
                return AdminIdentity(
                    role=role,
                    issuer=claims.get("iss") if isinstance(claims.get("iss"), str) else None,
                    subject=sub if isinstance(sub, str) else None,
                )
        raise AdminDenied(f"Role {role} not allowed for path {uri}")

    def _authorize_legacy(self, token: str, uri: str, now: float) -> AdminIdentity:
        """≤v0.20: an EdDSA token from kbs-client `--auth-private-key`, no role claim.

        Time claims get jwt-simple's 15-minute tolerance (what ≤v0.17 servers applied), which
        also accepts every token the stricter v0.18–v0.20 servers did.
        """
        try:
            parsed = split_compact(token)
            claims = parsed.claims()
        except JwsError as exc:
            raise AdminDenied(f"Admin Token verification failed: {exc}") from exc
        if parsed.header.get("alg") != "EdDSA":
            raise AdminDenied("Admin Token verification failed: alg must be EdDSA")
        persona = None
        for name, key in self._legacy_keys:
            try:
                verify_signature("EdDSA", key, parsed.signing_input, parsed.signature)
            except JwsError:
                continue
            persona = name
            break
        if persona is None:
            raise AdminDenied("Admin Token verification failed: signature does not verify")
        _check_tolerant_times(claims, now)
        allowed = any(role == persona and p.fullmatch(uri) for role, p in self._acls)
        if self.config.mode == "Simple" and self._acls and not allowed:
            raise AdminDenied(f"Role {persona} not allowed for path {uri}")
        return AdminIdentity(role=persona if self.config.mode == "Simple" else None)

    def _verify(self, token: str, now: float) -> dict[str, Any]:
        try:
            parsed = split_compact(token)
            claims = parsed.claims()
        except JwsError as exc:
            raise AdminDenied(f"Failed to parse admin token: {exc}") from exc
        header_alg = parsed.header.get("alg")
        failures = []
        for provider in self._providers:
            idp = provider.config
            try:
                for key, alg in self._candidate_keys(provider, parsed.header):
                    try:
                        verify_signature(alg, key, parsed.signing_input, parsed.signature)
                        break
                    except JwsError:
                        continue
                else:
                    raise JwsError(f"signature ({header_alg}) does not verify")
                _check_jwt_times(claims, now)
                if idp.issuer is not None and claims.get("iss") != idp.issuer:
                    raise JwsError(f"iss {claims.get('iss')!r} is not {idp.issuer!r}")
                if idp.audience is not None:
                    aud = claims.get("aud")
                    auds = aud if isinstance(aud, list) else [aud]
                    if idp.audience not in auds:
                        raise JwsError(f"aud {aud!r} does not contain {idp.audience!r}")
                return claims
            except (JwsError, JwkError) as exc:
                failures.append(f"{idp.issuer or idp.public_key_uri or idp.jwk_set_uri}: {exc}")
        log.info("admin token rejected: %s", "; ".join(failures))
        raise AdminDenied("Cannot verify token with any of the issuers")

    def _candidate_keys(
        self, provider: _Provider, header: Mapping[str, Any]
    ) -> list[tuple[PublicKey, str]]:
        out: list[tuple[PublicKey, str]] = []
        alg = header.get("alg")
        if provider.pem_key is not None and isinstance(alg, str):
            out.append((provider.pem_key, alg))
        kid = header.get("kid")
        for jwk in provider.jwks:
            if kid is not None and jwk.get("kid") != kid:
                continue
            jwk_alg = jwk.get("alg", alg)
            if isinstance(jwk_alg, str):
                out.append((public_key_from_jwk(jwk), jwk_alg))
        return out


# What upstream's jsonwebtoken validation allows for clock skew, on every time claim alike.
JWT_LEEWAY_S = 60


def _check_jwt_times(claims: Mapping[str, Any], now: float) -> None:
    # A token minted for later (or by a clock far ahead) must not work early: that would let a
    # leaked future-dated token act before its owner expects it to exist.
    check_time_claims(
        claims, now, leeway=JWT_LEEWAY_S, require_exp=True, check_nbf=True, check_iat=True
    )


TOLERANCE_S = 15 * 60


def _check_tolerant_times(claims: Mapping[str, Any], now: float) -> None:
    def number(name: str) -> float | None:
        value = claims.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise AdminDenied(f"Admin Token verification failed: {name} is not a number")
        return float(value)

    iat, nbf, exp = number("iat"), number("nbf"), number("exp")
    if iat is not None and iat > now + TOLERANCE_S:
        raise AdminDenied("Admin Token verification failed: issued in the future")
    if nbf is not None and nbf > now + TOLERANCE_S:
        raise AdminDenied("Admin Token verification failed: not valid yet")
    if exp is not None and exp < now - TOLERANCE_S:
        raise AdminDenied("Admin Token verification failed: token has expired")


def _bearer(headers: HeaderLookup) -> str:
    token = bearer_token(headers)
    if token is None:
        raise AdminDenied("Failed to parse HTTP Auth Bearer header")
    return token
