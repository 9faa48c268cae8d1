"""`trustee-client`'s failures, run as a subprocess against a real KBS: exactly one line on
stderr, the program's name first, then the KBS's error type and its reason (in every protocol
generation), or why the KBS could not be asked; a non-zero exit status and never a traceback."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.e2e.configs import integration_config
from tests.e2e.harness import DEV_CONFIG, RunningKbs, free_port, run_kbs, run_module
from tests.e2e.pki import make_pki

PROTOCOLS = ("0.1.1", "0.2.0", "0.4.0")

# Denies the sample TEE (its appraisal is not affirming), so the reason names a policy line.
AFFIRMING_ONLY = """\
package policy

default allow := false

allow if {
\tinput.submods.cpu0["ear.status"] == "affirming"
}
"""

# Rego v0 rule body: v1 wants `if`, v0 stumbles on the incomplete comparison.
BAD_REGO = "package policy\n\ndefault allow = false\nallow {\n  input.x ==\n}\n"


async def client(url: str, *argv: str, protocol: str = "0.4.0") -> tuple[int, str, str]:
    return await run_module("trustee.client.cli", "--url", url, "--protocol", protocol, *argv)


async def error_of(url: str, *argv: str, protocol: str = "0.4.0") -> str:
    """The stderr of a command that must fail with one line and nothing on stdout."""
    code, out, err = await client(url, *argv, protocol=protocol)
    assert (code, out) == (1, ""), (code, out, err)
    assert err.count("\n") == 1, err
    return err.removesuffix("\n")


async def admin(kbs: RunningKbs, *argv: str) -> None:
    code, _, err = await client(kbs.url, "config", *argv)
    assert code == 0, err


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_get_resource_refusals_give_the_servers_reason(tmp_path: Path, protocol: str) -> None:
    policy = tmp_path / "affirming.rego"
    policy.write_text(AFFIRMING_ONLY)
    secret = tmp_path / "secret"
    secret.write_text("s")
    digest = hashlib.sha256(AFFIRMING_ONLY.encode()).hexdigest()[:12]
    async with run_kbs(DEV_CONFIG, tmp_path) as kbs:
        await admin(
            kbs, "set-resource", "--path", "default/demo/key", "--resource-file", str(secret)
        )
        await admin(kbs, "set-resource-policy", "--policy-file", str(policy))
        denied = await error_of(
            kbs.url, "get-resource", "--path", "default/demo/key", protocol=protocol
        )
        assert denied == (
            "trustee-client: PolicyDeny: resource/default/demo/key: data.policy.allow = false: "
            'allow (line 5) failed at line 6: input.submods.cpu0["ear.status"] == "affirming" '
            f"(policy {digest})"
        )

        await admin(kbs, "set-resource-policy", "--allow-all")
        missing = await error_of(
            kbs.url, "get-resource", "--path", "default/demo/nothing", protocol=protocol
        )
        assert (
            missing
            == "trustee-client: PluginInternalError: resource default/demo/nothing not found"
        )
        short = await error_of(kbs.url, "get-resource", "--path", "default/demo", protocol=protocol)
        assert short == (
            "trustee-client: PluginInternalError: resource path 'default/demo' must be "
            "<repository>/<type>/<tag> (3 segments)"
        )


async def test_attest_refusal_gives_the_failing_check(tmp_path: Path) -> None:
    async with run_kbs(DEV_CONFIG, tmp_path) as kbs:
        err = await error_of(kbs.url, "attest", 'algorithm = "sha384"\nx = [')
    assert err == (
        "trustee-client: AttestationError: evidence[0] (sample): init-data: init-data is not "
        "TOML: Invalid value (at end of document)"
    )


async def test_admin_errors_are_type_and_reason_naming_the_uploaded_file(tmp_path: Path) -> None:
    bad = tmp_path / "my-policy.rego"
    bad.write_text(BAD_REGO)
    diagnostics = (
        f"{bad}:4:7: `if` keyword is required before rule body; as Rego v0: {bad}:4:7: expecting }}"
    )
    async with run_kbs(DEV_CONFIG, tmp_path) as kbs:
        resource_policy = await error_of(
            kbs.url, "config", "set-resource-policy", "--policy-file", str(bad)
        )
        attestation_policy = await error_of(
            kbs.url, "config", "set-attestation-policy", "--policy-file", str(bad)
        )
        reference_value = await error_of(kbs.url, "config", "get-reference-value", "--id", "svn")
        resource = await error_of(
            kbs.url, "config", "set-resource", "--path", "a/b", "--resource-file", str(bad)
        )
    assert resource_policy == (
        f"trustee-client: PolicyEngineError: resource policy does not compile: {diagnostics}"
    )
    assert attestation_policy == (
        f"trustee-client: AttestationError: policy default_cpu does not compile: {diagnostics}"
    )
    assert reference_value == (
        "trustee-client: RvpsError: Failed to get reference_values: No reference value found "
        "for the given id: svn"
    )
    assert resource == (
        "trustee-client: PluginInternalError: resource path 'a/b' must be "
        "<repository>/<type>/<tag> (3 segments)"
    )


async def test_admin_refusal_gives_the_reason(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    config = integration_config(tmp_path / "store", pki.admin_public)
    async with run_kbs(config, tmp_path) as kbs:
        err = await error_of(kbs.url, "config", "set-resource-policy", "--allow-all")
    assert err == "trustee-client: AdminAuthAccess: Failed to parse HTTP Auth Bearer header"


async def test_url_with_the_api_prefix_is_explained(tmp_path: Path) -> None:
    async with run_kbs(DEV_CONFIG, tmp_path) as kbs:
        guest = await error_of(f"{kbs.url}/kbs/v0", "get-resource", "--path", "a/b/c")
        admin_call = await error_of(
            f"{kbs.url}/kbs/v0/", "config", "set-resource-policy", "--allow-all"
        )
    expected = (
        "trustee-client: PluginNotFound: Plugin kbs not found; --url must be the KBS root, "
        f"without /kbs/v0: try --url {kbs.url}"
    )
    assert guest == expected
    assert admin_call == expected


async def test_tee_key_file_is_named_as_spelled(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("a.b.c")
    async with run_kbs(DEV_CONFIG, tmp_path) as kbs:
        err = await error_of(
            kbs.url, "get-resource", "--path", "a/b/c", "--attestation-token", str(token)
        )
    assert err == (
        "trustee-client: --attestation-token needs --tee-key-file: the TEE key whose public "
        "part is the token's tee-pubkey"
    )


async def test_get_reference_value_prints_the_json_value(tmp_path: Path) -> None:
    async with run_kbs(DEV_CONFIG, tmp_path) as kbs:
        await admin(kbs, "set-sample-reference-value", "svn", "1")
        code, out, err = await client(kbs.url, "config", "get-reference-value", "--id", "svn")
    assert (code, out, err) == (0, '["1"]\n', "")


async def test_network_failures_are_one_line(tmp_path: Path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    refused = await error_of(nobody, "config", "delete-resource", "--path", "a/b/c")
    assert refused == (
        f"trustee-client: cannot connect to {nobody}: connection refused (is the KBS running "
        "there?)"
    )
    pki = make_pki(tmp_path / "pki")
    tls = DEV_CONFIG.replace(
        "insecure_http = true",
        f'private_key = "{pki.https_key}"\ncertificate = "{pki.https_cert}"',
    )
    async with run_kbs(tls, tmp_path, https=True, ca=pki.ca_cert) as kbs:
        untrusted = await error_of(kbs.url, "config", "delete-resource", "--path", "a/b/c")
        plain = kbs.url.replace("https://", "http://")
        cleartext = await error_of(plain, "config", "delete-resource", "--path", "a/b/c")
    assert untrusted == (
        f"trustee-client: the TLS certificate of {kbs.url} is not trusted: unable to get local "
        "issuer certificate (give the KBS's CA certificate with --cert-file)"
    )
    assert cleartext == (
        f"trustee-client: {plain} broke off the exchange: Server disconnected without sending a "
        "response; does it serve HTTPS? try https://"
    )
    async with run_kbs(DEV_CONFIG, tmp_path / "plain") as kbs:
        wrong_scheme = kbs.url.replace("http://", "https://")
        handshake = await error_of(wrong_scheme, "config", "delete-resource", "--path", "a/b/c")
    assert handshake == (
        f"trustee-client: TLS handshake with {wrong_scheme} failed: wrong version number; "
        "is it plain HTTP? try http://"
    )


async def test_closed_stdout_is_one_line(tmp_path: Path) -> None:
    async with run_kbs(DEV_CONFIG, tmp_path) as kbs:
        process = subprocess.Popen(
            [sys.executable, "-m", "trustee.client.cli", "--url", kbs.url, "attest"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()  # the reader is gone before the token is written
        err = await trio.to_thread.run_sync(process.stderr.read)
        code = await trio.to_thread.run_sync(process.wait)
    assert (code, err.decode()) == (
        1,
        "trustee-client: stdout was closed before the output was written\n",
    )


async def test_interrupt_is_one_line() -> None:
    # A listener that never answers keeps the client waiting until Ctrl-C.
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "trustee.client.cli", "--url", f"http://127.0.0.1:{port}", "attest"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # Children of a non-interactive shell may inherit an ignored SIGINT.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    with listener:
        await listener.accept()
        await trio.sleep(0.5)
        process.send_signal(signal.SIGINT)
        out, err = await trio.to_thread.run_sync(process.communicate)
    assert (process.returncode, out, err.decode()) == (130, b"", "trustee-client: interrupted\n")
