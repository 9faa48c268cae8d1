"""Upstream's init_data.rs scenarios against a real server process, with our own fixture.

The guest sends an init-data TOML with its attestation; the AS exposes its digest and its claims
(`cdh.toml` converted from TOML, `policy.rego` replaced by the `policy_data` JSON) in the token,
where resource policies and the default CPU policy's `ear.trustee.identifiers` extension read
them.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.configs import integration_config
from tests.e2e.harness import RunningKbs, run_kbs
from tests.e2e.pki import Pki, make_pki
from trustee.client.attesters import detect_attesters
from trustee.client.kbs import PROTOCOL_0_4_0, Challenge, InitData, KbsClient, KbsClientError
from trustee.crypto.jwk import generate_tee_key, tee_public_jwk

SECRET_PATH = "default/init-data/secret"
SECRET = b"released-only-to-the-right-init-data"
ERROR_PREFIX = "https://github.com/confidential-containers/kbs/errors/"

ROOT_CERT = (
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBszCCAVmgAwIBAgIUTrusteePyInitDataTestCertificate0wCgYIKoZIzj0E\n"
    "-----END CERTIFICATE-----\n"
)
NGINX_ENTRYPOINT = "/opt/bitnami/scripts/nginx/entrypoint.sh"

POLICY_DATA = {
    "containers": [
        {
            "OCI": {
                "Version": "1.1.0",
                "Annotations": {"io.kubernetes.cri.container-type": "sandbox"},
                "Process": {"Args": ["/pause"], "User": {"UID": 65535, "GID": 65535}},
            }
        },
        {
            "OCI": {
                "Version": "1.1.0",
                "Annotations": {
                    "io.kubernetes.cri.container-type": "container",
                    "io.kubernetes.cri.image-name": "bitnami/nginx:latest",
                },
                "Process": {
                    "Args": [NGINX_ENTRYPOINT, "/opt/bitnami/scripts/nginx/run.sh"],
                    "User": {"UID": 1001, "GID": 0},
                },
            }
        },
    ],
    "request_defaults": {"ExecProcessRequest": {"allowed_commands": []}},
}

AGENT_POLICY = (
    "package agent_policy\n\n"
    "import rego.v1\n\n"
    "default CreateContainerRequest := false\n"
    "default ReadStreamRequest := false\n\n"
    "CreateContainerRequest if {\n"
    "    some container in policy_data.containers\n"
    "    input.OCI.Process.Args == container.OCI.Process.Args\n"
    "}\n\n"
    # The claim extraction parses from this `{` to the end of the text as one JSON object.
    f"policy_data := {json.dumps(POLICY_DATA, indent=2)}\n"
)

# Literal multi-line strings ('''…''') keep the inner texts byte-for-byte, so `\n` inside
# cdh.toml is a TOML escape of the *inner* document.
INIT_DATA = f"""version = "0.1.0"
algorithm = "sha256"

[data]
"aa.toml" = '''
[token_configs]
[token_configs.kbs]
url = "http://127.0.0.1:8080"
'''

"cdh.toml" = '''
socket = "unix:///run/confidential-containers/cdh.sock"

[kbc]
name = "cc_kbc"
url = "http://127.0.0.1:8080"

[image]
extra_root_certificates = [{json.dumps(ROOT_CERT)}]
'''

"policy.rego" = '''
{AGENT_POLICY}'''
"""

INIT_DATA_DIGEST = base64.b64encode(hashlib.sha256(INIT_DATA.encode()).digest()).decode()

EVIDENCE = 'input.submods.cpu0["ear.veraison.annotated-evidence"]'


def resource_policy(condition: str) -> str:
    return f"""package policy
