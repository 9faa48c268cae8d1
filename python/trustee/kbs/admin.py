"""The admin API's own endpoints: attestation and resource policies, reference values, and
policy explanations. Who may call them is decided before (`authorize`)."""

from __future__ import annotations

import base64
import logging
from typing import Any

import trio

from trustee.admin.auth import AdminDenied
from trustee.attestation.backend import AttestationBackend, PolicyRefused
from trustee.attestation.policies import PolicyStoreError
from trustee.attestation.rvps import RvpsError
from trustee.kbs.context import KbsContext
from trustee.kbs.trail import Trail
from trustee.kbs.wire import JSON, Reply, Request, b64url_text, compact
from trustee.policy.engine import CompiledPolicy, PolicyCompileError, PolicyEvalError
from trustee.policy.explain import explain, reason_path
from trustee.protocol import errors, limits
from trustee.storage.kv import StorageError

log = logging.getLogger("trustee.kbs")


def authorize(kbs: KbsContext, req: Request, endpoint: str, plugin: bool = False) -> str:
    """Who the admin request comes from, or the refusal (in the configured error dialect)."""
    try:
        identity = kbs.admin.authorize(req.headers, req.uri, req.peer_is_loopback)
    except AdminDenied as exc:
        if kbs.config.admin.legacy_errors:
            raise errors.admin_auth_legacy(exc.reason) from exc
        if plugin:
            raise errors.admin_denied_plugin(exc.reason) from exc
        raise errors.admin_denied(endpoint, exc.reason) from exc
    who = identity.describe()
    log.info("admin %s %s by %s", req.method, req.uri, who)
    return who


async def set_attestation_policy(
    kbs: KbsContext, req: Request, rest: list[str], trail: Trail
) -> Reply:
    assert kbs.attestation is not None
    try:
        doc = limits.loads(req.body, "attestation-policy body")
        if not isinstance(doc, dict):
            raise ValueError("body is not a JSON object")
        policy_id = doc.get("policy_id")
        if not isinstance(policy_id, str):
            raise ValueError("`policy_id` is missing or not a string")
        text = b64url_text(doc.get("policy"), "policy")
    except ValueError as exc:
        raise errors.set_policy_failed(f"attestation-policy body: {exc}") from exc
    try:
        await kbs.attestation.set_policy(policy_id, text)
    except PolicyRefused as exc:
        raise errors.set_policy_failed(str(exc)) from exc
    return Reply()


async def set_resource_policy(
    kbs: KbsContext, req: Request, rest: list[str], trail: Trail
) -> Reply:
    try:
        doc = limits.loads(req.body, "resource-policy body")
        if not isinstance(doc, dict):
            raise ValueError("body is not a JSON object")
        text = b64url_text(doc.get("policy"), "policy")
    except ValueError as exc:
        raise errors.parse_policy_error(str(exc)) from exc
    try:
        await kbs.resource_policy.set(text)
    except PolicyCompileError as exc:
        raise errors.policy_engine_error(f"resource policy does not compile: {exc}") from exc
    except StorageError as exc:
        raise errors.policy_engine_error(f"resource policy not stored: {exc}") from exc
    return Reply()


async def get_resource_policy(
    kbs: KbsContext, req: Request, rest: list[str], trail: Trail
) -> Reply:
    if kbs.resource_policy.legacy:
        # ≤v0.18 answered with the policy itself, base64url without padding.
        text = await kbs.resource_policy.text()
        if text is None:
            raise errors.policy_engine_error("no resource policy is stored")
        encoded = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
        return Reply(body=encoded.encode(), content_type="text/xml")
    return Reply(body=compact(await kbs.resource_policy.ids()), content_type=JSON)


async def explain_policy(kbs: KbsContext, req: Request, rest: list[str], trail: Trail) -> Reply:
    """Evaluate a candidate (or the stored) policy against given claims; nothing is issued,
    released or stored. Body: {"kind": "resource" | "attestation", "policy"?: base64url
    Rego, "policy_id"?: stored attestation policy, "input": {...}, "data"?: {...},
    "resource_path"?: "repo/type/tag", "rules"?: [...]}."""
    try:
        doc = limits.loads(req.body, "policy-explain body")
        if not isinstance(doc, dict):
            raise ValueError("body is not a JSON object")
        kind = doc.get("kind", "resource")
        if kind not in ("resource", "attestation"):
            raise ValueError("`kind` must be 'resource' or 'attestation'")
        input_doc = doc.get("input", {})
        rules = doc.get("rules")
        if rules is not None and not (
            isinstance(rules, list) and all(isinstance(r, str) for r in rules)
        ):
            raise ValueError("`rules` must be a list of rule paths")
        text = b64url_text(doc["policy"], "policy") if "policy" in doc else None
    except ValueError as exc:
        raise errors.policy_engine_error(f"policy-explain body: {exc}") from exc
    data_doc = doc.get("data")
    lookup = None
    try:
        if kind == "resource":
            policy = (
                kbs.resource_policy.cache.compile(text)
                if text is not None
                else await kbs.resource_policy.current()
            )
            if data_doc is None and isinstance(doc.get("resource_path"), str):
                parts = doc["resource_path"].split("/")
                data_doc = kbs.resource_policy.document("resource", parts, {})
            rules = rules or ["data.policy.allow"]
        else:
            if kbs.attestation is None:
                raise errors.policy_engine_error("this KBS has no attestation service")
            policy = await _attestation_policy(kbs.attestation, text, doc, kbs)
            values = await kbs.attestation.reference_values()
            lookup = None if values is None else values.get
            rules = rules or ["data.policy.trust_claims", "data.policy.extensions"]
        # Explaining runs the policy, up to its time limit: never on the event loop.
        result = await trio.to_thread.run_sync(explain, policy, input_doc, data_doc, rules, lookup)
    except (PolicyCompileError, PolicyEvalError, PolicyStoreError) as exc:
        raise errors.policy_engine_error(f"policy-explain: {exc}") from exc
    result["reason"] = reason_path(result)
    return Reply(body=compact(result), content_type=JSON)


async def _attestation_policy(
    service: AttestationBackend, text: str | None, doc: dict[str, Any], kbs: KbsContext
) -> CompiledPolicy:
    """The candidate policy given, else the stored one the AS lets us read."""
    if text is not None:
        return kbs.resource_policy.cache.compile(text)
    policy_id = str(doc.get("policy_id", "default_cpu"))
    stored = await service.stored_policy(policy_id)
    if stored is None:
        raise errors.policy_engine_error(
            f"policy-explain: attestation policy {policy_id} is kept by the Attestation Service "
            f"({service.where}); send the policy to explain as `policy`"
        )
    return stored


async def set_reference_value(
    kbs: KbsContext, req: Request, rest: list[str], trail: Trail
) -> Reply:
    assert kbs.attestation is not None
    try:
        await kbs.attestation.register_reference_value(req.body)
    except RvpsError as exc:
        raise errors.rvps_error(str(exc)) from exc
    return Reply(content_type=JSON)


async def get_reference_value(
    kbs: KbsContext, req: Request, rest: list[str], trail: Trail
) -> Reply:
    assert kbs.attestation is not None
    rv_id = "/".join(rest)
    try:
        value = await kbs.attestation.query_reference_value(rv_id)
    except RvpsError as exc:
        raise errors.rvps_error(f"Failed to get reference_values: {exc}") from exc
    if value is None:
        raise errors.rvps_error(
            f"Failed to get reference_values: No reference value found for the given id: {rv_id}"
        )
    return Reply(body=compact(value), content_type=JSON)
