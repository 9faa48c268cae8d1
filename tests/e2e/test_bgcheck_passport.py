"""Upstream's kbs/test Makefile scenarios: background check over HTTPS, then passport mode.

The guest side is `trustee-client`, run as a separate process exactly as a user would run it.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.e2e.harness import run_kbs
from tests.e2e.pki import Pki, make_pki, rsa_tee_key_pem

RESOURCE = "one/two/three"
POLICY = """package policy
import rego.v1
default allow := false
allow if {
    data.plugin == "resource"
    data["resource-path"] == ["one", "two", "three"]
    input.submods.cpu0["ear.veraison.annotated-evidence"].sample
}
"""

ADMIN = """
[admin]
authorization_mode = "AuthenticatedAuthorization"
[[admin.authentication.bearer_jwt.identity_providers]]
issuer = "issuer"
audience = "kbs"
public_key_uri = "{admin_public}"
[[admin.authorization.regex_acl.acls]]
role = "admin"
allowed_endpoints = "^/kbs/.+$"
"""

STORAGE = """
[storage_backend]
storage_type = "LocalFs"
[storage_backend.backends.local_fs]
dir_path = "{storage}"

[[plugins]]
name = "resource"
"""


def bgcheck_config(pki: Pki, storage: Path) -> str:
    return (
        f"""
[http_server]
sockets = ["127.0.0.1:{{port}}"]
private_key = "{pki.https_key}"
certificate = "{pki.https_cert}"
"""
        + ADMIN.format(admin_public=pki.admin_public)
        + f"""
[attestation_token]
trusted_certs_paths = ["{pki.ca_cert}"]

[attestation_service]
type = "coco_as_builtin"
[attestation_service.attestation_token_broker.signer]
key_path = "{pki.signer_key}"
cert_path = "{pki.signer_chain}"
"""
        + STORAGE.format(storage=storage)
    )


def passport_config(pki: Pki, storage: Path) -> str:
    return (
        """
[http_server]
sockets = ["127.0.0.1:{port}"]
insecure_http = true
"""
        + ADMIN.format(admin_public=pki.admin_public)
        + f"""
[attestation_token]
trusted_certs_paths = ["{pki.ca_cert}"]
"""
        + STORAGE.format(storage=storage)
    )


def seed(storage: Path, secret: bytes) -> None:
    folder = storage / "repository"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "one\\x2Ftwo\\x2Fthree").write_bytes(secret)


async def client(*args: str) -> str:
    result = await trio.run_process(
        [sys.executable, "-m", "trustee.client.cli", *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "ENABLE_SAMPLE_DEVICE"},
    )
    if result.returncode != 0:
        raise AssertionError(
            f"trustee-client {' '.join(args)} failed ({result.returncode}): "
            f"{result.stderr.decode()}"
        )
    assert result.stderr.decode().count("Traceback") == 0
    return result.stdout.decode()


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


async def test_background_check_then_passport(tmp_path: Path, pki: Pki) -> None:
    secret = os.urandom(16)
    storage = tmp_path / "storage"
    seed(storage, secret)
    policy_file = tmp_path / "policy.rego"
    policy_file.write_text(POLICY)
    token_file = pki.write_admin_token("admin-token", pki.admin_token(role="admin"))
    tee_key = rsa_tee_key_pem(tmp_path / "tee.pem")

    async with run_kbs(bgcheck_config(pki, storage), tmp_path, https=True, ca=pki.ca_cert) as kbs:
        tls = ["--url", kbs.url, "--cert-file", str(pki.ca_cert)]
        out = await client(
            *tls, "config", "--admin-token-file", str(token_file),
            "set-resource-policy", "--policy-file", str(policy_file),
        )  # fmt: skip
        assert out.startswith("Set resource policy success")
        fetched = await client(*tls, "get-resource", "--path", RESOURCE)
        assert base64.b64decode(fetched.strip()) == secret

        # Passport: the token comes from the attesting KBS ...
        token = (await client(*tls, "attest", "--tee-key-file", str(tee_key))).strip()
        assert token.count(".") == 2

        # ... a different key for the same guest is refused by a server that trusts the CA.
        async with run_kbs(passport_config(pki, storage), tmp_path, name="passport") as rkbs:
            out = await client(
                "--url", rkbs.url, "config", "--admin-token-file", str(token_file),
                "set-resource-policy", "--policy-file", str(policy_file),
            )  # fmt: skip
            token_path = tmp_path / "attestation-token"
            token_path.write_text(token)
            fetched = await client(
                "--url", rkbs.url, "get-resource", "--attestation-token", str(token_path),
                "--tee-key-file", str(tee_key), "--path", RESOURCE,
            )  # fmt: skip
            assert base64.b64decode(fetched.strip()) == secret
            # The resource-only KBS has no attestation endpoints.
            async with rkbs.client() as http:
                r = await http.post("/kbs/v0/auth", content=b"{}")
                assert r.status_code == 404
                assert r.json()["type"].endswith("/PluginNotFound")


async def test_untrusted_signer_is_refused_by_passport_kbs(tmp_path: Path, pki: Pki) -> None:
    """A token whose x5c does not chain to trusted_certs_paths is rejected."""
    other = make_pki(tmp_path / "other-pki")
    storage = tmp_path / "storage"
    seed(storage, b"secret")
    tee_key = rsa_tee_key_pem(tmp_path / "tee.pem")
    policy_file = tmp_path / "policy.rego"
    policy_file.write_text(POLICY)
    token_file = pki.write_admin_token("admin-token", pki.admin_token(role="admin"))
    # The attesting KBS signs with the *other* PKI's signer.
    attesting = bgcheck_config(other, storage).replace(
        str(other.admin_public), str(pki.admin_public)
    )
    async with run_kbs(attesting, tmp_path, https=True, ca=other.ca_cert) as kbs:
        token = (
            await client(
                "--url",
                kbs.url,
                "--cert-file",
                str(other.ca_cert),
                "attest",
                "--tee-key-file",
                str(tee_key),
            )
        ).strip()
    async with run_kbs(passport_config(pki, storage), tmp_path, name="passport") as rkbs:
        await client(
            "--url", rkbs.url, "config", "--admin-token-file", str(token_file),
            "set-resource-policy", "--policy-file", str(policy_file),
        )  # fmt: skip
        async with rkbs.client() as http:
            r = await http.get(
                f"/kbs/v0/resource/{RESOURCE}", headers={"Authorization": f"Bearer {token}"}
            )
        assert r.status_code == 401
        assert r.json()["type"].endswith("/TokenVerifierError")
        assert "chain" in rkbs.log_text() or "trusted" in rkbs.log_text()


def test_cli_runs_without_traceback_on_unreachable_server() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trustee.client.cli", "--url", "http://127.0.0.1:9", "attest"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert b"Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
