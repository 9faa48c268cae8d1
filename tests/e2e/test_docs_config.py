"""The minimal production kbs-config.toml of docs/configuration.md serves: HTTPS, admin requests
only with a token its identity provider signed, tokens from its own signer, data in LocalFs."""

from __future__ import annotations

import base64
import os
import re
import tomllib
from pathlib import Path

from tests.e2e.harness import run_kbs, run_module
from tests.e2e.pki import Pki, make_pki
from tests.support.docs import production_files, production_toml, relocate


def materials(pki: Pki, tmp: Path) -> dict[str, Path]:
    """What each path of the example stands for in a test PKI."""
    session_key = tmp / "session.key"
    session_key.write_text(base64.b64encode(os.urandom(32)).decode())
    return {
        "/etc/kbs/session.key": session_key,
        "/etc/kbs/https.key": pki.https_key,
        "/etc/kbs/https.crt": pki.https_cert,
        "/etc/kbs/admin-public.pem": pki.admin_public,
        "/etc/kbs/token-ca.crt": pki.ca_cert,
        "/etc/kbs/token-signer.key": pki.signer_key,
        "/etc/kbs/token-signer.crt": pki.signer_chain,
        "/var/lib/kbs": tmp / "storage",
    }


async def test_production_config_example_serves_a_secret(tmp_path: Path) -> None:
    text = production_toml()
    pki = make_pki(tmp_path / "pki")
    stands_for = materials(pki, tmp_path)
    assert production_files(text) == sorted(stands_for), "the example names a file the test lacks"
    root = tmp_path / "root"
    for path, source in stands_for.items():
        target = Path(f"{root}{path}")
        target.parent.mkdir(parents=True, exist_ok=True)
        if path == "/var/lib/kbs":
            target.mkdir()
        else:
            target.symlink_to(source)
    served = re.sub(r"sockets = \[[^]]*\]", 'sockets = ["127.0.0.1:{port}"]', relocate(text, root))

    example = tomllib.loads(text)
    (idp,) = example["admin"]["authentication"]["bearer_jwt"]["identity_providers"]
    (acl,) = example["admin"]["authorization"]["regex_acl"]["acls"]
    token = pki.admin_token(role=acl["role"], issuer=idp["issuer"], audience=(idp["audience"],))
    token_file = pki.write_admin_token("admin.jwt", token)
    secret = tmp_path / "secret.txt"
    secret.write_text("production-secret")

    async with run_kbs(served, tmp_path / "kbs", https=True, ca=pki.ca_cert) as kbs:

        async def client(*args: str) -> tuple[int, str, str]:
            return await run_module(
                "trustee.client.cli", "--url", kbs.url, "--cert-file", str(pki.ca_cert), *args
            )

        store = ("set-resource", "--path", "default/prod/key", "--resource-file", str(secret))
        code, _, err = await client("config", *store)
        assert code != 0, err  # no token, no admin
        code, _, err = await client("config", "--admin-token-file", str(token_file), *store)
        assert code == 0, err
        allow = ("set-resource-policy", "--allow-all")
        code, _, err = await client("config", "--admin-token-file", str(token_file), *allow)
        assert code == 0, err
        code, out, err = await client("get-resource", "--path", "default/prod/key")
        assert code == 0, err
        assert base64.b64decode(out.strip()) == b"production-secret"
    assert "NOT FOR PRODUCTION" not in kbs.log_text()
