"""The blog's journey (../shared/seed) for every client generation from ONE HTTPS server
running the blog's kbs-config.toml unchanged except for paths and the listening socket."""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

import pytest
import trio

from tests.e2e.harness import RunningKbs, run_kbs
from tests.e2e.seed import BlogDeployment, make_blog_deployment

PROTOCOLS = ("0.1.1", "0.2.0", "0.4.0")


async def client(*args: str, check: bool = True) -> tuple[int, str, str]:
    result = await trio.run_process(
        [sys.executable, "-m", "trustee.client.cli", *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "ENABLE_SAMPLE_DEVICE"},
    )
    out, err = result.stdout.decode(), result.stderr.decode()
    assert "Traceback" not in err
    if check and result.returncode != 0:
        raise AssertionError(f"trustee-client {' '.join(args)} failed: {err}")
    return result.returncode, out, err


def tls(kbs: RunningKbs, blog: BlogDeployment) -> list[str]:
    return ["--url", kbs.url, "--cert-file", str(blog.https_crt)]


@pytest.fixture
def blog(tmp_path: Path) -> BlogDeployment:
    return make_blog_deployment(tmp_path / "blog")


async def test_blog_flow_for_every_generation_from_one_server(
    tmp_path: Path, blog: BlogDeployment
) -> None:
    async with run_kbs(blog.config_text, tmp_path, https=True, ca=blog.https_crt) as kbs:
        for protocol in PROTOCOLS:
            _, out, _ = await client(
                "--protocol", protocol, *tls(kbs, blog), "get-resource",
                "--path", "default/kbsres1/key1",
            )  # fmt: skip
            assert out == "cmVzMXZhbDE=\n", protocol
        _, out, _ = await client(*tls(kbs, blog), "get-resource", "--path", "default/kbsres1/key2")
        assert base64.b64decode(out) == b"res1val2"
        # insecure_api = true: admin writes pass whoever signs them (kbs-client v0.11 always signs).
        other = make_blog_deployment(tmp_path / "other")
        secret = tmp_path / "key3"
        secret.write_bytes(b"res1val3")
        await client(
            "--protocol", "0.1.1", *tls(kbs, blog), "config",
            "--auth-private-key", str(other.private_key),
            "set-resource", "--path", "default/kbsres1/key3", "--resource-file", str(secret),
        )  # fmt: skip
        assert (blog.repository / "default" / "kbsres1" / "key3").read_bytes() == b"res1val3"
        log = kbs.log_text()
        assert "insecure admin APIs are enabled" in log
        assert "attestation_token_type" in log  # the dead keys are named once as ignored
        for protocol in PROTOCOLS:
            assert f"protocol {protocol}" in log


async def test_legacy_tokens_and_jwe_per_generation(tmp_path: Path, blog: BlogDeployment) -> None:
    """Token shape follows the server config (submod `cpu`); JWE form follows the client."""
    async with run_kbs(blog.config_text, tmp_path, https=True, ca=blog.https_crt) as kbs:
        for protocol in PROTOCOLS:
            _, token, _ = await client("--protocol", protocol, *tls(kbs, blog), "attest")
            payload = token.strip().split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            assert list(claims["submods"]) == ["cpu"], protocol
            cpu = claims["submods"]["cpu"]
            assert cpu["ear.status"] == "contraindicated"  # empty reference values
            assert cpu["ear.trustworthiness-vector"] == {
                "configuration": 36, "executables": 33, "hardware": 97,
            }  # fmt: skip
            rdc = cpu["ear.veraison.annotated-evidence"]["runtime_data_claims"]
            expected_members = {"nonce", "tee-pubkey"}
            if protocol == "0.4.0":
                expected_members.add("additional-evidence")
            assert set(rdc) == expected_members, protocol
            kty = rdc["tee-pubkey"]["kty"]
            assert kty == ("RSA" if protocol == "0.1.1" else "EC"), protocol


async def test_generation_mismatch_is_refused_and_server_keeps_serving(
    tmp_path: Path, blog: BlogDeployment
) -> None:
    async with run_kbs(blog.config_text, tmp_path, https=True, ca=blog.https_crt) as kbs:
        async with kbs.client() as http:
            r = await http.post(
                "/kbs/v0/auth", json={"version": "0.1.0", "tee": "sample", "extra-params": ""}
            )
            assert r.status_code == 401
            assert (
                "KBS Client Protocol Version Mismatch: expect =0.1.1, =0.2.0, =0.4.0 "
                "while the request is 0.1.0"
            ) in r.json()["detail"]

            # A 0.4.0 body on a 0.1.1 session ...
            r = await http.post(
                "/kbs/v0/auth", json={"version": "0.1.1", "tee": "sample", "extra-params": {}}
            )
            nonce = r.json()["nonce"]
            head_body = {
                "init-data": None,
                "runtime-data": {
                    "nonce": nonce,
                    "tee-pubkey": {"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW",
                                   "x": "AA", "y": "AA"},
                },
                "tee-evidence": {"primary_evidence": {"svn": "1"}, "additional_evidence": ""},
            }  # fmt: skip
            r = await http.post("/kbs/v0/attest", json=head_body)
            assert r.status_code == 401
            assert r.json()["detail"] == "Attestation error: RCAR handshake Attest failed"
            assert "generation mismatch" in kbs.log_text()

            # ... and a 0.1.1 body on a 0.4.0 session.
            await http.post(
                "/kbs/v0/auth", json={"version": "0.4.0", "tee": "sample", "extra-params": {}}
            )
            legacy_body = {
                "tee-pubkey": {"kty": "RSA", "alg": "RSA1_5", "n": "AQAB", "e": "AQAB"},
                "tee-evidence": {"report_data": "", "svn": "1"},
            }
            r = await http.post("/kbs/v0/attest", json=legacy_body)
            assert r.status_code == 401
            assert r.json()["detail"] == "Attestation error: RCAR handshake Attest failed"
        for protocol in PROTOCOLS:
            _, out, _ = await client(
                "--protocol", protocol, *tls(kbs, blog), "get-resource",
                "--path", "default/kbsres1/key1",
            )  # fmt: skip
            assert out == "cmVzMXZhbDE=\n"


