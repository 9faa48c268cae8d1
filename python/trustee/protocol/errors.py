"""Upstream's ErrorInformation model: every KBS-level error is JSON with `type` and `detail`.

Status is 404 for PluginNotFound / InvalidRequestPath and 401 for every other upstream variant
(clients treat 401 as "re-attest and retry" and 404 as "fail now", so the codes are part of the
protocol). Our own InputLimitExceeded answers 400: retrying the same oversized or too-deeply
nested input can never succeed, and a client that re-attested on it would loop.
Our `reason` is an extra field (a path a human can act on); clients ignore unknown fields.
It names the check that failed; where the whole cause is not for the client (a store's host, a
policy's text), the server's log gets it as `logged`.
"""

from __future__ import annotations

import json
from typing import Any

ERROR_TYPE_PREFIX = "https://github.com/confidential-containers/kbs/errors/"

_NOT_FOUND_VARIANTS = frozenset({"PluginNotFound", "InvalidRequestPath"})
INPUT_LIMIT_VARIANT = "InputLimitExceeded"


class KbsError(Exception):
    """An error answered to the client as ErrorInformation."""

    def __init__(
        self, variant: str, detail: str, reason: str | None = None, *, logged: str | None = None
    ) -> None:
        super().__init__(detail)
        self.variant = variant
        self.detail = detail
        self.reason = reason
        self.logged = logged

    @property
    def for_log(self) -> str:
        """What the server logs: the whole cause, which the client may not be told."""
        return self.logged or self.reason or self.detail

    @property
    def status(self) -> int:
        if self.variant in _NOT_FOUND_VARIANTS:
            return 404
        return 400 if self.variant == INPUT_LIMIT_VARIANT else 401

    def body(self) -> bytes:
        info: dict[str, Any] = {"type": ERROR_TYPE_PREFIX + self.variant, "detail": self.detail}
        if self.reason:
            info["reason"] = self.reason
        return json.dumps(info, separators=(",", ":")).encode()


def auth_failed(msg: str, reason: str | None = None, *, logged: str | None = None) -> KbsError:
    return KbsError(
        "AttestationError",
        f"Attestation error: RCAR handshake Auth failed: {msg}",
        reason or msg,
        logged=logged,
    )


def attest_failed(reason: str, *, logged: str | None = None) -> KbsError:
    # Upstream only logs the cause; the detail string stays fixed because clients match it.
    return KbsError(
        "AttestationError", "Attestation error: RCAR handshake Attest failed", reason, logged=logged
    )


def set_policy_failed(reason: str) -> KbsError:
    return KbsError("AttestationError", "Attestation error: Set Attestation Policy failed", reason)


def input_limit_exceeded(reason: str) -> KbsError:
    return KbsError(INPUT_LIMIT_VARIANT, f"Request exceeds an input limit: {reason}", reason)


def token_not_found(why: str | None = None) -> KbsError:
    reason = "no attested session cookie and no Bearer token"
    return KbsError(
        "TokenNotFound", "Attestation Token not found", f"{why}; {reason}" if why else reason
    )


def token_verifier_error(reason: str) -> KbsError:
    return KbsError("TokenVerifierError", "Token Verifier error", reason)


def policy_deny(reason: str) -> KbsError:
    return KbsError("PolicyDeny", "Access denied by policy", reason)


def policy_engine_error(msg: str) -> KbsError:
    return KbsError("PolicyEngineError", f"Policy engine error: {msg}", msg)


def parse_policy_error(msg: str) -> KbsError:
    return KbsError("ParsePolicyError", f"Failed to parse policy: {msg}", msg)


def plugin_not_found(name: str) -> KbsError:
    return KbsError("PluginNotFound", f"Plugin {name} not found")


def plugin_internal_error(reason: str) -> KbsError:
    return KbsError("PluginInternalError", "Plugin internal error", reason)


def jwe_error(reason: str) -> KbsError:
    return KbsError("JweError", "JWE failed", reason)


def rvps_error(msg: str) -> KbsError:
    return KbsError("RvpsError", f"RVPS configuration failed: {msg}", msg)


def serde_error(reason: str) -> KbsError:
    return KbsError("SerdeError", "Serialize/Deserialize failed", reason)


def admin_denied(endpoint: str, reason: str) -> KbsError:
    return KbsError(
        "AdminAuthAccess",
        f"admin access denied for endpoint {endpoint}: Admin access denied: {reason}",
        reason,
    )


def admin_denied_plugin(reason: str) -> KbsError:
    # QUIRK kept from upstream: plugin admin paths report under this misleading variant.
    return KbsError(
        "AdminAuthInitialization",
        f"failed to initialize [admin] configuration: Admin access denied: {reason}",
        reason,
    )


def admin_auth_legacy(reason: str) -> KbsError:
    # ≤v0.20 servers answered every admin refusal with this variant.
    return KbsError("AdminAuth", f"Admin auth error: {reason}", reason)
