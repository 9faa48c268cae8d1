"""TDX collateral sources: a bundle file, a directory, and an Intel PCS / PCCS service.

**Bundle file** (:class:`BundleFileSource`): one JSON file, either

* the dcap-qvl form (the nine members described in :mod:`trustee.collateral.tdx`; extra members
  are ignored), holding collateral for one FMSPC and one PCK CA, or
* the JSON written by Intel's PCS client tool (upstream's ``file://`` collateral service):
  ``{"collaterals": {"tcbinfos": [{"fmspc", "tdx_tcbinfo", "tdx_tcbinfo_early"}…],
  "pckcacrl": {"processorCrl", "platformCrl"}, "tdqeidentity", "tdqeidentity_early",
  "certificates": {…}, "rootcacrl"}}``; the ``_early`` objects are used for update type
  ``early`` and fall back to the standard ones. SGX requests take ``sgx_tcbinfo`` and
  ``qeidentity`` instead.

The file is re-read when its modification time or size changes.

**Directory** (:class:`DirectorySource`), looked up per request, first match wins:

* ``<FMSPC>.json`` (upper or lower case hex): a dcap-qvl form bundle for that FMSPC;
* otherwise the pieces, in Intel's formats:

  ========================================  ==================================================
  ``tcbInfo-<FMSPC>.json`` or ``tcbInfo.json``  ``{"tcbInfo": {…}, "signature": "<hex>"}``
  ``enclaveIdentity.json``                  ``{"enclaveIdentity": {…}, "signature": "<hex>"}``
  ``tcb_info_issuer_chain.pem``             TCB signing certificate + Intel SGX Root CA
  ``qe_identity_issuer_chain.pem``          optional; defaults to the TCB info chain
  ``pck_crl_<ca>.der`` / ``.pem``           PCK CRL of the ``processor`` or ``platform`` CA
  ``pck_crl_issuer_chain_<ca>.pem``         PCK CA certificate + Intel SGX Root CA
  ``root_ca_crl.der`` / ``.pem``            Intel SGX Root CA CRL
  ========================================  ==================================================

  CRL files may hold DER, PEM or hex text. The TCB info's ``fmspc`` must be the requested one.
  SGX collateral is looked up the same way in the ``sgx`` subdirectory.

**PCS / PCCS** (:class:`PcsSource`): Intel PCS v4 API shapes (TCB info and QE identity under
``/tdx/…`` or ``/sgx/…`` by the quote's TEE; the CRLs are shared). As upstream does, only the
scheme, host and port of the configured URL are kept; the four documents are fetched
concurrently under one deadline.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import trio

from trustee.collateral.errors import CollateralError
from trustee.collateral.http import expect_ok, http_get
from trustee.collateral.spec import (
    INTEL_PCS_HOST,
    INTEL_PCS_URL,
    check_update_type,
    pcs_url_parts,
)
from trustee.collateral.tdx import (
    TdxCollateral,
    check_request,
    crl_der,
    pem_chain,
    signed_document,
)

if TYPE_CHECKING:
    import httpx

Clock = Callable[[], float]

# The Intel SGX Root CA's CRL distribution point; Intel PCS itself does not serve this CRL.
INTEL_ROOT_CA_CRL_URL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"


# --------------------------------------------------------------------------- bundle file


@dataclass
class _Loaded:
    stamp: tuple[int, int]
    document: dict[str, Any]


class BundleFileSource:
    def __init__(
        self, path: str | os.PathLike[str], *, update: str = "early", clock: Clock = time.time
    ) -> None:
        check_update_type(update)
        self.path = Path(path)
        self.update = update
        self._clock = clock
        self._loaded: _Loaded | None = None

    def __repr__(self) -> str:
        return f"BundleFileSource({str(self.path)!r})"

    async def get(self, fmspc: str, ca: str, tee: str = "tdx") -> TdxCollateral:
        origin = f"collateral bundle {self.path}"
        check_request(fmspc, ca, origin, tee)
        document = await self._document(origin)
        if "collaterals" in document:
            table = document["collaterals"]
            fields = _from_pcs_tool(table, (tee, fmspc, ca), self.update, origin)
        else:
            fields = document
        collateral = TdxCollateral.from_fields(fields, fetched_at=self._clock(), origin=origin)
        collateral.check_matches(fmspc, ca, origin, tee)
        return collateral

    async def _document(self, origin: str) -> dict[str, Any]:
        path = trio.Path(self.path)
        try:
            info = await path.stat()
            stamp = (info.st_mtime_ns, info.st_size)
            if self._loaded is not None and self._loaded.stamp == stamp:
                return self._loaded.document
            text = await path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CollateralError(f"{origin}: cannot read: {exc}") from exc
        document = _json_object(text, origin)
        self._loaded = _Loaded(stamp, document)
        return document


# The PCS client tool's member names of each TEE's TCB info and QE identity.
_PCS_TOOL_MEMBERS = {"tdx": ("tdx_tcbinfo", "tdqeidentity"), "sgx": ("sgx_tcbinfo", "qeidentity")}


def _from_pcs_tool(
    table: Any, request: tuple[str, str, str], update: str, origin: str
) -> dict[str, str]:
    """dcap-qvl form from the JSON written by Intel's PCS client tool; `request` is
    (TEE, FMSPC, CA)."""
    tee, fmspc, ca = request
    tcb_member, qe_member = _PCS_TOOL_MEMBERS[tee]
    if not isinstance(table, dict):
        raise CollateralError(f"{origin}: 'collaterals' is not an object")

    def pick(container: Mapping[str, Any], name: str) -> Any:
        # Early-update documents fall back to the standard ones, as upstream does.
        if update == "early" and container.get(f"{name}_early") is not None:
            return container[f"{name}_early"]
        value = container.get(name)
        if value is None:
            raise CollateralError(f"{origin}: member {name!r} is missing")
        return value

    tcb_entry = next(
        (
            item
            for item in table.get("tcbinfos") or []
            if isinstance(item, dict) and str(item.get("fmspc", "")).upper() == fmspc.upper()
        ),
        None,
    )
    if tcb_entry is None:
        raise CollateralError(f"{origin}: no 'tcbinfos' entry for FMSPC {fmspc.upper()}")
    tcb_info, tcb_sig = _signed_object(pick(tcb_entry, tcb_member), "tcbInfo", origin)
    qe_identity, qe_sig = _signed_object(pick(table, qe_member), "enclaveIdentity", origin)

    certificates = table.get("certificates")
    crls = table.get("pckcacrl")
    if not isinstance(certificates, dict) or not isinstance(crls, dict):
        raise CollateralError(f"{origin}: 'certificates' or 'pckcacrl' is missing")
    pck_chains = certificates.get("SGX-PCK-Certificate-Issuer-Chain")

    def text(name: str, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise CollateralError(f"{origin}: {name} is missing or not a string")
        return value

    pck_chain = text(
        f"certificates.SGX-PCK-Certificate-Issuer-Chain.{ca.upper()}",
        pck_chains.get(ca.upper()) if isinstance(pck_chains, dict) else None,
    )
    pck_crl = text(f"pckcacrl.{ca}Crl", crls.get(f"{ca}Crl"))
    root_crl = text("rootcacrl", table.get("rootcacrl"))
    tcb_chain = text(
        "certificates.TCB-Info-Issuer-Chain", certificates.get("TCB-Info-Issuer-Chain")
    )
    qe_chain = text(
        "certificates.SGX-Enclave-Identity-Issuer-Chain",
        certificates.get("SGX-Enclave-Identity-Issuer-Chain"),
    )
    return {
        "pck_crl_issuer_chain": unquote(pck_chain),
        "root_ca_crl": crl_der(root_crl.encode(), f"{origin}: rootcacrl").hex(),
        "pck_crl": crl_der(pck_crl.encode(), f"{origin}: pckcacrl.{ca}Crl").hex(),
        "tcb_info_issuer_chain": unquote(tcb_chain),
        "tcb_info": tcb_info,
        "tcb_info_signature": tcb_sig,
        "qe_identity_issuer_chain": unquote(qe_chain),
        "qe_identity": qe_identity,
        "qe_identity_signature": qe_sig,
    }


def _signed_object(value: Any, member: str, origin: str) -> tuple[str, str]:
    if isinstance(value, str):
        return signed_document(value, member, f"{origin}: {member}")
    if not isinstance(value, dict) or not isinstance(value.get(member), dict):
        raise CollateralError(f"{origin}: {member!r} document is not an object")
    signature = value.get("signature")
    if not isinstance(signature, str):
        raise CollateralError(f"{origin}: {member!r} document has no string 'signature'")
    # Compact re-serialisation in the served key order reproduces Intel's signed bytes.
    body = json.dumps(value[member], separators=(",", ":"), ensure_ascii=False)
    return body, signature.lower()


def _json_object(text: str, origin: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise CollateralError(f"{origin}: bad JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise CollateralError(f"{origin}: top level is not a JSON object")
    return document


# --------------------------------------------------------------------------- directory


class _MissingFile(Exception):
    def __init__(self, names: tuple[str, ...]) -> None:
        super().__init__(names)
        self.names = names


class DirectorySource:
    def __init__(self, path: str | os.PathLike[str], *, clock: Clock = time.time) -> None:
        self.path = Path(path)
        self._clock = clock

    def __repr__(self) -> str:
        return f"DirectorySource({str(self.path)!r})"

    async def get(self, fmspc: str, ca: str, tee: str = "tdx") -> TdxCollateral:
        check_request(fmspc, ca, f"collateral directory {self.path}", tee)
        # SGX files sit in a subdirectory: Intel's file names do not say the TEE.
        here = self if tee == "tdx" else DirectorySource(self.path / tee, clock=self._clock)
        return await here._get_here(fmspc, ca, tee)

    async def _get_here(self, fmspc: str, ca: str, tee: str) -> TdxCollateral:
        origin = f"collateral directory {self.path}"
        for name in (f"{fmspc.upper()}.json", f"{fmspc.lower()}.json"):
            if await trio.Path(self.path / name).is_file():
                return await BundleFileSource(self.path / name, clock=self._clock).get(
                    fmspc, ca, tee
                )
        try:
            return await self._pieces(fmspc, ca, tee, origin)
        except _MissingFile as exc:
            # Name the whole set: a first-time user learns every file at once, not one per run.
            raise CollateralError(
                f"{origin}: none of {', '.join(exc.names)} exists; it must hold "
                f"{fmspc.upper()}.json, or tcbInfo.json (or tcbInfo-{fmspc.upper()}.json), "
                f"enclaveIdentity.json, tcb_info_issuer_chain.pem, pck_crl_{ca}.der (or .pem), "
                f"pck_crl_issuer_chain_{ca}.pem and root_ca_crl.der (or .pem)"
            ) from None

    async def _pieces(self, fmspc: str, ca: str, tee: str, origin: str) -> TdxCollateral:
        tcb_file = await self._first(f"tcbInfo-{fmspc.upper()}.json", "tcbInfo.json")
        qe_file = await self._first("enclaveIdentity.json")
        tcb_info, tcb_sig = signed_document(
            (await self._read(tcb_file)).decode(errors="replace"), "tcbInfo", str(tcb_file)
        )
        qe_identity, qe_sig = signed_document(
            (await self._read(qe_file)).decode(errors="replace"), "enclaveIdentity", str(qe_file)
        )
        tcb_chain_file = await self._first("tcb_info_issuer_chain.pem")
        qe_chain_file = await self._first(
            "qe_identity_issuer_chain.pem", "tcb_info_issuer_chain.pem"
        )
        pck_chain_file = await self._first(f"pck_crl_issuer_chain_{ca}.pem")
        pck_crl_file = await self._first(f"pck_crl_{ca}.der", f"pck_crl_{ca}.pem")
        root_crl_file = await self._first("root_ca_crl.der", "root_ca_crl.pem")
        fields = {
            "pck_crl_issuer_chain": pem_chain(
                await self._read(pck_chain_file), str(pck_chain_file)
            ),
            "root_ca_crl": crl_der(await self._read(root_crl_file), str(root_crl_file)).hex(),
            "pck_crl": crl_der(await self._read(pck_crl_file), str(pck_crl_file)).hex(),
            "tcb_info_issuer_chain": pem_chain(
                await self._read(tcb_chain_file), str(tcb_chain_file)
            ),
            "tcb_info": tcb_info,
            "tcb_info_signature": tcb_sig,
            "qe_identity_issuer_chain": pem_chain(
                await self._read(qe_chain_file), str(qe_chain_file)
            ),
            "qe_identity": qe_identity,
            "qe_identity_signature": qe_sig,
        }
        collateral = TdxCollateral.from_fields(fields, fetched_at=self._clock(), origin=origin)
        collateral.check_matches(fmspc, ca, f"{origin} ({tcb_file.name}, {pck_crl_file.name})", tee)
        return collateral

    async def _first(self, *names: str) -> Path:
        for name in names:
            candidate = self.path / name
            if await trio.Path(candidate).is_file():
                return candidate
        raise _MissingFile(names)

    async def _read(self, path: Path) -> bytes:
        try:
            return await trio.Path(path).read_bytes()
        except OSError as exc:
            raise CollateralError(f"collateral file {path}: cannot read: {exc}") from exc


# --------------------------------------------------------------------------- PCS / PCCS


class PcsSource:
    def __init__(
        self,
        base_url: str = INTEL_PCS_URL,
        client: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
        *,
        update: str = "early",
        clock: Clock = time.time,
    ) -> None:
        parts = pcs_url_parts(base_url)
        check_update_type(update)
        if not timeout > 0:
            raise ValueError(f"collateral service timeout {timeout!r} is not a positive number")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.is_intel_pcs = parts.hostname == INTEL_PCS_HOST
        self.client = client
        self.timeout = timeout
        self.update = update
        self._clock = clock

    def __repr__(self) -> str:
        return f"PcsSource({self.origin!r})"

    async def get(self, fmspc: str, ca: str, tee: str = "tdx") -> TdxCollateral:
        source = f"collateral service {self.origin}"
        check_request(fmspc, ca, source, tee)
        fmspc = fmspc.upper()
        results: dict[str, Any] = {}

        async def run(name: str, fetch: Callable[[], Any]) -> None:
            try:
                results[name] = await fetch()
            except CollateralError as exc:
                results[name] = exc

        try:
            with trio.fail_after(self.timeout):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(run, "tcb", lambda: self._tcb_info(tee, fmspc, source))
                    nursery.start_soon(run, "qe", lambda: self._qe_identity(tee, source))
                    nursery.start_soon(run, "pck", lambda: self._pck_crl(ca, source))
                    nursery.start_soon(run, "root", lambda: self._root_crl(source))
        except trio.TooSlowError:
            raise CollateralError(
                f"{source}: collateral for FMSPC {fmspc} ({ca} CA) not received within "
                f"{self.timeout:g} s"
            ) from None
        for name in ("tcb", "qe", "pck", "root"):
            if isinstance(results[name], CollateralError):
                raise results[name]
        tcb_info, tcb_sig, tcb_chain = results["tcb"]
        qe_identity, qe_sig, qe_chain = results["qe"]
        pck_crl, pck_chain = results["pck"]
        fields = {
            "pck_crl_issuer_chain": pck_chain,
            "root_ca_crl": results["root"].hex(),
            "pck_crl": pck_crl.hex(),
            "tcb_info_issuer_chain": tcb_chain,
            "tcb_info": tcb_info,
            "tcb_info_signature": tcb_sig,
            "qe_identity_issuer_chain": qe_chain,
            "qe_identity": qe_identity,
            "qe_identity_signature": qe_sig,
        }
        collateral = TdxCollateral.from_fields(fields, fetched_at=self._clock(), origin=source)
        collateral.check_matches(fmspc, ca, source, tee)
        return collateral

    async def _get(self, path: str, params: Mapping[str, str], source: str) -> httpx.Response:
        response = await http_get(
            self.client, self.origin + path, params=params, timeout=self.timeout, source=source
        )
        expect_ok(response, source)
        return response

    async def _tcb_info(self, tee: str, fmspc: str, source: str) -> tuple[str, str, str]:
        response = await self._get(
            f"/{tee}/certification/v4/tcb", {"fmspc": fmspc, "update": self.update}, source
        )
        where = f"{source}: {response.request.url}"
        # PCS v4 names the header TCB-Info-Issuer-Chain; older PCCS builds add an SGX- prefix.
        chain = _chain_header(response, where, "TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain")
        body, signature = signed_document(response.text, "tcbInfo", where)
        return body, signature, chain

    async def _qe_identity(self, tee: str, source: str) -> tuple[str, str, str]:
        response = await self._get(
            f"/{tee}/certification/v4/qe/identity", {"update": self.update}, source
        )
        where = f"{source}: {response.request.url}"
        chain = _chain_header(response, where, "SGX-Enclave-Identity-Issuer-Chain")
        body, signature = signed_document(response.text, "enclaveIdentity", where)
        return body, signature, chain

    async def _pck_crl(self, ca: str, source: str) -> tuple[bytes, str]:
        response = await self._get(
            "/sgx/certification/v4/pckcrl", {"ca": ca, "encoding": "der"}, source
        )
        where = f"{source}: {response.request.url}"
        chain = _chain_header(response, where, "SGX-PCK-CRL-Issuer-Chain")
        return crl_der(response.content, where), chain

    async def _root_crl(self, source: str) -> bytes:
        if self.is_intel_pcs:
            response = await http_get(
                self.client,
                INTEL_ROOT_CA_CRL_URL,
                params=None,
                timeout=self.timeout,
                source=source,
            )
            expect_ok(response, source)
        else:
            response = await self._get("/sgx/certification/v4/rootcacrl", {}, source)
        return crl_der(response.content, f"{source}: {response.request.url}")


def _chain_header(response: httpx.Response, where: str, *names: str) -> str:
    for name in names:
        value = response.headers.get(name)
        if value:
            return pem_chain(unquote(value).encode(), f"{where}: header {name}")
    raise CollateralError(f"{where}: response lacks the {names[0]} header")