async def test_legacy_resource_policy_file_is_reread(tmp_path: Path, blog: BlogDeployment) -> None:
    """`[policy_engine] policy_path` sees the legacy data document and edits without restart."""
    async with run_kbs(blog.config_text, tmp_path, https=True, ca=blog.https_crt) as kbs:
        blog.policy_file.write_text(
            "package policy\ndefault allow = false\n"
            'allow { data["resource-path"] == "resource/default/kbsres1/key2" }\n'
        )
        code, _, err = await client(
            *tls(kbs, blog), "get-resource", "--path", "default/kbsres1/key1", check=False
        )
        assert code != 0 and err.startswith("trustee-client: PolicyDeny: resource/default/"), err
        _, out, _ = await client(*tls(kbs, blog), "get-resource", "--path", "default/kbsres1/key2")
        assert out == "cmVzMXZhbDI=\n"
        # `allow if` without `import rego.v1` is a conditional rule here, never allow-everything.
        blog.policy_file.write_text("package policy\nallow if { false }\n")
        code, _, err = await client(
            *tls(kbs, blog), "get-resource", "--path", "default/kbsres1/key2", check=False
        )
        assert code != 0
        assert "PolicyEngineError" in kbs.log_text()  # undefined allow: an engine error at v0.11
        blog.policy_file.write_text(
            "package policy\ndefault allow = false\n"
            'allow { data["resource-path"] == "resource/default/kbsres1/key2" }\n'
        )
        async with kbs.client() as http:
            r = await http.get("/kbs/v0/resource-policy")
            assert r.status_code == 200 and r.headers["content-type"] == "text/xml"
            text = base64.urlsafe_b64decode(r.text + "=" * (-len(r.text) % 4)).decode()
            assert "kbsres1/key2" in text


async def test_legacy_admin_with_auth_public_key(tmp_path: Path, blog: BlogDeployment) -> None:
    config = blog.config_text.replace("insecure_api = true", "insecure_api = false")
    other = make_blog_deployment(tmp_path / "other")
    policy = tmp_path / "allow.rego"
    policy.write_text("package policy\ndefault allow = true\n")
    as_policy = tmp_path / "as.rego"
    as_policy.write_text("package policy\ndefault hardware = 2\ndefault executables = 3\n")
    secret = tmp_path / "secret"
    secret.write_bytes(b"new-secret")
    async with run_kbs(config, tmp_path, https=True, ca=blog.https_crt) as kbs:
        assert "insecure admin APIs are enabled" not in kbs.log_text()
        commands = [
            ["set-resource", "--path", "default/admin/new", "--resource-file", str(secret)],
            ["set-resource-policy", "--policy-file", str(policy)],
            ["set-attestation-policy", "--id", "default", "--policy-file", str(as_policy)],
        ]
        for command in commands:
            code, _, err = await client(
                "--protocol", "0.1.1", *tls(kbs, blog), "config",
                "--auth-private-key", str(other.private_key), *command, check=False,
            )  # fmt: skip
            assert code != 0 and "AdminAuth" in err, (command, err)
        assert not (blog.repository / "default" / "admin" / "new").exists()
        for command in commands:
            await client(
                "--protocol", "0.1.1", *tls(kbs, blog), "config",
                "--auth-private-key", str(blog.private_key), *command,
            )  # fmt: skip
        assert (blog.repository / "default" / "admin" / "new").read_bytes() == b"new-secret"
        assert (blog.root / "as" / "policies" / "opa" / "default.rego").read_text() == (
            as_policy.read_text()
        )
        _, token, _ = await client("--protocol", "0.1.1", *tls(kbs, blog), "attest")
        payload = token.strip().split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        assert claims["submods"]["cpu"]["ear.status"] == "affirming"
        async with kbs.client() as http:
            r = await http.post("/kbs/v0/resource/default/admin/new", content=b"x")
            assert r.status_code == 401
            assert r.json()["type"].endswith("/AdminAuth")
            assert r.json()["detail"].startswith("Admin auth error: ")
