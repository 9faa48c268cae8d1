"""Saving a simulated PKI and loading it in another process: the loaded PKI signs evidence that
checks against the root and collateral written for the server, and bad files fail by name."""

from __future__ import annotations

import datetime
import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from tests.unit.test_simulate_snp import verify_report
from tests.unit.test_simulate_tdx import check_quote_crypto
from trustee.simulate import (
    SimulationError,
    SnpTestPki,
    TdxTestPki,
    simulate_main,
    write_server_trust,
)
from trustee.simulate.certs import p256_verify_raw
from trustee.simulate.tdx_layout import QE_REPORT, TD_REPORT, field, split_quote

NOW = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=datetime.UTC)

TDX_KEYS = ("root", "pck-ca", "pck", "tcb-signing", "attestation")
SNP_KEYS = ("ark", "ask", "vcek")


@pytest.fixture(scope="module")
def tdx() -> TdxTestPki:
    return TdxTestPki.generate(now=NOW - datetime.timedelta(days=2))


@pytest.fixture(scope="module")
def snp() -> SnpTestPki:
    return SnpTestPki.shared("Genoa")


@pytest.fixture(scope="module")
def tdx_saved(tdx: TdxTestPki, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tdx.save(tmp_path_factory.mktemp("tdx") / "pki")


@pytest.fixture(scope="module")
def snp_saved(snp: SnpTestPki, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return snp.save(tmp_path_factory.mktemp("snp") / "pki")


def check_tdx_quote(quote: bytes, root_pem: Path, collateral_json: Path) -> None:
    """What a DCAP verifier configured with only these two server files checks."""
    (root,) = x509.load_pem_x509_certificates(root_pem.read_bytes())
    chain = check_quote_crypto(quote)
    assert chain[2] == root
    coll = json.loads(collateral_json.read_text())
    signing, coll_root = x509.load_pem_x509_certificates(coll["tcb_info_issuer_chain"].encode())
    assert coll_root == root
    signing.verify_directly_issued_by(root)
    signing_key = signing.public_key()
    assert isinstance(signing_key, ec.EllipticCurvePublicKey)
    for name in ("tcb_info", "qe_identity"):
        p256_verify_raw(signing_key, bytes.fromhex(coll[f"{name}_signature"]), coll[name].encode())
    pck_crl = x509.load_der_x509_crl(bytes.fromhex(coll["pck_crl"]))
    assert pck_crl.is_signature_valid(chain[1].public_key())  # type: ignore[arg-type]
    assert pck_crl.get_revoked_certificate_by_serial_number(chain[0].serial_number) is None
    parts = split_quote(quote)
    qe = json.loads(coll["qe_identity"])
    assert bytes.fromhex(qe["mrsigner"]) == field(parts.qe_report, QE_REPORT, "mr_signer")
    tcb_info = json.loads(coll["tcb_info"])
    module = tcb_info["tdxModuleIdentities"][0]
    assert module["id"] == f"TDX_{field(parts.body, TD_REPORT, 'tee_tcb_svn')[1]:02X}"


def check_snp_report(report: bytes, vcek: x509.Certificate, ask_ark_pem: Path) -> None:
    ask, ark = x509.load_pem_x509_certificates(ask_ark_pem.read_bytes())
    ark.verify_directly_issued_by(ark)
    ask.verify_directly_issued_by(ark)
    vcek.verify_directly_issued_by(ask)
    verify_report(report, vcek)


# -- round trips ---------------------------------------------------------------------------


def test_tdx_save_writes_private_keys_0600(tdx_saved: Path) -> None:
    for stem in TDX_KEYS:
        mode = stat.S_IMODE((tdx_saved / f"{stem}.key").stat().st_mode)
        assert mode == 0o600, f"{stem}.key has mode {mode:o}"
        assert (tdx_saved / f"{stem}.key").read_text().startswith("-----BEGIN PRIVATE KEY-----")
    document = json.loads((tdx_saved / "pki.json").read_text())
    assert (document["kind"], document["format_version"]) == ("tdx", 1)
    assert not (tdx_saved / "attestation.pem").exists()


def test_tdx_loaded_pki_signs_quotes_the_saved_trust_accepts(
    tdx: TdxTestPki, tdx_saved: Path, tmp_path: Path
) -> None:
    files = write_server_trust(tdx, tmp_path, NOW)
    assert set(files) == {"test_roots", "collateral"}
    assert files["test_roots"].name == "tdx-test-root.pem"
    assert files["collateral"].name == "tdx-collateral.json"
    assert len(x509.load_pem_x509_certificates(files["test_roots"].read_bytes())) == 1

    loaded = TdxTestPki.load(tdx_saved)
    assert loaded.platform == tdx.platform
    assert loaded.qe == tdx.qe
    assert loaded.root_der == tdx.root_der
    assert loaded.qe_report == tdx.qe_report
    assert loaded.user_data == tdx.user_data
    quote = loaded.quote(b"\x07" * 64, mr_config_id=b"\x09" * 48)
    check_tdx_quote(quote, files["test_roots"], files["collateral"])
    # Collateral the loaded PKI makes is just as good: same signing key, same root.
    fresh = write_server_trust(loaded, tmp_path / "again", NOW)
    check_tdx_quote(tdx.quote(bytes(64)), files["test_roots"], fresh["collateral"])


def test_snp_save_writes_private_keys_0600(snp_saved: Path) -> None:
    for stem in SNP_KEYS:
        mode = stat.S_IMODE((snp_saved / f"{stem}.key").stat().st_mode)
        assert mode == 0o600, f"{stem}.key has mode {mode:o}"
    document = json.loads((snp_saved / "pki.json").read_text())
    assert (document["kind"], document["format_version"]) == ("snp", 1)
    assert document["product"] == "Genoa"


def test_snp_loaded_pki_signs_reports_the_saved_trust_accepts(
    snp: SnpTestPki, snp_saved: Path, tmp_path: Path
) -> None:
    files = write_server_trust(snp, tmp_path)
    assert set(files) == {"test_roots"}
    assert files["test_roots"].name == "snp-test-ark-ask.pem"
    ask, ark = x509.load_pem_x509_certificates(files["test_roots"].read_bytes())
    assert (ask, ark) == (snp.ask_cert, snp.ark_cert)

    loaded = SnpTestPki.load(snp_saved)
    assert (loaded.product, loaded.tcb) == (snp.product, snp.tcb)
    assert (loaded.chip_id, loaded.report_id) == (snp.chip_id, snp.report_id)
    report = loaded.report(b"\x05" * 64, host_data=b"\x06" * 32)
    check_snp_report(report, loaded.vcek_cert, files["test_roots"])
    assert report[0xC0:0xE0] == b"\x06" * 32


def test_loading_a_snp_directory_as_tdx_names_the_kind(snp_saved: Path) -> None:
    with pytest.raises(SimulationError, match=r"pki\.json: kind is 'snp', expected 'tdx'"):
        TdxTestPki.load(snp_saved)


# -- damaged directories -------------------------------------------------------------------


def _copy(source: Path, target: Path) -> Path:
    target.mkdir()
    for item in source.iterdir():
        (target / item.name).write_bytes(item.read_bytes())
    return target


@pytest.mark.parametrize(
    ("name", "damage", "message"),
    [
        ("pki.json", None, r"pki\.json: missing"),
        ("pki.json", b"{not json", r"pki\.json: not valid JSON"),
        ("pki.json", b"[]", r"pki\.json: expected a JSON object"),
        ("root.key", None, r"root\.key: missing"),
        ("pck.key", b"garbage", r"pck\.key: not an unencrypted PKCS#8 PEM key"),
        ("pck-ca.pem", b"-----BEGIN CERTIFICATE-----\nAAAA\n", r"pck-ca\.pem: not a PEM cert"),
        ("tcb-signing.pem", None, r"tcb-signing\.pem: missing"),
        ("attestation.key", b"", r"attestation\.key: not an unencrypted"),
    ],
)
def test_tdx_damaged_files_are_named(
    tdx_saved: Path, tmp_path: Path, name: str, damage: bytes | None, message: str
) -> None:
    copy = _copy(tdx_saved, tmp_path / "pki")
    if damage is None:
        (copy / name).unlink()
    else:
        (copy / name).write_bytes(damage)
    with pytest.raises(SimulationError, match=message) as info:
        TdxTestPki.load(copy)
    assert "\n" not in str(info.value)
    assert str(copy / name) in str(info.value)


def test_tdx_mismatched_key_and_certificate(tdx_saved: Path, tmp_path: Path) -> None:
    copy = _copy(tdx_saved, tmp_path / "pki")
    (copy / "pck.key").write_bytes((copy / "root.key").read_bytes())
    with pytest.raises(SimulationError, match=r"pck\.key: key does not match the certificate"):
        TdxTestPki.load(copy)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(format_version=99), r"format_version is 99, this build reads 1"),
        (lambda d: d["platform"].update(fmspc="00"), r"platform\.fmspc must be 6 bytes, got 1"),
        (lambda d: d["platform"].update(ppid="zz"), r"platform\.ppid is not hex"),
        (lambda d: d["qe"].pop("isv_svn"), r"qe\.isv_svn is missing"),
        (
            lambda d: d["platform"].update(sgx_tcb_components=[1] * 15),
            r"platform\.sgx_tcb_components must be a list of 16 integers",
        ),
        (lambda d: d["platform"].update(smt_enabled=1), r"platform\.smt_enabled must be true"),
    ],
)
def test_tdx_bad_document_fields_are_named(
    tdx_saved: Path, tmp_path: Path, edit: object, message: str
) -> None:
    copy = _copy(tdx_saved, tmp_path / "pki")
    document = json.loads((copy / "pki.json").read_text())
    edit(document)  # type: ignore[operator]
    (copy / "pki.json").write_text(json.dumps(document))
    with pytest.raises(SimulationError, match=r"pki\.json: " + message):
        TdxTestPki.load(copy)


