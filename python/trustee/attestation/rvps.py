"""Built-in Reference Value Provider Service: register messages, query values by id.

Records are stored as upstream does (`{version, name, expiration, value}` in namespace
`reference_value`). Policies query synchronously from inside Rego evaluation, so values are
served from an in-process snapshot, rebuilt from storage after this process registers values and
whenever the store says the namespace changed (another worker's write, an edited file).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any, Protocol

from trustee.protocol import limits
from trustee.storage.kv import NS_REFERENCE_VALUE, KeyValueStore, StorageError

MESSAGE_VERSION = "0.1.0"


class RvpsError(Exception):
    pass


class ReferenceValues(Protocol):
    """An RVPS as the Attestation Service and the admin API use it: this process's store
    (ReferenceValueStore) or a remote RVPS (trustee.remote_as.rvps_client)."""

    async def register(self, message: bytes) -> list[str]:
        """Store the values a provenance message carries; the ids stored, when known."""
        ...

    async def query(self, rv_id: str) -> Any | None: ...

    async def snapshot(self) -> dict[str, str]:
        """id → JSON text, for the synchronous lookups of policy evaluation."""
        ...


def _expiration(now: datetime) -> str:
    year, month = (now.year + 1, now.month)
    day = min(now.day, 28) if month == 2 else now.day
    return now.replace(year=year, month=month, day=day, microsecond=0).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def extract_sample(payload: str) -> dict[str, Any]:
    try:
        doc = limits.loads(base64.b64decode(payload, validate=True), "sample payload")
    except (binascii.Error, ValueError) as exc:
        raise RvpsError(f"sample payload is not base64 of JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise RvpsError("sample payload must be a JSON object of name → value")
    return doc


EXTRACTORS = {"sample": extract_sample}


class ReferenceValueStore:
    def __init__(self, store: KeyValueStore) -> None:
        self._store = store
        self._snapshot: dict[str, str] | None = None
        self._stamp: object = None
        self._version: int | None = None

    async def register(self, message: bytes) -> list[str]:
        try:
            doc = limits.loads(message, "reference value message")
        except ValueError as exc:
            raise RvpsError(
                f"Failed to register reference value: message is not JSON: {exc}"
            ) from exc
        if not isinstance(doc, dict):
            raise RvpsError("Failed to register reference value: message is not a JSON object")
        version = doc.get("version", MESSAGE_VERSION)
        if version != MESSAGE_VERSION:
            raise RvpsError(
                f"Failed to register reference value: message version {version!r} "
                f"is not {MESSAGE_VERSION}"
            )
        kind, payload = doc.get("type"), doc.get("payload")
        if not isinstance(kind, str) or not isinstance(payload, str):
            raise RvpsError("Failed to register reference value: `type` and `payload` strings")
        extractor = EXTRACTORS.get(kind)
        if extractor is None:
            raise RvpsError(
                f"Failed to register reference value: Could not find extractor for {kind}"
            )
        try:
            values = extractor(payload)
        except RvpsError as exc:
            raise RvpsError(f"Failed to register reference value: {exc}") from exc
        expiration = _expiration(datetime.now(UTC))
        for name, value in values.items():
            record = {
                "version": MESSAGE_VERSION,
                "name": name,
                "expiration": expiration,
                "value": value,
            }
            try:
                await self._store.set(NS_REFERENCE_VALUE, name, json.dumps(record).encode())
            except StorageError as exc:
                raise RvpsError(f"Failed to register reference value: {exc}") from exc
        self._snapshot = None
        return sorted(values)

    async def query(self, rv_id: str) -> Any | None:
        raw = await self._store.get(NS_REFERENCE_VALUE, rv_id)
        if raw is None:
            return None
        return _record_value(raw, rv_id)

    async def snapshot(self) -> dict[str, str]:
        """id → JSON text of every value, for synchronous lookups during policy evaluation."""
        stamp = getattr(self._store, "stamp", None)
        if callable(stamp):
            # A store edited from outside (a mounted file) says when it changed.
            current = stamp()
            if current != self._stamp:
                self._snapshot, self._stamp = None, current
        version = getattr(self._store, "version", None)
        if callable(version):
            # A shared store (PostgreSQL, Redis, a LocalFs directory) counts changes made by
            # any worker or replica.
            seen = await version(NS_REFERENCE_VALUE)
            if seen != self._version:
                self._snapshot, self._version = None, seen
        if self._snapshot is None:
            values: dict[str, str] = {}
            for key in await self._store.list(NS_REFERENCE_VALUE):
                raw = await self._store.get(NS_REFERENCE_VALUE, key)
                if raw is not None:
                    values[key] = json.dumps(_record_value(raw, key))
            self._snapshot = values
        return self._snapshot


def _record_value(raw: bytes, rv_id: str) -> Any:
    try:
        record = json.loads(raw)
        return record["value"]
    except (ValueError, KeyError, TypeError) as exc:
        raise RvpsError(f"stored reference value {rv_id!r} is corrupt: {exc}") from exc
