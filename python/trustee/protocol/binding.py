"""Runtime-data binding: RFC 8785 canonical JSON hashed with the negotiated algorithm.

Both sides of protocol 0.4.0 hash JCS(runtime-data) and compare the digest with the report-data
field of the evidence, so the canonical form must be byte-exact on client and server.
"""

from __future__ import annotations

import hashlib
from typing import Any

from trustee import jsonfast

HASH_ALGORITHMS = ("sha256", "sha384", "sha512")


class BindingError(ValueError):
    """The runtime data cannot be canonicalised or the hash algorithm is unknown."""


def canonical_json(value: Any) -> bytes:
    try:
        return jsonfast.canonical(value)
    except ValueError as exc:
        raise BindingError(f"runtime data is not canonicalisable JSON: {exc}") from exc


def digest(algorithm: str, data: bytes) -> bytes:
    name = algorithm.lower()
    if name not in HASH_ALGORITHMS:
        raise BindingError(f"unsupported hash algorithm {algorithm!r}")
    return hashlib.new(name, data).digest()


def runtime_data_digest(runtime_data: Any, algorithm: str = "sha384") -> bytes:
    """The expected report data for a structured runtime-data object."""
    return digest(algorithm, canonical_json(runtime_data))


def primary_runtime_data(tee_pubkey: Any, nonce: str, additional_evidence: str) -> dict[str, Any]:
    """Runtime data bound into the primary evidence (always carries `additional-evidence`)."""
    return {"tee-pubkey": tee_pubkey, "nonce": nonce, "additional-evidence": additional_evidence}


def device_runtime_data(tee_pubkey: Any, nonce: str) -> dict[str, Any]:
    """Runtime data bound into each additional device's evidence."""
    return {"tee-pubkey": tee_pubkey, "nonce": nonce}


def select_hash_algorithm(extra_params: Any) -> str:
    """The client's choice from the challenge's `extra-params` (SHA-384 unless the server says)."""
    if isinstance(extra_params, dict) and "selected-hash-algorithm" in extra_params:
        chosen = extra_params["selected-hash-algorithm"]
        if not isinstance(chosen, str):
            raise BindingError("selected-hash-algorithm must be a string")
        name = chosen.lower()
        if name not in HASH_ALGORITHMS:
            raise BindingError(f"unsupported selected-hash-algorithm {chosen!r}")
        return name
    if isinstance(extra_params, str) or extra_params is None or isinstance(extra_params, dict):
        if isinstance(extra_params, str) and extra_params not in ("",):
            raise BindingError(f"unexpected challenge extra-params {extra_params!r}")
        return "sha384"
    raise BindingError("challenge extra-params must be an object or a string")
