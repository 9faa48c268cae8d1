"""Simulated guests for e2e tests: their test PKIs (`trustee simulate init`) and what a test
asks of them (the secret in every protocol generation, a policy deny, the token's claims)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import trio

from tests.e2e.harness import RunningKbs, run_module
from trustee.crypto.b64 import b64url_encode
from trustee.crypto.jws import split_compact


async def simulate(tee: str, directory: Path) -> None:
    code, out, err = await run_module(
        "trustee.cli", "simulate", "init", "--tee", tee, "--dir", str(directory)
    )
    assert code == 0, err
    assert "insecure_test_roots" in out


def simulated_pkis(base: Path) -> tuple[Path, Path]:
    """A TDX and an SNP test PKI under `base` (made side by side): their directories."""

    async def make() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(simulate, "tdx", base / "tdx")
            nursery.start_soon(simulate, "snp", base / "snp")

    trio.run(make)
    return base / "tdx", base / "snp"


async def store_secret_and_policy(kbs: RunningKbs, path: str, secret: bytes, policy: str) -> None:
    """Through the development config's open admin API: `secret` at `path`, and `policy` as
    the resource policy."""
    async with kbs.client() as http:
        r = await http.post(f"/kbs/v0/resource/{path}", content=secret)
        assert r.status_code == 200, r.text
        body = {"policy": b64url_encode(policy.encode())}
        r = await http.post("/kbs/v0/resource-policy", json=body)
        assert r.status_code == 200, r.text


# The protocol generations a simulated guest is run with: kbs-client v0.11's, 0.2.0, today's.
PROTOCOLS = ("0.1.1", "0.2.0", "0.4.0")


async def get_secret(
    kbs: RunningKbs, path: str, env: dict[str, str], protocol: str = "0.4.0"
) -> tuple[int, str, str]:
    """`trustee-client get-resource` as the guest `env` describes."""
    return await run_module(
        "trustee.client.cli", "--protocol", protocol, "--url", kbs.url,
        "get-resource", "--path", path, env=env,
    )  # fmt: skip


async def secret_in_every_generation(
    kbs: RunningKbs, path: str, secret: bytes, env: dict[str, str]
) -> None:
    for protocol in PROTOCOLS:
        code, out, err = await get_secret(kbs, path, env, protocol)
        assert code == 0, f"{protocol}: {err}\n{kbs.log_text()[-3000:]}"
        assert base64.b64decode(out) == secret, protocol


async def denied_by_policy(kbs: RunningKbs, path: str, env: dict[str, str]) -> None:
    """The guest attests (genuine, simulated hardware) but the policy refuses it."""
    code, _, err = await get_secret(kbs, path, env)
    assert code != 0
    assert "PolicyDeny" in err or "policy" in err.lower(), err


async def annotated_evidence(kbs: RunningKbs, env: dict[str, str], tee: str) -> Any:
    """The claims of `tee` in the token the guest gets from `trustee-client attest`."""
    code, token, err = await run_module("trustee.client.cli", "--url", kbs.url, "attest", env=env)
    assert code == 0, err
    claims = split_compact(token.strip()).claims()
    return claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"][tee]


def trusting(tdx: Path, snp: Path) -> str:
    """The verifier_config that trusts a TDX and an SNP test PKI made by `trustee simulate`."""
    return f"""
[attestation_service.verifier_config]
insecure_test_roots = ["{tdx / "tdx-test-root.pem"}", "{snp / "snp-test-ark-ask.pem"}"]
collateral = "{tdx / "tdx-collateral.json"}"
"""
