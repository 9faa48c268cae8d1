"""Collateral sources that answer from a collateral bundle, with no network.

The bundle is read and checked once, when the configuration is (a damaged bundle, or one
whose signatures do not hold, stops the server from starting). Content past its nextUpdate
is served as it is: there is nothing to refresh it from, and the appraisal reports it as
expired (``collateral_expiration_status`` "1") so policies decide.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from trustee.collateral.bundle import DCAP_KINDS, Bundle, read_bundle
from trustee.collateral.bundle_check import require_valid_signatures, tdx_collateral
from trustee.collateral.errors import CollateralError
from trustee.collateral.snp import VcekRequest
from trustee.collateral.tdx import TdxCollateral, check_request


@dataclass(frozen=True)
class LoadedBundle:
    """A checked bundle, indexed for lookups."""

    path: str
    # (tee, FMSPC, CA) → collateral, tee "tdx" or "sgx"
    dcap: dict[tuple[str, str, str], TdxCollateral]
    vceks: dict[tuple[str, str, str], bytes]  # (product, hw_id, file name) → DER
    # product → [ASK, ARK] and the ASVK when fetched: a VLEK in the evidence chains to it.
    chains: dict[str, list[bytes]]

    @classmethod
    def load(cls, path: str, test_roots: Sequence[bytes] = ()) -> LoadedBundle:
        """Raises BundleError naming the bundle and the member that failed."""
        bundle = read_bundle(path)
        require_valid_signatures(bundle, test_roots)
        return cls.index(bundle, time.time())

    @classmethod
    def index(cls, bundle: Bundle, loaded_at: float) -> LoadedBundle:
        dcap: dict[tuple[str, str, str], TdxCollateral] = {}
        for kind, tee in DCAP_KINDS.items():
            for member in bundle.of_kind(kind):
                parsed = tdx_collateral(member)
                key = (tee, str(member.key["fmspc"]).upper(), str(member.key["ca"]))
                dcap[key] = TdxCollateral(parsed.fields, parsed.not_after, loaded_at)
        vceks = {
            (
                str(m.key.get("product")),
                str(m.key.get("hw_id", "")).lower(),
                m.path.rsplit("/", 1)[-1],
            ): m.data
            for m in bundle.of_kind("snp-vcek")
        }
        chains: dict[str, list[bytes]] = {}
        for ask in bundle.of_kind("snp-ask"):
            product = str(ask.key.get("product"))
            ark = next(
                (m for m in bundle.of_kind("snp-ark") if m.key.get("product") == product), None
            )
            if ark is not None:  # the signature check refused an ASK without its ARK
                chains[product] = [ask.data, ark.data]
        for asvk in bundle.of_kind("snp-asvk"):
            chains.setdefault(str(asvk.key.get("product")), []).append(asvk.data)
        return cls(bundle.path, dcap, vceks, chains)


class BundleTdxSource:
    def __init__(self, bundle: LoadedBundle) -> None:
        self.bundle = bundle

    def __repr__(self) -> str:
        return f"BundleTdxSource({self.bundle.path!r})"

    async def get(self, fmspc: str, ca: str, tee: str = "tdx") -> TdxCollateral:
        origin = f"collateral bundle {self.bundle.path}"
        check_request(fmspc, ca, origin)
        found = self.bundle.dcap.get((tee, fmspc.upper(), ca))
        if found is None:
            held = ", ".join(f"{f} ({c})" for t, f, c in sorted(self.bundle.dcap) if t == tee)
            raise CollateralError(
                f"{origin} holds no {tee.upper()} collateral for FMSPC {fmspc.upper()} ({ca} "
                f"CA); it holds: {held or 'none'}; fetch a bundle with --{tee}-fmspc "
                f"{fmspc.upper()}:{ca}"
            )
        return found


class BundleVekSource:
    def __init__(self, bundle: LoadedBundle) -> None:
        self.bundle = bundle

    def __repr__(self) -> str:
        return f"BundleVekSource({self.bundle.path!r})"

    async def vcek(self, req: VcekRequest) -> bytes:
        found = self.bundle.vceks.get((req.product, req.hw_id, req.file_name()))
        if found is None:
            raise CollateralError(
                f"collateral bundle {self.bundle.path} holds no {req.product} VCEK for hwID "
                f"{req.hw_id[:16]}… at TCB {req.file_name().removesuffix('_vcek.der')}"
            )
        return found

    async def cert_chain(self, product: str) -> list[bytes]:
        found = self.bundle.chains.get(product)
        if found is None:
            raise CollateralError(
                f"collateral bundle {self.bundle.path} holds no {product} ASK/ARK"
            )
        return list(found)