@pytest.mark.parametrize(
    ("name", "damage", "message"),
    [
        ("ark.key", None, r"ark\.key: missing"),
        ("vcek.key", "ask.key", r"vcek\.key: expected an EC secp384r1 key, got RSA-4096"),
        ("ask.key", "ark.key", r"ask\.key: key does not match the certificate"),
        ("vcek.pem", b"", r"vcek\.pem: not a PEM certificate"),
    ],
)
def test_snp_damaged_files_are_named(
    snp_saved: Path, tmp_path: Path, name: str, damage: bytes | str | None, message: str
) -> None:
    copy = _copy(snp_saved, tmp_path / "pki")
    if damage is None:
        (copy / name).unlink()
    elif isinstance(damage, str):
        (copy / name).write_bytes((copy / damage).read_bytes())
    else:
        (copy / name).write_bytes(damage)
    with pytest.raises(SimulationError, match=message):
        SnpTestPki.load(copy)


def test_snp_bad_product_and_tcb(snp_saved: Path, tmp_path: Path) -> None:
    copy = _copy(snp_saved, tmp_path / "pki")
    document = json.loads((copy / "pki.json").read_text())
    (copy / "pki.json").write_text(json.dumps(document | {"product": "Naples"}))
    with pytest.raises(SimulationError, match=r"product is 'Naples', not one of"):
        SnpTestPki.load(copy)
    document["tcb"]["fmc"] = 1
    (copy / "pki.json").write_text(json.dumps(document))
    with pytest.raises(SimulationError, match=r"tcb\.fmc is 1, but Genoa TCBs have no FMC SPL"):
        SnpTestPki.load(copy)


