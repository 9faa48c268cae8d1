"""Which handler answers which `/kbs/v0/<endpoint>` and method, and what the route needs: an
admin's authorization, the built-in attestation service, an audit record of the change.
Anything not in the table goes to the plugin of that name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from trustee.kbs import admin, rcar
from trustee.kbs.context import KbsContext
from trustee.kbs.resources import plugin_request
from trustee.kbs.trail import Trail
from trustee.kbs.wire import Reply, Request

Handler = Callable[[KbsContext, Request, list[str], Trail], Awaitable[Reply]]


@dataclass(frozen=True)
class Route:
    handler: Handler
    admin: bool = False  # the caller must be an authorized admin
    needs_as: bool = False  # only with the built-in attestation service (else: a plugin's)
    # The admin change to audit once the handler succeeded: "attestation" or "resource" (a
    # policy), "reference-value"; None when nothing changes.
    audit_kind: str | None = None


ROUTES: dict[tuple[str, str], Route] = {
    ("auth", "POST"): Route(rcar.auth, needs_as=True),
    ("attest", "POST"): Route(rcar.attest, needs_as=True),
    ("attestation-policy", "POST"): Route(
        admin.set_attestation_policy, admin=True, needs_as=True, audit_kind="attestation"
    ),
    ("reference-value", "GET"): Route(admin.get_reference_value, admin=True, needs_as=True),
    ("reference-value", "POST"): Route(
        admin.set_reference_value, admin=True, needs_as=True, audit_kind="reference-value"
    ),
    ("resource-policy", "POST"): Route(
        admin.set_resource_policy, admin=True, audit_kind="resource"
    ),
    ("resource-policy", "GET"): Route(admin.get_resource_policy, admin=True),
    ("policy-explain", "POST"): Route(admin.explain_policy, admin=True),
}


async def dispatch(kbs: KbsContext, req: Request, trail: Trail) -> Reply:
    name, _, rest = req.path.partition("/")
    segments = rest.split("/") if rest else []
    route = ROUTES.get((name, req.method))
    if route is None or (route.needs_as and kbs.attestation is None):
        return await plugin_request(kbs, req, name, segments, trail)
    who = admin.authorize(kbs, req, name) if route.admin else ""
    reply = await route.handler(kbs, req, segments, trail)
    if route.audit_kind is not None:
        await trail.admin_changed(req=req, identity=who, kind=route.audit_kind)
    return reply