import rego.v1
default allow := false
allow if {{
    {condition}
}}
"""


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def _config(tmp_path: Path, pki: Pki) -> str:
    return integration_config(tmp_path / "store", pki.admin_public)


async def _set_policy(kbs: RunningKbs, pki: Pki, policy: str) -> None:
    async with KbsClient(kbs.url, admin_token=pki.admin_token(role="tester")) as admin:
        await admin.set_resource_policy(policy)


async def _fetch(kbs: RunningKbs, init_data: str | None = INIT_DATA) -> bytes:
    async with KbsClient(
        kbs.url, attesters=detect_attesters({}), init_data=init_data, retry_delay=0
    ) as guest:
        return await guest.get_resource(SECRET_PATH)


def test_fixture_is_what_the_cases_assume() -> None:
    """Guard the fixture itself, so a failure below points at the server, not the TOML."""
    import tomllib

    doc = tomllib.loads(INIT_DATA)
    assert (doc["version"], doc["algorithm"]) == ("0.1.0", "sha256")
    assert set(doc["data"]) == {"aa.toml", "cdh.toml", "policy.rego"}
    cdh = tomllib.loads(doc["data"]["cdh.toml"])
    assert cdh["image"]["extra_root_certificates"] == [ROOT_CERT]
    rego = doc["data"]["policy.rego"]
    assert json.loads(rego[rego.index("policy_data := {") + len("policy_data := ") :]) == (
        POLICY_DATA
    )


async def test_resource_policies_read_init_data(tmp_path: Path, pki: Pki) -> None:
    async with run_kbs(_config(tmp_path, pki), tmp_path) as kbs:
        async with KbsClient(kbs.url, admin_token=pki.admin_token(role="tester")) as admin:
            await admin.set_resource(SECRET_PATH, SECRET)

        # (a) the digest: std-base64 of SHA-256 over the raw TOML text.
        await _set_policy(
            kbs, pki, resource_policy(f'{EVIDENCE}.init_data == "{INIT_DATA_DIGEST}"')
        )
        assert await _fetch(kbs) == SECRET
        # … a different init-data text (one byte more) has another digest: denied.
        with pytest.raises(KbsClientError, match=r"request unauthorized.*PolicyDeny"):
            await _fetch(kbs, INIT_DATA + "\n")
        # … and so is a guest without init-data (no `init_data` claim at all).
        with pytest.raises(KbsClientError, match=r"request unauthorized.*PolicyDeny"):
            await _fetch(kbs, None)
        # A policy that expects another digest denies the right init-data.
        wrong = base64.b64encode(hashlib.sha256(b"something else").digest()).decode()
        await _set_policy(kbs, pki, resource_policy(f'{EVIDENCE}.init_data == "{wrong}"'))
        with pytest.raises(KbsClientError, match=r"request unauthorized.*PolicyDeny"):
            await _fetch(kbs)

        # (b) cdh.toml arrives as JSON converted from TOML.
        certificate = f'{EVIDENCE}.init_data_claims["cdh.toml"].image.extra_root_certificates[0]'
        await _set_policy(kbs, pki, resource_policy(f"{certificate} == {json.dumps(ROOT_CERT)}"))
        assert await _fetch(kbs) == SECRET
        await _set_policy(kbs, pki, resource_policy(f'{certificate} == "another certificate"'))
        with pytest.raises(KbsClientError, match=r"request unauthorized.*PolicyDeny"):
            await _fetch(kbs)

        # (c) policy.rego arrives as the JSON following `policy_data := `.
        args = f"{EVIDENCE}.init_data_claims.agent_policy_claims.containers[1].OCI.Process.Args[0]"
        await _set_policy(kbs, pki, resource_policy(f'{args} == "{NGINX_ENTRYPOINT}"'))
        assert await _fetch(kbs) == SECRET
        await _set_policy(kbs, pki, resource_policy(f'{args} == "/bin/sh"'))
        with pytest.raises(KbsClientError, match=r"request unauthorized.*PolicyDeny"):
            await _fetch(kbs)
        assert kbs.alive


async def test_token_carries_init_data_claims_and_identifiers(tmp_path: Path, pki: Pki) -> None:
    async with run_kbs(_config(tmp_path, pki), tmp_path) as kbs:
        async with KbsClient(
            kbs.url, attesters=detect_attesters({}), init_data=INIT_DATA, retry_delay=0
        ) as guest:
            token = await guest.attest()
        cpu0 = jwt_claims(token)["submods"]["cpu0"]

        # (d) the default CPU policy's extension, collected from agent_policy_claims.
        assert cpu0["ear.trustee.identifiers"]["validated"] == {
            "container_images": ["bitnami/nginx:latest"],
            "container_uids": [65535, 1001],
        }
        evidence = cpu0["ear.veraison.annotated-evidence"]
        assert evidence["init_data"] == INIT_DATA_DIGEST
        claims = evidence["init_data_claims"]
        assert set(claims) == {"aa.toml", "cdh.toml", "agent_policy_claims"}
        assert "policy.rego" not in claims
        assert claims["agent_policy_claims"] == POLICY_DATA
        assert claims["cdh.toml"]["image"]["extra_root_certificates"] == [ROOT_CERT]
        assert claims["cdh.toml"]["kbc"] == {"name": "cc_kbc", "url": "http://127.0.0.1:8080"}
        assert claims["aa.toml"] == {"token_configs": {"kbs": {"url": "http://127.0.0.1:8080"}}}

        # Without init-data: no init_data claims and an empty `validated`.
        async with KbsClient(kbs.url, attesters=detect_attesters({}), retry_delay=0) as guest:
            bare = jwt_claims(await guest.attest())["submods"]["cpu0"]
        assert "init_data" not in bare["ear.veraison.annotated-evidence"]
        assert "init_data_claims" not in bare["ear.veraison.annotated-evidence"]
        assert bare["ear.trustee.identifiers"]["validated"] == {}


async def test_init_data_other_than_a_toml_document_is_refused(tmp_path: Path, pki: Pki) -> None:
    attesters = detect_attesters({})
    tee_pubkey = tee_public_jwk(generate_tee_key())
    async with run_kbs(_config(tmp_path, pki), tmp_path) as kbs, kbs.client() as http:
        auth = await http.post("/kbs/v0/auth", json=PROTOCOL_0_4_0.auth_request("sample"))
        assert auth.status_code == 200, auth.text
        challenge = Challenge.parse(auth.content)

        def attestation(fmt: str, body: str = INIT_DATA) -> dict[str, Any]:
            init = InitData(body, format=fmt)
            return PROTOCOL_0_4_0.attestation(challenge, tee_pubkey, attesters, init)

        refused = [attestation(fmt) for fmt in ("json", "TOML", "")]
        # toml that is not an init-data document is refused the same way.
        refused.append(attestation("toml", "version = [not toml"))
        refused.append(attestation("toml", 'version = "0.1.0"\nalgorithm = "md5"\n'))
        for body in refused:
            response = await http.post("/kbs/v0/attest", json=body)
            assert response.status_code == 401, response.text
            info = response.json()
            assert info["type"] == ERROR_PREFIX + "AttestationError", info
            assert info["detail"] == "Attestation error: RCAR handshake Attest failed", info
        log = kbs.log_text()
        assert "init-data format 'json' is not supported" in log
        assert "init-data is not TOML" in log
        assert "init-data `algorithm` 'md5'" in log

        # The same session then attests with a valid toml init-data: each refusal above was
        # about the init-data alone.
        response = await http.post("/kbs/v0/attest", json=attestation("toml"))
        assert response.status_code == 200, response.text
        claims = jwt_claims(response.json()["token"])
        annotated = claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]
        assert annotated["init_data"] == INIT_DATA_DIGEST

        # And the server keeps serving other guests.
        async with KbsClient(kbs.url, admin_token=pki.admin_token(role="tester")) as admin:
            await admin.set_resource(SECRET_PATH, SECRET)
            await admin.set_resource_policy(
                resource_policy(f'{EVIDENCE}.init_data == "{INIT_DATA_DIGEST}"')
            )
        assert await _fetch(kbs) == SECRET
        assert (await http.get("/healthz")).status_code == 200
        assert kbs.alive
