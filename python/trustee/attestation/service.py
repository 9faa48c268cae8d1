"""The built-in Attestation Service: verify → claims → per-class policy → EAR token.

Every failure raises AttestationFailure with a reason path (which evidence, which check) so the
KBS can log and audit why a guest was refused even though the wire detail stays fixed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from trustee import _core, jsonfast
from trustee.attestation import ear
from trustee.attestation.backend import Appraised, AttestationFailure, PolicyRefused
from trustee.attestation.hardware import HardwareInputError, HardwareVerifier
from trustee.attestation.initdata import InitDataError, parse_init_data
from trustee.attestation.observers import NoMetrics, VerifierMetrics
from trustee.attestation.policies import (
    CLAIM_RULES,
    TRUST_CLAIMS_RULE,
    AttestationPolicyStore,
    PolicyStoreError,
)
from trustee.attestation.rvps import ReferenceValues, RvpsError
from trustee.config.model import TokenBrokerConfig
from trustee.policy.engine import CompiledPolicy, PolicyCompileError, PolicyEvalError
from trustee.protocol import binding
from trustee.protocol.rcar import EvidenceRequest
from trustee.protocol.tees import verifier_name
from trustee.storage.kv import StorageError

log = logging.getLogger(__name__)

MAX_EVIDENCE_BYTES = 4 << 20  # as the Rust core's bound


__all__ = ["Appraised", "AttestationFailure", "AttestationService"]


def _transform(
    claims: dict[str, Any],
    tee: str,
    runtime_data_claims: Any,
    init_data_claims: Any,
    verbose: bool,
) -> dict[str, Any]:
    """Hoist the binding claims and nest the rest under the TEE's name (upstream's layout)."""
    out: dict[str, Any] = {}
    rest = dict(claims)
    if "init_data" in rest:
        out["init_data"] = rest.pop("init_data")
        out["init_data_claims"] = init_data_claims
    if "report_data" in rest:
        out["report_data"] = rest.pop("report_data")
        rdc = runtime_data_claims
        if not verbose and isinstance(rdc, dict):
            rdc = {k: v for k, v in rdc.items() if k != "additional-evidence"}
        out["runtime_data_claims"] = rdc
    out[tee] = rest
    return dict(sorted(out.items()))


_HEAD_RULES = [TRUST_CLAIMS_RULE, "data.policy.extensions"]
# The v0.11 dialect's per-claim rules are read when `trust_claims` is absent.
_LEGACY_RULES = _HEAD_RULES + list(CLAIM_RULES)


class AttestationService:
    def __init__(
        self,
        policies: AttestationPolicyStore,
        rvps: ReferenceValues,
        broker: ear.EarBroker,
        config: TokenBrokerConfig,
        *,
        legacy: bool = False,
        hardware: HardwareVerifier | None = None,
        metrics: VerifierMetrics | None = None,
    ) -> None:
        self.policies = policies
        self.hardware = hardware or HardwareVerifier()
        self.metrics: VerifierMetrics = metrics or NoMetrics()
        self.rvps = rvps
        self.broker = broker
        self.config = config
        # v0.11-era configuration: submod `cpu`, policy id `default` for CPU evidence, and the
        # per-claim policy dialect with reference values in `data.reference`.
        self.legacy = legacy

    # The AttestationBackend protocol (trustee.attestation.backend), as the KBS uses it.

    where = "built-in"
    signer_fixed = True

    def reissue(self, claims_json: str) -> str | None:
        return self.broker.reissue(claims_json)

    async def set_policy(self, policy_id: str, text: str) -> None:
        try:
            await self.policies.set_policy(policy_id, text, require_claims=True)
        except PolicyCompileError as exc:
            raise PolicyRefused(f"policy {policy_id} does not compile: {exc}") from exc
        except PolicyStoreError as exc:
            raise PolicyRefused(str(exc)) from exc

    async def register_reference_value(self, message: bytes) -> None:
        await self.rvps.register(message)

    async def query_reference_value(self, rv_id: str) -> Any | None:
        return await self.rvps.query(rv_id)

    async def stored_policy(self, policy_id: str) -> CompiledPolicy | None:
        return await self.policies.get(policy_id)

    async def reference_values(self) -> Mapping[str, str] | None:
        return await self.rvps.snapshot()

    async def unready(self) -> str | None:
        return None  # its stores are probed with the KBS's own

    async def evaluate(self, requests: list[EvidenceRequest], policy_ids: list[str]) -> Appraised:
        if not requests:
            raise AttestationFailure("No verification requests provided.")
        if not policy_ids:
            raise AttestationFailure("No policy is given for EAR token generation.")
        policy_id = policy_ids[0]
        try:
            reference_values = await self.rvps.snapshot()
        except (StorageError, RvpsError) as exc:
            raise AttestationFailure(f"reference values: {exc}") from exc
        data = None
        if self.legacy:
            data = {"reference": {k: json.loads(v) for k, v in reference_values.items()}}
        submods: dict[str, dict[str, Any]] = {}
        counters: dict[str, int] = {}
        for index, req in enumerate(requests):
            where = f"evidence[{index}] ({req.tee})"
            for claims, tee_class in await self._verify(req, where):
                n = counters.get(tee_class, 0)
                counters[tee_class] = n + 1
                name = f"{tee_class}{n}"
                class_policy = f"{policy_id}_{tee_class}"
                if self.legacy and tee_class == "cpu" and n == 0:
                    name, class_policy = "cpu", policy_id
                submods[name] = await self._appraise(
                    claims, class_policy, policy_id, reference_values, data, f"{where} → {name}"
                )
        issued = await self.broker.issue_offloaded(submods)
        return Appraised(token=issued.token, claims=issued.claims, claims_json=issued.claims_json)

    async def _verify(self, req: EvidenceRequest, where: str) -> list[tuple[dict[str, Any], str]]:
        expected_rd = req.raw_runtime_data
        if req.runtime_data is not None:
            expected_rd = binding.runtime_data_digest(req.runtime_data, req.hash_algorithm)
        init_digest = req.init_data_digest
        init_claims = None
        if req.init_data_toml is not None:
            try:
                init = parse_init_data(req.init_data_toml)
            except InitDataError as exc:
                raise AttestationFailure(f"{where}: init-data: {exc}") from exc
            init_digest, init_claims = init.digest, init.claims
        evidence = jsonfast.dumps(req.evidence)
        if len(evidence) > MAX_EVIDENCE_BYTES:
            raise AttestationFailure(f"{where}: evidence larger than {MAX_EVIDENCE_BYTES} bytes")
        tee = verifier_name(req.tee)
        started = time.perf_counter()
        try:
            results = await self.hardware.verify_offloaded(tee, evidence, expected_rd, init_digest)
        except HardwareInputError as exc:
            raise AttestationFailure(f"{where}: Verifier evaluate failed: {exc}") from exc
        except _core.VerifierError as exc:
            raise AttestationFailure(f"{where}: Verifier evaluate failed: {exc}") from exc
        self.metrics.verifier_time(tee, time.perf_counter() - started)
        out = []
        for component in results:
            claims = jsonfast.loads_trusted(component.json)
            out.append(
                (
                    _transform(
                        claims,
                        tee,
                        req.runtime_data,
                        init_claims,
                        self.config.verbose_token,
                    ),
                    component.tee_class,
                )
            )
        return out

    async def _appraise(
        self,
        annotated: dict[str, Any],
        class_policy: str,
        policy_id: str,
        reference_values: Mapping[str, str],
        data: dict[str, Any] | None,
        where: str,
    ) -> dict[str, Any]:
        try:
            policy = await self.policies.get(class_policy)
        except PolicyStoreError as exc:
            raise AttestationFailure(f"{where}: {exc}") from exc
        try:
            outcomes = await policy.evaluate_offloaded(
                annotated, data, _LEGACY_RULES if self.legacy else _HEAD_RULES, reference_values
            )
        except PolicyEvalError as exc:
            raise AttestationFailure(f"{where}: policy {class_policy}: {exc}") from exc
        trust, extensions = outcomes[0], outcomes[1]
        trust_claims = trust.value
        if trust.kind == "undefined":
            raise AttestationFailure(
                f"{where}: policy {class_policy}: Trust claims is not an object"
            )
        if trust.kind == "absent" and self.legacy:
            trust_claims = self._per_claim_rules(outcomes[2:], class_policy, where)
        elif trust.kind == "absent":
            log.warning("policy %s has no trust_claims rule; all trust claims are 0", class_policy)
        try:
            vector = ear.trust_vector(trust_claims)
            if extensions.kind == "undefined":
                raise ear.EarError("Policy extensions is not an array (the rule is undefined)")
            ext = ear.validate_extensions(extensions.value if extensions.defined else None)
        except ear.EarError as exc:
            raise AttestationFailure(f"{where}: policy {class_policy}: {exc}") from exc
        result = ear.appraisal(vector, policy_id, annotated, ext)
        self._log_status(result, vector, class_policy, where)
        return result

    @staticmethod
    def _per_claim_rules(outcomes: list[Any], class_policy: str, where: str) -> dict[str, Any]:
        """The v0.11 dialect: one rule per trust claim (`executables`, `hardware`, …)."""
        claims: dict[str, Any] = {}
        for name, outcome in zip(ear.TRUST_CLAIMS, outcomes, strict=True):
            if outcome.kind == "absent":
                continue
            if outcome.kind == "undefined":
                rule = name.replace("-", "_")
                raise AttestationFailure(
                    f"{where}: policy {class_policy}: rule {rule} is undefined"
                )
            claims[name] = outcome.value
        if not claims:
            raise AttestationFailure(
                f"{where}: policy {class_policy}: defines neither trust_claims nor any claim rule"
            )
        return claims

    @staticmethod
    def _log_status(
        result: dict[str, Any], vector: dict[str, int], class_policy: str, where: str
    ) -> None:
        if result["ear.status"] != "affirming" and log.isEnabledFor(logging.DEBUG):
            worst = [k for k, v in vector.items() if ear.tier(v) == result["ear.status"]]
            log.debug(
                "%s: policy %s gave %s (%s)",
                where,
                class_policy,
                result["ear.status"],
                ", ".join(f"{k}={vector[k]}" for k in worst),
            )
