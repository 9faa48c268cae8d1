"""What a verifier configuration may name: collateral services, TCB update types, SNP products.

Kept apart from the sources, and free of HTTP and X.509 imports, so that a configuration is
checked when the server starts while the sources (and their HTTP client) are loaded only when
TDX or SNP evidence first needs them.
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

INTEL_PCS_URL = "https://api.trustedservices.intel.com"
INTEL_PCS_HOST = "api.trustedservices.intel.com"
UPDATE_TYPES = ("early", "standard")

KDS_URL = "https://kdsintf.amd.com"
PRODUCTS = ("Milan", "Genoa", "Turin")


def pcs_url_parts(base_url: str) -> SplitResult:
    """The parts of a PCS/PCCS URL; ValueError unless it is an http(s) URL with a host."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"collateral service URL {base_url!r} is not an http(s) URL")
    return parts


def check_update_type(update: str) -> None:
    if update not in UPDATE_TYPES:
        raise ValueError(f"TCB update type {update!r} is neither 'early' nor 'standard'")


def kds_base_url(base_url: str) -> str:
    """The KDS base URL without a trailing slash; ValueError unless it is an http(s) URL."""
    if not base_url.startswith(("http://", "https://")):
        raise ValueError(f"KDS URL {base_url!r} is not an http(s) URL")
    return base_url.rstrip("/")
