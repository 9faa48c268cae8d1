"""The resource policy: `data.policy.allow` over the token claims and the request document.

Two homes, by config generation: HEAD keeps it in the KV store (`kbs/resource-policy.rego`);
v0.11–v0.18 configs name a file (`[policy_engine] policy_path`) that is re-read when it changes,
so an operator can edit a mounted ConfigMap without a restart.
"""

from __future__ import annotations

import copy
import logging
import os
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import trio

from trustee.policy.engine import (
    CompiledPolicy,
    PolicyCache,
    PolicyCompileError,
    PolicyEvalError,
    PolicyLimitError,
)
from trustee.policy.explain import explain, reason_path
from trustee.storage.atomic import remove_orphans, write_atomically
from trustee.storage.kv import NS_KBS, KeyValueStore, StorageError
from trustee.storage.localfs import Stamp, settled, stamp_or_none

log = logging.getLogger(__name__)

POLICY_ID = "resource-policy"
_KEY = f"{POLICY_ID}.rego"


class ResourcePolicyError(Exception):
    pass


def request_document(plugin: str, path: list[str], query: dict[str, str]) -> dict[str, Any]:
    return {"plugin": plugin, "resource-path": path, "query": query}


def legacy_request_document(plugin: str, path: list[str]) -> dict[str, Any]:
    # v0.11–v0.16: one string, the request path after /kbs/v0/ (plugin name included).
    return {"resource-path": "/".join([plugin, *path])}


def with_submod_aliases(claims: dict[str, Any]) -> dict[str, Any]:
    """Policy input where `submods.cpu` and `submods.cpu0` both exist when either does."""
    submods = claims.get("submods")
    if not isinstance(submods, dict):
        return claims
    missing = {"cpu": "cpu0", "cpu0": "cpu"}
    aliases = {
        alias: submods[name]
        for alias, name in missing.items()
        if alias not in submods and name in submods
    }
    if not aliases:
        return claims
    out = copy.copy(claims)
    out["submods"] = {**submods, **aliases}
    return out


class PolicySource(Protocol):
    async def read(self) -> str | None: ...

    async def write(self, text: str) -> None: ...

    async def write_if_absent(self, text: str) -> bool: ...


class KvPolicySource:
    def __init__(self, store: KeyValueStore) -> None:
        self._store = store

    async def read(self) -> str | None:
        raw = await self._store.get(NS_KBS, _KEY)
        return None if raw is None else raw.decode()

    async def write(self, text: str) -> None:
        await self._store.set(NS_KBS, _KEY, text.encode())

    async def write_if_absent(self, text: str) -> bool:
        return await self._store.set(NS_KBS, _KEY, text.encode(), overwrite=False)

    async def version(self) -> int | None:
        """The namespace's change counter where other processes may write (PostgreSQL, Redis,
        a LocalFs directory), else None."""
        counter = getattr(self._store, "version", None)
        return await counter(NS_KBS) if callable(counter) else None


class FilePolicySource:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        remove_orphans(self.path.parent, 1)

    async def read(self) -> str | None:
        def read() -> str | None:
            try:
                return self.path.read_text()
            except FileNotFoundError:
                return None

        return await trio.to_thread.run_sync(read)

    def stamp(self) -> Stamp | None:
        return stamp_or_none(os.fspath(self.path))

    async def write(self, text: str) -> None:
        try:
            await trio.to_thread.run_sync(write_atomically, self.path, text.encode())
        except OSError as exc:
            raise StorageError(f"cannot write {self.path}: {exc.strerror}") from exc

    async def write_if_absent(self, text: str) -> bool:
        if self.path.exists():
            return False
        await self.write(text)
        return True


