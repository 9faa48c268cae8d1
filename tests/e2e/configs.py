"""Config texts for e2e servers, shaped like upstream's own test configs."""

from __future__ import annotations

from pathlib import Path


def admin_section(public_key: Path, *, role: str, acl: str, mode: str, audience: bool) -> str:
    if mode != "AuthenticatedAuthorization":
        return f'[admin]\nauthorization_mode = "{mode}"\n'
    aud = 'audience = "kbs"\n' if audience else ""
    return (
        '[admin]\nauthorization_mode = "AuthenticatedAuthorization"\n'
        "[[admin.authentication.bearer_jwt.identity_providers]]\n"
        f'issuer = "issuer"\n{aud}public_key_uri = "file://{public_key}"\n'
        "[[admin.authorization.regex_acl.acls]]\n"
        f'role = "{role}"\nallowed_endpoints = "{acl}"\n'
    )


def integration_config(
    storage: Path,
    admin_public: Path,
    *,
    mode: str = "AuthenticatedAuthorization",
    acl: str = "^/kbs/v0/.*$",
) -> str:
    """Upstream integration-tests: plain HTTP, built-in AS, ephemeral signer, LocalFs."""
    return f"""
[http_server]
sockets = ["127.0.0.1:{{port}}"]
insecure_http = true

{admin_section(admin_public, role="tester", acl=acl, mode=mode, audience=False)}

[attestation_token]
insecure_header_jwk = true

[attestation_service]
type = "coco_as_builtin"

[storage_backend]
storage_type = "LocalFs"
[storage_backend.backends.local_fs]
dir_path = "{storage}"

[[plugins]]
name = "resource"
"""
