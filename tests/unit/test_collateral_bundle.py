"""Collateral bundles: `trustee collateral fetch` against loopback PCS/KDS servers serving a
simulated platform, `verify`, the loader the server uses, and serving from a bundle."""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.unit.bundle_support import kds_routes, pcs_routes, snp_chip
from tests.unit.collateral_support import serve
from trustee import _core
from trustee.attestation.hardware import HardwareInputError, HardwareVerifier
from trustee.audit.event import AuditEvent
from trustee.collateral.bundle import BundleError, read_bundle
from trustee.collateral.bundle_cli import collateral_main
from trustee.collateral.bundle_sources import BundleTdxSource, BundleVekSource, LoadedBundle
from trustee.collateral.errors import CollateralError
from trustee.collateral.snp import VcekRequest
from trustee.config import as_file
from trustee.config.errors import ConfigError
from trustee.config.reader import Table
from trustee.config.verifier import verifier_settings
from trustee.simulate import SgxTestPki, SnpTestPki, TdxTestPki
from trustee.simulate.sgx import sgx_evidence
from trustee.simulate.snp import snp_evidence_json
from trustee.simulate.tdx import tdx_evidence_json
from trustee.simulate.tdx_platform import TdxPlatform

ROOT = Path(__file__).resolve().parents[2]
NONCE = hashlib.sha512(b"bundle test").digest()


@pytest.fixture(scope="module")
def tdx() -> TdxTestPki:
    return TdxTestPki.shared()


@pytest.fixture(scope="module")
def snp() -> SnpTestPki:
    return SnpTestPki.shared("Genoa")


