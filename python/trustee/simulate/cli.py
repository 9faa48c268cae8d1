"""`trustee simulate init`: make a simulated TEE platform and the files a KBS needs to trust it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from trustee.simulate.azure import AzSnpVtpmPki, AzTdxVtpmPki
from trustee.simulate.server_trust import (
    SGX_COLLATERAL_FILE,
    SGX_ROOT_FILE,
    SNP_ROOTS_FILE,
    TDX_COLLATERAL_FILE,
    TDX_ROOT_FILE,
    TPM_AK_FILE,
    TPM_AK_REFERENCE_VALUE,
    TrustedPki,
    write_server_trust,
)
from trustee.simulate.sgx import SgxTestPki
from trustee.simulate.snp import PRODUCTS, SnpTestPki
from trustee.simulate.snp_layout import GENOA
from trustee.simulate.store import PKI_FILE, SimulationError
from trustee.simulate.tdx import TdxTestPki
from trustee.simulate.tpm import TpmTestPki
from trustee.usage import OneLineParser, UsageError, report

PKI_SUBDIR = "pki"
PROG = "trustee simulate init"
TEES = ("tdx", "sgx", "snp", "az-snp-vtpm", "az-tdx-vtpm", "tpm")
SNP_TEES = ("snp", "az-snp-vtpm")
# Those whose collateral rates the platform (--tcb-status).
DCAP_TEES = ("tdx", "sgx", "az-tdx-vtpm")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="trustee simulate",
        description="Simulated TDX / SGX / SEV-SNP / Azure vTPM / TPM guests signed by test keys "
        "made on this machine.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    init = commands.add_parser(
        "init",
        help="generate a test PKI and the server trust files",
        description=(
            "Generate a test PKI under DIR/pki (for the client: TRUSTEE_SIMULATED_PKI) and the "
            "files a KBS needs to trust it under DIR."
        ),
    )
    init.add_argument("--tee", required=True, choices=TEES)
    init.add_argument("--dir", required=True, type=Path, metavar="DIR")
    init.add_argument(
        "--product",
        choices=sorted(PRODUCTS),
        help=f"SNP processor generation, snp and az-snp-vtpm (default {GENOA})",
    )
    init.add_argument(
        "--tcb-status",
        choices=("UpToDate", "OutOfDate"),
        help="tdx, sgx, az-tdx-vtpm: how the collateral rates the platform's TCB "
        "(default UpToDate)",
    )
    init.add_argument(
        "--force",
        action="store_true",
        help="replace the PKI DIR holds already (a server that trusts it then refuses the "
        "new evidence until it is given the new root)",
    )
    return parser


def existing_pki(directory: Path) -> list[Path]:
    """What a previous `init` left in `directory`: the PKI and the server's trust files."""
    names = (
        f"{PKI_SUBDIR}/{PKI_FILE}",
        TDX_ROOT_FILE,
        TDX_COLLATERAL_FILE,
        SGX_ROOT_FILE,
        SGX_COLLATERAL_FILE,
        SNP_ROOTS_FILE,
        TPM_AK_FILE,
    )
    return [directory / name for name in names if (directory / name).exists()]


def _toml_string(path: Path) -> str:
    # A JSON string literal is a valid TOML basic string for any path.
    return json.dumps(str(path))


def _generate(tee: str, product: str | None) -> tuple[TrustedPki, str]:
    """A fresh PKI for `tee` and how the summary names it."""
    if tee == "tdx":
        return TdxTestPki.generate(), "TDX test PKI"
    if tee == "sgx":
        return SgxTestPki.generate(), "SGX test PKI"
    if tee == "snp":
        snp = SnpTestPki.generate(product or GENOA)
        return snp, f"SNP {snp.product.name} test PKI"
    if tee == "az-snp-vtpm":
        az_snp = AzSnpVtpmPki.generate(product or GENOA)
        return az_snp, f"SNP {az_snp.snp.product.name} test PKI and vTPM keys"
    if tee == "az-tdx-vtpm":
        return AzTdxVtpmPki.generate(), "TDX test PKI and vTPM keys"
    return TpmTestPki.generate(), "TPM attestation key and test AK CA"


def _server_lines(tee: str, files: dict[str, Path], pki: TrustedPki) -> list[str]:
    if isinstance(pki, TpmTestPki):
        # Either path works: the admin vouches for the AK through a reference value, or the
        # server trusts the CA that certified it.
        return [
            "",
            "KBS reference value (the tpm verifier's claim ak_public is checked against it):",
            f"trustee-client config set-sample-reference-value {TPM_AK_REFERENCE_VALUE} "
            f"{pki.ak.spki_b64}",
            "",
            "or KBS config (the guest's AK certificate must chain to this root):",
            "[attestation_service.verifier_config]",
            f"tpm_ak_roots = [{_toml_string(files['ak_root'])}]",
        ]
    lines = [
        "",
        "KBS config (these roots are trusted only because they are listed here):",
        "[attestation_service.verifier_config]",
        f"insecure_test_roots = [{_toml_string(files['test_roots'])}]",
    ]
    if "collateral" in files:
        lines.append(f"collateral = {_toml_string(files['collateral'])}")
    return lines


def init(
    tee: str, directory: Path, product: str | None, tcb_status: str | None = None
) -> list[str]:
    """Create the PKI and trust files; returns the summary lines."""
    directory = directory.absolute()
    pki, label = _generate(tee, product)
    pki_dir = pki.save(directory / PKI_SUBDIR)
    files = write_server_trust(pki, directory, tcb_status=tcb_status or "UpToDate")
    lines = [f"wrote {pki_dir}/ ({label} with private keys; client side only)"]
    lines += [f"wrote {path} ({role})" for role, path in files.items()]
    lines += _server_lines(tee, files, pki)
    lines += [
        "",
        "Client environment:",
        f"TRUSTEE_SIMULATED_TEE={tee} TRUSTEE_SIMULATED_PKI={pki_dir}",
    ]
    return lines


def simulate_main(argv: list[str]) -> int:
    """`trustee simulate …`; 0 on success, 1 when the files cannot be made, 2 on usage errors."""
    try:
        args = build_parser().parse_args(argv)
        if args.tee not in SNP_TEES and args.product is not None:
            raise UsageError(f"--product applies to --tee snp or az-snp-vtpm, not {args.tee}")
        if args.tee not in DCAP_TEES and args.tcb_status is not None:
            raise UsageError(
                f"--tcb-status applies to --tee tdx, sgx or az-tdx-vtpm, not {args.tee}"
            )
        if not args.force and existing_pki(args.dir):
            # A server may trust the old root: new evidence would be refused by it.
            raise UsageError(
                f"{args.dir.absolute()} holds a simulated PKI already; --force replaces it"
            )
    except UsageError as exc:
        return report(exc, PROG)
    except SystemExit as exc:  # --help, already printed
        return exc.code if isinstance(exc.code, int) else 0
    try:
        lines = init(args.tee, args.dir, args.product, args.tcb_status)
    except SimulationError as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 1
    except Exception as exc:  # never a traceback for the user; the type says where to look
        sys.stderr.write(f"{PROG}: {type(exc).__name__}: {exc}\n")
        return 1
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
