"""`trustee bench kbs --setup`: store the resource and an allow-all resource policy through the
admin API before the load, and the admin credentials that takes."""

from __future__ import annotations

import os
import ssl

from cryptography.hazmat.primitives.asymmetric import ed25519

from trustee.bench.http_conn import Connection, TransportError
from trustee.client.generations import compact_json, legacy_admin_token
from trustee.crypto.b64 import b64url_encode
from trustee.crypto.jwk import JwkError, describe_key, load_private_key_pem

ALLOW_ALL_RESOURCE_POLICY = (
    'package policy\nimport rego.v1\ndefault allow := false\nallow if data.plugin == "resource"\n'
)
SECRET_BYTES = 32


class SetupError(Exception):
    """The admin API refused or failed; one line."""


def random_secret() -> bytes:
    # Printable, so a mismatch is readable in a log.
    return b64url_encode(os.urandom(SECRET_BYTES)).encode()


def admin_key(path: str) -> ed25519.Ed25519PrivateKey:
    try:
        with open(path, "rb") as f:
            key = load_private_key_pem(f.read())
    except (OSError, JwkError) as exc:
        raise SetupError(f"--auth-private-key {path}: {exc}") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SetupError(
            f"--auth-private-key {path}: an Ed25519 key is needed, not an {describe_key(key)}"
        )
    return key


async def store(
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    resource: str,
    secret: bytes,
    token: str | None,
    key: ed25519.Ed25519PrivateKey | None,
) -> None:
    """POST the secret to resource/<resource> and the allow-all policy."""
    conn = Connection(port, host, ssl_context=ssl_context)
    policy = compact_json({"policy": b64url_encode(ALLOW_ALL_RESOURCE_POLICY.encode())}).encode()
    steps = (
        (f"/kbs/v0/resource/{resource}", secret, "application/octet-stream"),
        ("/kbs/v0/resource-policy", policy, "application/json"),
    )
    try:
        for target, body, content_type in steps:
            bearer = legacy_admin_token(key) if key is not None else token
            authorization = None if bearer is None else f"Bearer {bearer}"
            raw = conn.build("POST", target, body, content_type, authorization=authorization)
            try:
                answer = await conn.request(raw)
            except TransportError as exc:
                raise SetupError(f"--setup: POST {target}: {exc}") from None
            if answer.status != 200:
                text = answer.body[:200].decode(errors="replace").strip()
                raise SetupError(f"--setup: POST {target} refused: HTTP {answer.status} {text}")
    finally:
        await conn.aclose()