class ResourcePolicy:
    def __init__(
        self,
        source: PolicySource,
        cache: PolicyCache,
        *,
        legacy: bool = False,
        submod_alias: bool = True,
    ) -> None:
        self._source = source
        self._cache = cache
        self.cache = cache  # for candidate policies (policy-explain): compiled, never stored
        self.legacy = legacy
        self.submod_alias = submod_alias
        self._compiled: CompiledPolicy | None = None
        self._stamp: Stamp | None = None
        self._version: int | None = None

    async def install_default(self) -> bool:
        name = "resource_default_legacy.rego" if self.legacy else "resource_default.rego"
        text = resources.files("trustee.policies").joinpath(name).read_text()
        return await self._source.write_if_absent(text)

    async def _reinstall_default(self) -> str | None:
        """The store lost the policy (a Redis restarted empty): the shipped default comes back
        without a restart, as it would at start-up; a policy stored meanwhile is kept."""
        try:
            if await self.install_default():
                log.warning("resource policy was missing from storage; re-installed the default")
            return await self._source.read()
        except (UnicodeDecodeError, StorageError) as exc:
            raise ResourcePolicyError(f"no resource policy is stored: {exc}") from exc

    async def set(self, text: str) -> CompiledPolicy:
        compiled = self._cache.compile(text)  # PolicyCompileError before anything is stored
        await self._source.write(text)
        self._compiled = compiled
        self._stamp = None
        return compiled

    async def text(self) -> str | None:
        return await self._source.read()

    async def ids(self) -> list[str]:
        return [POLICY_ID] if await self._source.read() is not None else []

    async def current(self) -> CompiledPolicy:
        if isinstance(self._source, FilePolicySource):
            # The file may be edited behind our back (a ConfigMap); recompile when it changes.
            stamp = self._source.stamp()
            if stamp != self._stamp or not settled(stamp):
                self._compiled, self._stamp = None, stamp
        elif isinstance(self._source, KvPolicySource):
            # Another worker or replica may have set a new policy in the shared store.
            try:
                version = await self._source.version()
            except StorageError as exc:
                raise ResourcePolicyError(f"cannot read the resource policy: {exc}") from exc
            if version != self._version:
                self._compiled, self._version = None, version
        if self._compiled is None:
            try:
                text = await self._source.read()
            except (OSError, UnicodeDecodeError, StorageError) as exc:
                raise ResourcePolicyError(f"cannot read the resource policy: {exc}") from exc
            if text is None and isinstance(self._source, KvPolicySource):
                # A file the operator removed stays an error; a store that lost its data
                # gets what a restart would install.
                text = await self._reinstall_default()
            if text is None:
                raise ResourcePolicyError("no resource policy is stored")
            try:
                self._compiled = self._cache.compile(text)
            except PolicyCompileError as exc:
                raise ResourcePolicyError(
                    f"stored resource policy does not compile: {exc}"
                ) from exc
        return self._compiled

    def document(self, plugin: str, path: list[str], query: dict[str, str]) -> dict[str, Any]:
        if self.legacy:
            return legacy_request_document(plugin, path)
        return request_document(plugin, path, query)

    async def allows(
        self, claims: dict[str, Any], document: dict[str, Any], claims_json: str | None = None
    ) -> tuple[bool, str]:
        """(allowed, explanation); see `decide`."""
        allowed, why, _digest = await self.decide(claims, document, claims_json)
        return allowed, why

    async def explain_deny(self, claims: dict[str, Any], document: dict[str, Any]) -> str:
        """The reason path of a deny: which rule definition failed at which expression."""
        policy = await self.current()
        policy_input = with_submod_aliases(claims) if self.submod_alias else claims
        try:
            # Explaining re-runs the policy, up to its time limit: never on the event loop.
            result = await trio.to_thread.run_sync(
                explain, policy, policy_input, document, ["data.policy.allow"]
            )
        except PolicyEvalError as exc:
            return f"data.policy.allow: explanation failed: {exc}"
        return f"{reason_path(result)} (policy {policy.digest[:12]})"

    async def decide(
        self, claims: dict[str, Any], document: dict[str, Any], claims_json: str | None = None
    ) -> tuple[bool, str, str]:
        """(allowed, explanation, policy digest); explanation names the value the policy
        produced.

        `claims_json`, when given, is the JSON text of `claims` (saves serialising them again).

        Raises ResourcePolicyError where the policy gives no boolean and the configured
        generation treats that as an engine error (v0.11–v0.16) rather than a deny.
        """
        policy = await self.current()
        if self.submod_alias:
            policy_input, claims_json = with_submod_aliases(claims), None
        else:
            policy_input = claims
        try:
            (outcome,) = await policy.evaluate_offloaded(
                policy_input, document, ["data.policy.allow"], input_json=claims_json
            )
        except PolicyLimitError as exc:
            raise PolicyLimitError(f"resource policy {policy.digest[:12]}: {exc}") from exc
        if outcome.kind == "value" and outcome.value is True:
            return True, "data.policy.allow = true", policy.digest
        if outcome.kind == "value" and outcome.value is False:
            return False, f"data.policy.allow = false (policy {policy.digest[:12]})", policy.digest
        produced = outcome.kind if outcome.kind != "value" else repr(outcome.value)
        what = f"data.policy.allow is {produced}"
        if self.legacy:
            raise ResourcePolicyError(f"{what}, not a boolean (policy {policy.digest[:12]})")
        return False, f"{what} (policy {policy.digest[:12]})", policy.digest
