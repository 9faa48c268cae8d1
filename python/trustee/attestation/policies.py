"""Attestation (AS) policy store: `<id>.rego` in namespace attestation_service_policy."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from importlib import resources

from trustee.attestation import ear
from trustee.policy.engine import CompiledPolicy, PolicyCache, PolicyCompileError, PolicyEvalError
from trustee.storage.kv import NS_AS_POLICY, KeyValueStore, StorageError

DEFAULT_POLICY_IDS = ("default_cpu", "default_gpu", "default_switch", "default_ppcie")
# v0.11-era configs evaluate CPU evidence with policy id `default` (per-claim rules).
LEGACY_DEFAULT_POLICY_IDS = ("default", "default_gpu", "default_switch", "default_ppcie")
_SHIPPED_FILES = {"default": "default_legacy"}
log = logging.getLogger(__name__)
_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")

TRUST_CLAIMS_RULE = "data.policy.trust_claims"
# The v0.11-era dialect, before `trust_claims` existed: one rule per trust claim.
CLAIM_RULES = tuple(f"data.policy.{name.replace('-', '_')}" for name in ear.TRUST_CLAIMS)
_CLAIMS_OBJECT = 'an object such as {"executables": 3, "hardware": 2}'


class PolicyStoreError(Exception):
    pass


async def _defined(policy: CompiledPolicy, rules: tuple[str, ...]) -> list[str]:
    """Which of these rule paths the policy has. The engine looks a path up in the policy's own
    rule table before it evaluates anything and answers "absent" from there, so this asks what
    the attestation path asks, whatever the syntax or the shape of the rule heads. A rule that
    exists is evaluated once on an empty input, held to the policy's limits; its value or error
    does not matter (an absent rule never fails)."""
    found = []
    for rule in rules:
        try:
            (outcome,) = await policy.evaluate_offloaded({}, None, [rule])
        except PolicyEvalError:
            found.append(rule)
            continue
        if outcome.kind != "absent":
            found.append(rule)
    return found


def _names(rules: Iterable[str]) -> str:
    return ", ".join(rule.rsplit(".", 1)[1] for rule in rules)


async def missing_claim_rules(policy: CompiledPolicy, per_claim_rules: bool) -> str | None:
    """What an attestation policy lacks to give trust claims, or None. `per_claim_rules`: the
    configuration is of the v0.11 era, whose policies may give one rule per claim instead."""
    if await _defined(policy, (TRUST_CLAIMS_RULE,)):
        return None
    found = await _defined(policy, CLAIM_RULES)
    if per_claim_rules and found:
        return None
    if per_claim_rules:
        return (
            "defines neither `trust_claims` nor a per-claim rule: an attestation policy must "
            f"define {TRUST_CLAIMS_RULE}, {_CLAIMS_OBJECT}, or one rule per claim (executables, "
            "hardware, configuration, …); without them every attestation fails"
        )
    dialect = (
        f"; {_names(found)}: per-claim rules of the v0.11 dialect, read only under a v0.11-era "
        "configuration"
        if found
        else ""
    )
    return (
        f"defines no `trust_claims` rule: an attestation policy must define {TRUST_CLAIMS_RULE}, "
        f"{_CLAIMS_OBJECT}; without it every trust claim is 0 (`none`){dialect}"
    )


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
        per_claim_rules: bool = False,
    ) -> None:
        self._store, self._cache, self._ns = store, cache, namespace
        self._defaults, self._per_claim_rules = defaults, per_claim_rules
        # The text each id was compiled from: an unchanged policy skips decoding and hashing.
        self._compiled: dict[str, tuple[bytes, CompiledPolicy]] = {}

    async def _install(self, pid: str) -> bool:
        # Never overwrites: a stored policy, edited or not, is the one that counts.
        return await self._store.set(
            self._ns, f"{pid}.rego", shipped_policy(pid).encode(), overwrite=False
        )

    async def install_defaults(self) -> list[str]:
        """Store the shipped policies that are absent; a stored (edited) one is kept."""
        installed = []
        for pid in self._defaults:
            try:
                if await self._install(pid):
                    installed.append(pid)
            except StorageError as exc:
                # A read-only policy directory (an operator's ConfigMap at <policy_dir>/opa)
                # is fine as long as the primary policy is there.
                if (
                    pid == self._defaults[0]
                    and await self._store.get(self._ns, f"{pid}.rego") is None
                ):
                    raise
                log.warning("default attestation policy %s not stored: %s", pid, exc)
        return installed

    async def sources(self) -> list[bytes]:
        """The stored text of every policy (a remote RVPS prefetches the ids they name)."""
        texts = []
        for key in await self._store.list(self._ns):
            raw = await self._store.get(self._ns, key)
            if raw is not None:
                texts.append(raw)
        return texts

    async def set_policy(
        self, policy_id: str, text: str, *, require_claims: bool = False
    ) -> CompiledPolicy:
        """Store a policy that compiles; with `require_claims`, only one that gives trust
        claims (an upload: a policy without them would quietly make every claim 0)."""
        if not _ID_RE.match(policy_id):
            raise PolicyStoreError(f"invalid policy id {policy_id!r}")
        compiled = self._cache.compile(text)  # raises PolicyCompileError before storing
        if require_claims:
            missing = await missing_claim_rules(compiled, self._per_claim_rules)
            if missing is not None:
                raise PolicyStoreError(f"policy {policy_id} {missing}")
        await self._store.set(self._ns, f"{policy_id}.rego", text.encode())
        return compiled

    async def get(self, policy_id: str) -> CompiledPolicy:
        # Read every time (the file may be edited behind our back, or by another worker): the
        # stores answer from memory while nothing changed, and the PolicyCache keyed by text
        # digest keeps a changed text seen before from being compiled again.
        raw = await self._store.get(self._ns, f"{policy_id}.rego")
        if raw is None and policy_id in self._defaults:
            raw = await self._reinstall(policy_id)
        if raw is None:
            self._compiled.pop(policy_id, None)
            raise PolicyStoreError(f"Policy `{policy_id}.rego` not found")
        known = self._compiled.get(policy_id)
        if known is not None and known[0] == raw:
            return known[1]
        try:
            compiled = self._cache.compile(raw.decode())
        except (PolicyCompileError, UnicodeDecodeError) as exc:
            raise PolicyStoreError(
                f"stored policy `{policy_id}.rego` does not compile: {exc}"
            ) from exc
        self._compiled[policy_id] = (raw, compiled)
        return compiled

    async def _reinstall(self, policy_id: str) -> bytes | None:
        """A default policy the store lost (a Redis restarted empty, a wiped volume) comes back
        at the first lookup that misses it, without a restart; a user's policy never does."""
        try:
            if await self._install(policy_id):
                log.warning(
                    "default attestation policy %s was missing from storage; re-installed the "
                    "shipped one",
                    policy_id,
                )
        except StorageError as exc:
            log.warning(
                "default attestation policy %s missing and not re-installed: %s", policy_id, exc
            )
            return None
        # Read back: another worker may have stored it first.
        return await self._store.get(self._ns, f"{policy_id}.rego")

    async def text(self, policy_id: str) -> str:
        """The stored Rego text of `policy_id`; PolicyStoreError when it is absent."""
        if not _ID_RE.match(policy_id):
            raise PolicyStoreError(f"invalid policy id {policy_id!r}")
        raw = await self._store.get(self._ns, f"{policy_id}.rego")
        if raw is None and policy_id in self._defaults:
            raw = await self._reinstall(policy_id)
        if raw is None:
            raise PolicyStoreError(f"Policy `{policy_id}.rego` not found")
        try:
            return raw.decode()
        except UnicodeDecodeError as exc:
            raise PolicyStoreError(f"Policy `{policy_id}.rego` is not UTF-8 text") from exc

    async def list_ids(self) -> list[str]:
        return [k.removesuffix(".rego") for k in await self._store.list(self._ns)]