@pytest.fixture(scope="module")
def roots(tdx: TdxTestPki, snp: SnpTestPki, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test roots, one PEM file, as insecure_test_roots / --insecure-test-root take them."""
    path = tmp_path_factory.mktemp("roots") / "roots.pem"
    path.write_text(tdx.root_pem + snp.ask_ark_pem)
    return path


def fetch(
    tdx: TdxTestPki,
    snp: SnpTestPki,
    out: Path,
    *extra: str,
    issued: datetime.datetime | None = None,
) -> tuple[int, list[str]]:
    """`trustee collateral fetch` for the simulated TDX platform and SNP chip."""
    fmspc = tdx.platform.fmspc.hex().upper()
    with serve({**pcs_routes(tdx, issued), **kds_routes(snp)}) as server:
        code = collateral_main(
            [
                "fetch", "--pcs-url", server.url, "--kds-url", server.url,
                "--tdx-fmspc", f"{fmspc}:platform", "--kds-min-interval", "0",
                "--out", str(out), *extra,
            ]
        )  # fmt: skip
    return code, server.queries


def bundle_at(
    tdx: TdxTestPki, snp: SnpTestPki, path: Path, issued: datetime.datetime | None = None
) -> Path:
    code, _ = fetch(tdx, snp, path, "--snp-chip", snp_chip(snp), "--snp-asvk", issued=issued)
    assert code == 0
    return path


@pytest.fixture(scope="module")
def bundle(tdx: TdxTestPki, snp: SnpTestPki, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bundle_at(tdx, snp, tmp_path_factory.mktemp("bundle") / "bundle.tar")


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {
            info.name: tar.extractfile(info).read()  # type: ignore[union-attr]
            for info in tar
        }


def rewrite(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def verify(
    path: Path, roots: Path | None, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    argv = ["verify", str(path)] + (["--insecure-test-root", str(roots)] if roots else [])
    code = collateral_main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --------------------------------------------------------------------------- fetch + verify


def test_fetch_writes_every_member_with_its_manifest_entry(
    tdx: TdxTestPki, snp: SnpTestPki, bundle: Path
) -> None:
    files = members(bundle)
    manifest = json.loads(files.pop("manifest.json"))
    assert manifest["format"] == "trustee-collateral-bundle" and manifest["version"] == 1
    fmspc = tdx.platform.fmspc.hex().upper()
    hw_id = snp.chip_id.hex()
    by_path = {entry["path"]: entry for entry in manifest["members"]}
    _, bl, tee, snp_spl, ucode = snp.tcb
    vcek_path = (
        f"snp/Genoa/vcek/{hw_id}/bl{bl:02d}_tee{tee:02d}_snp{snp_spl:02d}_ucode{ucode:02d}_vcek.der"
    )
    assert set(by_path) == set(files) == {
        f"tdx/{fmspc}-platform.json", vcek_path,
        "snp/Genoa/ask.der", "snp/Genoa/ark.der", "snp/Genoa/asvk.der",
    }  # fmt: skip
    for path, entry in by_path.items():
        assert entry["sha256"] == hashlib.sha256(files[path]).hexdigest()
        assert entry["size"] == len(files[path])
    tdx_entry = by_path[f"tdx/{fmspc}-platform.json"]
    assert tdx_entry["kind"] == "tdx-collateral"
    assert tdx_entry["key"] == {"fmspc": fmspc, "ca": "platform"}
    collateral = json.loads(files[f"tdx/{fmspc}-platform.json"])
    # The window ends at the earliest nextUpdate: TCB info, QE identity and CRLs share one.
    assert tdx_entry["valid_until"] == json.loads(collateral["tcb_info"])["nextUpdate"]
    assert files[vcek_path] == snp.vcek_der
    assert by_path[vcek_path]["key"] == {
        "product": "Genoa", "hw_id": hw_id, "bl": bl, "tee": tee, "snp": snp_spl,
        "microcode": ucode,
    }  # fmt: skip
    not_after = snp.vcek_cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert by_path[vcek_path]["valid_until"] == not_after
    assert files["snp/Genoa/ark.der"] == snp.ark_der


def test_verify_passes_under_the_test_roots_and_names_each_member(
    bundle: Path, roots: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = verify(bundle, roots, capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == 5 and all(line.startswith("ok ") for line in lines), out
    assert any("tdx-collateral fmspc=" in line and " valid " in line for line in lines)


def test_verify_without_the_test_roots_refuses_the_untrusted_roots(
    bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = verify(bundle, None, capsys)
    assert code == 1
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    # TDX collateral and the ARK fail on their roots; what the ARK signs still checks out.
    assert len(failed) == 2, out
    assert all("is not a trusted root" in line for line in failed)
    assert "2 member(s) failed their signature check" in err


def test_fetch_from_evidence_without_a_vcek(
    tdx: TdxTestPki, snp: SnpTestPki, tmp_path: Path
) -> None:
    evidence = tmp_path / "evidence.json"
    evidence.write_bytes(snp_evidence_json(snp.report(NONCE)))
    code, queries = fetch(tdx, snp, tmp_path / "b.tar", "--snp-evidence", str(evidence))
    assert code == 0
    assert any(q.startswith(f"/vcek/v1/Genoa/{snp.chip_id.hex()}?") for q in queries)
    kinds = sorted(m.kind for m in read_bundle(tmp_path / "b.tar").members)
    assert kinds == ["snp-ark", "snp-ask", "snp-vcek", "tdx-collateral"]


def test_fetch_failure_is_one_line(
    tdx: TdxTestPki, snp: SnpTestPki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A chip KDS does not know: KDS answers 404.
    other = snp_chip(snp).replace(":", ":0", 1)[:-1].rsplit(":", 1)
    chip = f"Genoa:{'ab' * 64}:{other[1]}"
    code, _ = fetch(tdx, snp, tmp_path / "b.tar", "--snp-chip", chip)
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("trustee collateral fetch: AMD KDS ") and "HTTP 404" in err
    assert not (tmp_path / "b.tar").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fetch", "--out", "x.tar"], "name at least one --tdx-fmspc"),
        (["fetch", "--tdx-fmspc", "00A06D", "--out", "x.tar"], "FMSPC '00A06D' is not 12 hex"),
        (["fetch", "--tdx-fmspc", "00A06D080000:other", "--out", "x.tar"], "PCK CA 'other'"),
        (["fetch", "--snp-chip", "Genoa:ab", "--out", "x.tar"], "is not PRODUCT:HWID_HEX"),
    ],
)
def test_fetch_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert collateral_main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


# --------------------------------------------------------------------------- tampering


def tampered(bundle: Path, tmp_path: Path, change: Any) -> Path:
    files = members(bundle)
    change(files)
    out = tmp_path / "tampered.tar"
    rewrite(out, files)
    return out


def vcek_name(files: dict[str, bytes]) -> str:
    return next(name for name in files if "/vcek/" in name)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("altered", "does not match the manifest"),
        ("missing", "is listed but missing"),
        ("extra", "snp/Genoa/extra.der is not listed in the manifest"),
    ],
)
def test_verify_refuses_a_tampered_bundle_naming_the_member(
    case: str, message: str, bundle: Path, roots: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    def change(files: dict[str, bytes]) -> None:
        name = vcek_name(files)
        if case == "altered":
            files[name] = files[name][:-1] + bytes([files[name][-1] ^ 1])
        elif case == "missing":
            del files[name]
        else:
            files["snp/Genoa/extra.der"] = b"x"

    path = tampered(bundle, tmp_path, change)
    code, out, err = verify(path, roots, capsys)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and message in err
    if case != "extra":
        assert vcek_name(members(bundle)) in err
    with pytest.raises(BundleError, match=message):
        LoadedBundle.load(str(path), [])


def test_verify_refuses_a_re_hashed_member_whose_signature_fails(
    bundle: Path, roots: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Someone edits the TCB info and updates the manifest: the hashes hold, Intel's
    # signature does not.
    def change(files: dict[str, bytes]) -> None:
        name = next(n for n in files if n.startswith("tdx/"))
        collateral = json.loads(files[name])
        collateral["tcb_info"] = collateral["tcb_info"].replace("UpToDate", "UpToDatE", 1)
        rehashed(files, name, json.dumps(collateral).encode())

    path = tampered(bundle, tmp_path, change)
    code, out, _ = verify(path, roots, capsys)
    assert code == 1
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "TCB info signature check failed" in failed[0]
    with pytest.raises(BundleError, match="TCB info signature check failed"):
        LoadedBundle.load(str(path), [TdxTestPki.shared().root_der])


def test_verify_refuses_snp_certificates_their_issuer_did_not_sign(
    bundle: Path, roots: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # AMD's real Genoa ASK in place of the test one: same names, other keys. Neither it (under
    # the bundle's ARK) nor the VCEK (under it) verifies.
    amd_ask = next(
        der for product, role, der in _core.vendor_anchors() if (product, role) == ("Genoa", "ASK")
    )
    path = tampered(bundle, tmp_path, lambda files: rehashed(files, "snp/Genoa/ask.der", amd_ask))
    code, out, _ = verify(path, roots, capsys)
    assert code == 1
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 2, out
    assert any(
        "/vcek/" in line and "not signed by the Genoa ASK (snp/Genoa/ask.der)" in line
        for line in failed
    )
    ask_line = "FAILED   snp/Genoa/ask.der  not signed by the Genoa ARK"
    assert any(line.startswith(ask_line) for line in failed)


def rehashed(files: dict[str, bytes], name: str, data: bytes) -> None:
    """Replace a member and update its manifest entry, as someone who means it would."""
    files[name] = data
    manifest = json.loads(files["manifest.json"])
    for entry in manifest["members"]:
        if entry["path"] == name:
            entry["sha256"] = hashlib.sha256(data).hexdigest()
            entry["size"] = len(data)
    files["manifest.json"] = json.dumps(manifest).encode()


@pytest.mark.parametrize("content", [b"not a tar at all", None])
def test_verify_of_something_else_is_exit_2(
    content: bytes | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "thing.tar"
    if content is None:
        rewrite(path, {"README": b"hello"})  # a tar, but no manifest
    else:
        path.write_bytes(content)
    code, out, err = verify(path, None, capsys)
    assert (code, out) == (2, "")
    assert err.startswith("trustee collateral verify: ") and "not a collateral bundle" in err


# --------------------------------------------------------------------------- configuration


def settings(table: dict[str, Any]) -> Any:
    return verifier_settings(Table(table, "attestation_service.verifier_config"))


def test_config_loads_the_bundle_and_refuses_a_tampered_one(
    bundle: Path, roots: Path, tmp_path: Path
) -> None:
    loaded = settings({"collateral_bundle": str(bundle), "insecure_test_roots": [str(roots)]})
    assert loaded.bundle is not None and [tee for tee, _, _ in loaded.bundle.dcap] == ["tdx"]
    path = tampered(bundle, tmp_path, lambda files: files.pop(vcek_name(files)))
    with pytest.raises(ConfigError) as caught:
        settings({"collateral_bundle": str(path), "insecure_test_roots": [str(roots)]})
    text = str(caught.value)
    assert text.startswith("attestation_service.verifier_config.collateral_bundle: ")
    assert vcek_name(members(bundle)) in text and "\n" not in text


@pytest.mark.parametrize(
    "other", [{"kds_url": "https://kds"}, {"dcap_verifier": {"collateral_service": "https://pcs"}}]
)
def test_config_refuses_another_source_beside_the_bundle(
    other: dict[str, Any], bundle: Path
) -> None:
    with pytest.raises(ConfigError, match="serves all TDX collateral and SNP VCEKs; remove"):
        settings({"collateral_bundle": str(bundle), **other})


def test_the_standalone_as_config_takes_the_bundle_too(
    bundle: Path, roots: Path, tmp_path: Path
) -> None:
    path = tmp_path / "as-config.json"
    table = {"collateral_bundle": str(bundle), "insecure_test_roots": [str(roots)]}
    path.write_text(json.dumps({"verifier_config": table}))
    loaded = as_file.load_file(path).service.verifier_config.bundle
    assert loaded is not None and loaded.path == str(bundle)
    broken = tampered(bundle, tmp_path, lambda files: files.pop(vcek_name(files)))
    path.write_text(json.dumps({"verifier_config": {**table, "collateral_bundle": str(broken)}}))
    with pytest.raises(ConfigError, match=r"verifier_config\.collateral_bundle: .* is listed but"):
        as_file.load_file(path)


def test_serve_with_a_tampered_bundle_exits_2_naming_the_member(
    bundle: Path, roots: Path, tmp_path: Path
) -> None:
    path = tampered(bundle, tmp_path, lambda files: files.pop(vcek_name(files)))
    config = tmp_path / "kbs.toml"
    config.write_text(
        '[http_server]\nsockets = ["127.0.0.1:18080"]\ninsecure_http = true\n'
        '[admin]\nauthorization_mode = "InsecureAllowAll"\n'
        "[attestation_token]\ninsecure_header_jwk = true\n"
        "[attestation_service.verifier_config]\n"
        f'collateral_bundle = "{path}"\ninsecure_test_roots = ["{roots}"]\n'
    )
    # This checkout's code, in its own process, as an operator runs it.
    search = os.pathsep.join(filter(None, [str(ROOT / "python"), os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "trustee.cli", "serve", "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": search},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    error = result.stderr.splitlines()[-1]  # after the "using config file" notice
    assert error.startswith("trustee: ") and "collateral_bundle: " in error
    assert "is listed but missing" in error and vcek_name(members(bundle)) in error


# --------------------------------------------------------------------------- serving


class Events:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    async def emit(self, event: AuditEvent) -> None:
        self.events.append(event)


def verifier(bundle: Path, tdx: TdxTestPki, snp: SnpTestPki, audit: Events) -> HardwareVerifier:
    loaded = LoadedBundle.load(str(bundle), [tdx.root_der, snp.ark_der])
    return HardwareVerifier(
        tdx_source=BundleTdxSource(loaded),
        vek_source=BundleVekSource(loaded),
        test_anchors=[tdx.root_der, snp.ark_der, snp.ask_der],
        audit=audit,
    )


async def test_bundle_serves_tdx_and_a_vcek_the_evidence_lacks(
    bundle: Path, tdx: TdxTestPki, snp: SnpTestPki
) -> None:
    audit = Events()
    hardware = verifier(bundle, tdx, snp, audit)
    claims = await hardware.verify_offloaded(
        "tdx", tdx_evidence_json(tdx.quote(NONCE)), NONCE, None
    )
    tdx_claims = json.loads(claims[0].json)
    assert tdx_claims["collateral_expiration_status"] == "0"
    evidence = snp_evidence_json(snp.report(NONCE))  # no certificate table: the VCEK is fetched
    claims = await hardware.verify_offloaded("snp", evidence, NONCE, None)
    assert json.loads(claims[0].json)["chip_id"] == snp.chip_id.hex()
    assert [e.type for e in audit.events] == ["org.trustee-py.collateral.fetched"]


async def test_an_fmspc_not_in_the_bundle_names_the_fmspc_and_the_bundle(
    bundle: Path, tdx: TdxTestPki, snp: SnpTestPki
) -> None:
    stranger = TdxTestPki.generate(platform=TdxPlatform(fmspc=bytes.fromhex("00906ED50000")))
    hardware = verifier(bundle, tdx, snp, Events())
    with pytest.raises(HardwareInputError) as caught:
        await hardware.verify_offloaded(
            "tdx", tdx_evidence_json(stranger.quote(NONCE)), NONCE, None
        )
    text = str(caught.value)
    assert "FMSPC 00906ED50000" in text and f"collateral bundle {bundle}" in text
    assert "--tdx-fmspc 00906ED50000:platform" in text


@pytest.fixture(scope="module")
def sgx_bundle(tdx: TdxTestPki, snp: SnpTestPki, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulated platform's collateral for TDX and, quoting for an enclave, for SGX."""
    fmspc = tdx.platform.fmspc.hex().upper()
    path = tmp_path_factory.mktemp("sgx") / "sgx.tar"
    code, queries = fetch(tdx, snp, path, "--sgx-fmspc", f"{fmspc}:platform")
    assert code == 0
    assert any(q.startswith("/sgx/certification/v4/tcb") for q in queries), queries
    return path


async def test_sgx_collateral_is_fetched_into_the_bundle_and_served_from_it(
    sgx_bundle: Path, tdx: TdxTestPki
) -> None:
    fmspc = tdx.platform.fmspc.hex().upper()
    path = sgx_bundle
    assert {f"tdx/{fmspc}-platform.json", f"sgx/{fmspc}-platform.json"} <= set(members(path))
    loaded = LoadedBundle.load(str(path), [tdx.root_der])
    hardware = HardwareVerifier(tdx_source=BundleTdxSource(loaded), test_anchors=[tdx.root_der])
    quote = SgxTestPki(tdx).quote(NONCE)
    claims = await hardware.verify_offloaded(
        "sgx", json.dumps(sgx_evidence(quote)).encode(), NONCE, None
    )
    assert json.loads(claims[0].json)["tcb_status"] == "UpToDate"
    # Each TEE is served its own documents: the processor CA was fetched for neither.
    sgx = await BundleTdxSource(loaded).get(fmspc, "platform", "sgx")
    tdx_collateral = await BundleTdxSource(loaded).get(fmspc, "platform", "tdx")
    assert sgx.tcb_info_id == "SGX" and tdx_collateral.tcb_info_id == "TDX"
    with pytest.raises(CollateralError, match=f"no SGX collateral .* --sgx-fmspc {fmspc}"):
        await BundleTdxSource(loaded).get(fmspc, "processor", "sgx")


@pytest.fixture(scope="module")
def old_bundle(tdx: TdxTestPki, snp: SnpTestPki, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Collateral issued 40 days ago: its nextUpdate (30 days on) has passed."""
    issued = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=40)
    return bundle_at(tdx, snp, tmp_path_factory.mktemp("old") / "old.tar", issued)


async def test_an_expired_bundle_still_serves_and_says_it_is_expired(
    tdx: TdxTestPki, snp: SnpTestPki, old_bundle: Path, roots: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    path = old_bundle
    capsys.readouterr()
    code, out, _ = verify(path, roots, capsys)
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()].count("EXPIRED") == 1, out
    audit = Events()
    claims = await verifier(path, tdx, snp, audit).verify_offloaded(
        "tdx", tdx_evidence_json(tdx.quote(NONCE)), NONCE, None
    )
    assert json.loads(claims[0].json)["collateral_expiration_status"] == "1"
    expired = [e for e in audit.events if e.type == "org.trustee-py.collateral.expired"]
    assert len(expired) == 1 and expired[0].data["key"].endswith("/platform")


async def test_a_vcek_not_in_the_bundle_names_the_chip_tcb_and_bundle(
    bundle: Path, tdx: TdxTestPki, snp: SnpTestPki
) -> None:
    loaded = LoadedBundle.load(str(bundle), [tdx.root_der, snp.ark_der])
    _, bl, tee, snp_spl, ucode = snp.tcb
    newer = VcekRequest("Genoa", snp.chip_id.hex(), bl, tee, snp_spl + 1, ucode)
    with pytest.raises(CollateralError) as caught:
        await BundleVekSource(loaded).vcek(newer)
    text = str(caught.value)
    assert f"collateral bundle {bundle} holds no Genoa VCEK" in text
    assert f"bl{bl:02d}_tee{tee:02d}_snp{snp_spl + 1:02d}_ucode{ucode:02d}" in text
    # The ASVK fetched with the bundle travels beside the ASK and ARK.
    assert await BundleVekSource(loaded).cert_chain("Genoa") == [
        snp.ask_der,
        snp.ark_der,
        snp.ask_der,
    ]
