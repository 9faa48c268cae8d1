"""Plugin requests: an admin's writes (authorized, then audited) and a guest's reads (its
attested claims, the resource policy, then the plugin's answer sealed to the guest's key)."""

from __future__ import annotations

from trustee.kbs.admin import authorize
from trustee.kbs.claims import jwe_form
from trustee.kbs.context import KbsContext
from trustee.kbs.trail import Trail
from trustee.kbs.wire import JSON, Reply, Request, compact
from trustee.plugins.base import PluginError, PluginRequest
from trustee.plugins.resource_policy import ResourcePolicyError
from trustee.policy.engine import PolicyEvalError
from trustee.protocol import errors
from trustee.protocol.errors import KbsError
from trustee.protocol.jwe import JweError
from trustee.sealing import seal
from trustee.token.verifier import TokenVerifyError


async def plugin_request(
    kbs: KbsContext, req: Request, name: str, segments: list[str], trail: Trail
) -> Reply:
    plugin = kbs.plugins.get(name)
    if plugin is None:
        raise errors.plugin_not_found(name)
    preq = PluginRequest(method=req.method, path=segments, query=req.query, body=req.body)
    if plugin.is_admin_request(preq):
        who = authorize(kbs, req, name, plugin=True)
        try:
            out = await plugin.handle(preq)
        except PluginError as exc:
            raise errors.plugin_internal_error(str(exc)) from exc
        kbs.metrics.plugin_write(name, req.method, "/".join(segments))
        await trail.admin_changed(req=req, identity=who, kind="admin")
        return Reply(body=out, content_type="text/xml")
    path = f"{name}/{'/'.join(segments)}"
    try:
        attested = await kbs.claims.of(req)
    except KbsError as exc:
        await trail.resource_denied(
            path=path, policy_digest=None, token_ref=None, reason=exc.reason or exc.detail
        )
        raise
    claims, token_ref = attested.claims, attested.token_ref
    document = kbs.resource_policy.document(name, segments, req.query)
    try:
        allowed, _, policy_digest = await kbs.resource_policy.decide(
            claims, document, attested.claims_json
        )
    except (ResourcePolicyError, PolicyEvalError) as exc:
        kbs.metrics.policy_decision("error")
        await trail.resource_denied(
            path=path, policy_digest=None, token_ref=token_ref, reason=str(exc)
        )
        raise errors.policy_engine_error(str(exc)) from exc
    if not allowed:
        kbs.metrics.policy_decision("violation")
        # The same reason path goes to the log line, the audit event and the error body.
        why = await kbs.resource_policy.explain_deny(claims, document)
        await trail.resource_denied(
            path=path, policy_digest=policy_digest, token_ref=token_ref, reason=why
        )
        raise errors.policy_deny(f"{path}: {why}")
    kbs.metrics.policy_decision("approval")
    await trail.resource_released(path=path, policy_digest=policy_digest, token_ref=token_ref)
    kbs.metrics.plugin_read(name, "/".join(segments))
    try:
        out = await plugin.handle(preq)
    except PluginError as exc:
        raise errors.plugin_internal_error(str(exc)) from exc
    if not plugin.encrypted(preq):
        return Reply(body=out, content_type="text/xml")
    try:
        tee_pubkey = kbs.token_verifier.extract_tee_pubkey(claims)
    except TokenVerifyError as exc:
        raise errors.token_verifier_error(exc.reason) from exc
    if tee_pubkey is None:
        raise errors.token_verifier_error("the token carries no TEE public key")
    try:
        sealed = await seal(out, tee_pubkey, form=jwe_form(attested.generation, tee_pubkey))
    except JweError as exc:
        raise errors.jwe_error(str(exc)) from exc
    return Reply(body=compact(sealed), content_type=JSON)