# -- the `trustee simulate init` command ---------------------------------------------------


def test_simulate_init_tdx(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert simulate_main(["init", "--tee", "tdx", "--dir", str(tmp_path / "sim")]) == 0
    out = capsys.readouterr().out
    base = (tmp_path / "sim").absolute()
    root, collateral = base / "tdx-test-root.pem", base / "tdx-collateral.json"
    assert f'insecure_test_roots = ["{root}"]' in out
    assert f'collateral = "{collateral}"' in out
    assert "[attestation_service.verifier_config]" in out
    loaded = TdxTestPki.load(base / "pki")
    check_tdx_quote(loaded.quote(bytes(64)), root, collateral)


def test_simulate_init_snp_with_product(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["init", "--tee", "snp", "--dir", str(tmp_path), "--product", "Turin"]
    assert simulate_main(argv) == 0
    out = capsys.readouterr().out
    roots = tmp_path.absolute() / "snp-test-ark-ask.pem"
    assert f'insecure_test_roots = ["{roots}"]' in out
    assert "collateral =" not in out
    loaded = SnpTestPki.load(tmp_path / "pki")
    assert loaded.product.name == "Turin"
    check_snp_report(loaded.report(bytes(64)), loaded.vcek_cert, roots)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["init"],
        ["init", "--tee", "cca", "--dir", "x"],
        ["init", "--tee", "snp", "--dir", "x", "--tcb-status", "OutOfDate"],
        ["init", "--tee", "tdx"],
        ["init", "--tee", "snp", "--dir", "x", "--product", "Naples"],
        ["init", "--tee", "tdx", "--dir", "x", "--product", "Genoa"],
        ["frobnicate"],
    ],
)
def test_simulate_usage_errors_exit_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert simulate_main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("trustee simulate")
    assert captured.err.count("\n") == 1


def test_simulate_unwritable_directory_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert simulate_main(["init", "--tee", "tdx", "--dir", str(blocker / "sim")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("trustee simulate init: ") and err.count("\n") == 1
    assert str(blocker) in err


def _contents(directory: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize("again", ["tdx", "snp"])
def test_simulate_init_keeps_an_existing_pki_unless_forced(
    again: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A server may trust the root already there: replacing it silently would make that
    # server refuse every guest that uses the new one.
    sim = tmp_path / "sim"
    assert simulate_main(["init", "--tee", "tdx", "--dir", str(sim)]) == 0
    before = _contents(sim)
    capsys.readouterr()
    assert simulate_main(["init", "--tee", again, "--dir", str(sim)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"trustee simulate init: {sim.absolute()} holds a simulated PKI already; "
        "--force replaces it\n"
    )
    assert _contents(sim) == before
    assert simulate_main(["init", "--tee", "tdx", "--dir", str(sim), "--force"]) == 0
    after = _contents(sim)
    assert after["tdx-test-root.pem"] != before["tdx-test-root.pem"]
    check_tdx_quote(
        TdxTestPki.load(sim / "pki").quote(bytes(64)),
        sim / "tdx-test-root.pem",
        sim / "tdx-collateral.json",
    )


def test_simulate_init_writes_beside_files_that_are_no_pki(tmp_path: Path) -> None:
    (tmp_path / "unrelated.txt").write_text("kept")
    assert simulate_main(["init", "--tee", "snp", "--dir", str(tmp_path)]) == 0
    assert (tmp_path / "unrelated.txt").read_text() == "kept"
