"""Attestation (AS) policy store: `<id>.rego` in namespace attestation_service_policy."""

from __future__ import annotations

import re
from importlib import resources

from trustee.policy.engine import CompiledPolicy, PolicyCache, PolicyCompileError
from trustee.storage.kv import NS_AS_POLICY, KeyValueStore

DEFAULT_POLICY_IDS = ("default_cpu", "default_gpu", "default_switch", "default_ppcie")
# v0.11-era configs evaluate CPU evidence with policy id `default` (per-claim rules).
LEGACY_DEFAULT_POLICY_IDS = ("default", "default_gpu", "default_switch", "default_ppcie")
_SHIPPED_FILES = {"default": "default_legacy"}
_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


class PolicyStoreError(Exception):
    pass


def shipped_policy(name: str) -> str:
    filename = _SHIPPED_FILES.get(name, name)
    return resources.files("trustee.policies").joinpath(f"{filename}.rego").read_text()


class AttestationPolicyStore:
    def __init__(
        self,
        store: KeyValueStore,
        cache: PolicyCache,
        *,
        namespace: str = NS_AS_POLICY,
        defaults: tuple[str, ...] = DEFAULT_POLICY_IDS,
    ) -> None:
        self._store = store
        self._cache = cache
        self._ns = namespace
        self._defaults = defaults
        self._compiled: dict[str, CompiledPolicy] = {}

    async def install_defaults(self) -> list[str]:
        """Store the shipped policies that are absent; a stored (edited) one is kept."""
        installed = []
        for pid in self._defaults:
            if await self._store.set(
                self._ns, f"{pid}.rego", shipped_policy(pid).encode(), overwrite=False
            ):
                installed.append(pid)
        return installed

    async def set_policy(self, policy_id: str, text: str) -> CompiledPolicy:
        if not _ID_RE.match(policy_id):
            raise PolicyStoreError(f"invalid policy id {policy_id!r}")
        compiled = self._cache.compile(text)  # raises PolicyCompileError before storing
        await self._store.set(self._ns, f"{policy_id}.rego", text.encode())
        self._compiled[policy_id] = compiled
        return compiled

    async def get(self, policy_id: str) -> CompiledPolicy:
        hit = self._compiled.get(policy_id)
        if hit is not None:
            return hit
        raw = await self._store.get(self._ns, f"{policy_id}.rego")
        if raw is None:
            raise PolicyStoreError(f"Policy `{policy_id}.rego` not found")
        try:
            compiled = self._cache.compile(raw.decode())
        except (PolicyCompileError, UnicodeDecodeError) as exc:
            raise PolicyStoreError(
                f"stored policy `{policy_id}.rego` does not compile: {exc}"
            ) from exc
        self._compiled[policy_id] = compiled
        return compiled

    async def list_ids(self) -> list[str]:
        return [k.removesuffix(".rego") for k in await self._store.list(self._ns)]
