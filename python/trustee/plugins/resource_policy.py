"""The resource policy: `data.policy.allow` over the token claims and the request document."""

from __future__ import annotations

from importlib import resources
from typing import Any

from trustee.policy.engine import CompiledPolicy, PolicyCache, PolicyCompileError
from trustee.storage.kv import NS_KBS, KeyValueStore

POLICY_ID = "resource-policy"
_KEY = f"{POLICY_ID}.rego"


class ResourcePolicyError(Exception):
    pass


def request_document(plugin: str, path: list[str], query: dict[str, str]) -> dict[str, Any]:
    return {"plugin": plugin, "resource-path": path, "query": query}


class ResourcePolicy:
    def __init__(self, store: KeyValueStore, cache: PolicyCache) -> None:
        self._store = store
        self._cache = cache
        self._compiled: CompiledPolicy | None = None

    async def install_default(self) -> bool:
        text = resources.files("trustee.policies").joinpath("resource_default.rego").read_text()
        return await self._store.set(NS_KBS, _KEY, text.encode(), overwrite=False)

    async def set(self, text: str) -> CompiledPolicy:
        compiled = self._cache.compile(text)  # PolicyCompileError before anything is stored
        await self._store.set(NS_KBS, _KEY, text.encode())
        self._compiled = compiled
        return compiled

    async def ids(self) -> list[str]:
        return [k.removesuffix(".rego") for k in await self._store.list(NS_KBS) if k == _KEY]

    async def current(self) -> CompiledPolicy:
        if self._compiled is None:
            raw = await self._store.get(NS_KBS, _KEY)
            if raw is None:
                raise ResourcePolicyError("no resource policy is stored")
            try:
                self._compiled = self._cache.compile(raw.decode())
            except (PolicyCompileError, UnicodeDecodeError) as exc:
                raise ResourcePolicyError(
                    f"stored resource policy does not compile: {exc}"
                ) from exc
        return self._compiled

    async def allows(self, claims: dict[str, Any], document: dict[str, Any]) -> tuple[bool, str]:
        """(allowed, explanation); explanation names the value the policy produced."""
        policy = await self.current()
        (outcome,) = policy.evaluate(claims, document, ["data.policy.allow"])
        if outcome.kind == "value" and outcome.value is True:
            return True, "data.policy.allow = true"
        if outcome.kind == "value":
            return False, f"data.policy.allow = {outcome.value!r} (policy {policy.digest[:12]})"
        return False, f"data.policy.allow is {outcome.kind} (policy {policy.digest[:12]})"
