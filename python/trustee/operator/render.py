"""Pure rendering of a KbsConfig custom resource into the objects the operator applies.

The kopf operator and `trustee operator render` share this module, so what a reviewer sees in
GitOps is byte for byte what the operator applies. Nothing here talks to a cluster.

Layout: the blog's `kbs-config.toml` only lines up with trustee-operator v0.3.0's mounts, so
volume names, mount paths and their order follow v0.3.0 (fields added by later releases slot in
where those releases put them). Deliberate differences from v0.3.0:

* An empty or absent `kbsDeploymentType` means AllInOne, as the CRD text says (v0.3.0's code
  picked Microservices).
* MicroservicesDeployment runs the AS (`grpc-as`, port 50004) and the RVPS (`rvps`, port
  50003) as containers `as` and `rvps` beside `kbs`, from the same image, as v0.3.0 does; but
  the AS, which verifies, gets the verifier's inputs (attestation policy, TDX and IBM SE
  configuration, certificate caches, the token signing key), each service reads its
  configuration from one key of its ConfigMap (`/etc/as-config.json`, `/etc/rvps.json`: a
  missing key is an error when the ConfigMap is at hand), has its own memory-backed working
  directory, and `KbsEnvVars` reach all three. The Service still exposes only the KBS.
* Both the Deployment and the Service carry a controller ownerReference (upstream HEAD does the
  same) so that garbage collection removes them even if a finalizer is lost; the operator's
  finalizer still deletes explicitly. The reference is left out when the KbsConfig lives in
  another namespace: cross-namespace owners are invalid and the garbage collector would delete
  the dependents straight away.
* Env from `KbsEnvVars` is sorted by name, so an unchanged CR renders an unchanged pod template
  (v0.3.0 followed Go map order and rolled the pods on every reconcile).
* With the referenced ConfigMaps/Secrets at hand, the pod template carries a hash of their
  content; any content change then rolls the pods, which v0.3.0 never did.
* HTTPS (and the attestation token key/cert) with only one of the two Secrets named is an error
  rather than a silent fall-back to no mount, because the KBS config would point at files that
  are not there.
* Readiness and liveness probes on `/healthz`, with upstream HEAD's timings.
* With more than one replica the pods share a session key (Secret `kbs-session-key`, made by
  the operator, named to the KBS by `KBS_SESSION_KEY_FILE`): sessions travel sealed in their
  cookie, and a replica can only open cookies sealed under a key it holds.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

import yaml

from trustee.operator.containers import KBS_COMMAND, KBS_PORT, container
from trustee.operator.layout import (
    AS,
    DNS_LABEL,
    KBS,
    MICROSERVICES,
    RVPS,
    SERVICE_TYPES,
    SESSION_KEY_DIR,
    SESSION_KEY_VOLUME,
    Plan,
    Ref,
    RenderError,
    secret_mount,
    spec_of,
)
from trustee.operator.placement import check_keys, plan_mounts, referenced

__all__ = [
    "DEFAULT_IMAGE",
    "DEFAULT_NAMESPACE",
    "DEPLOYMENT_NAME",
    "FINALIZER",
    "KBSCONFIG_API_VERSION",
    "KBSCONFIG_KIND",
    "KBS_COMMAND",
    "KBS_PORT",
    "MICROSERVICES",
    "ROLLOUT_ANNOTATION",
    "SERVICE_NAME",
    "SESSION_KEY_ENV",
    "SESSION_KEY_SECRET",
    "Ref",
    "RenderError",
    "config_hash",
    "referenced",
    "render",
    "session_key_secret",
    "shares_session_key",
    "to_yaml_stream",
]

# The tag deploy/scripts/build-image.sh builds and deploy/operator deploys, so what `trustee
# operator render` prints is what the installed operator would apply.
DEFAULT_IMAGE = "localhost/trustee-py:dev"
DEFAULT_NAMESPACE = "trustee-operator-system"
ROLLOUT_ANNOTATION = "kbs.confidentialcontainers.org/config-hash"
FINALIZER = "kbsconfig.confidentialcontainers.org/finalizer"

KBSCONFIG_API_VERSION = "confidentialcontainers.org/v1alpha1"
KBSCONFIG_KIND = "KbsConfig"
DEPLOYMENT_NAME = "trustee-deployment"
SERVICE_NAME = "kbs-service"

# The session key every replica seals and opens session cookies with.
SESSION_KEY_SECRET = "kbs-session-key"
SESSION_KEY_ENV = "KBS_SESSION_KEY_FILE"


def _recode_base64(value: str) -> str:
    # Hand-written manifests may wrap lines (as `base64` does) where the API server would not.
    try:
        return base64.b64encode(base64.b64decode("".join(value.split()), validate=True)).decode()
    except ValueError:
        return value


def _canonical_secret_data(obj: Mapping[str, Any]) -> dict[str, Any]:
    # The API server folds stringData into data and never returns stringData, while manifests
    # given to `trustee operator render --objects` often use it; folding here makes both sides
    # hash the same content to the same value.
    raw, string_data = obj.get("data") or {}, obj.get("stringData") or {}
    if not isinstance(raw, Mapping) or not isinstance(string_data, Mapping):
        # Malformed; the API server would refuse it. Hash it as given rather than fail.
        return {"data": raw, "stringData": string_data}
    data: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, str):
            value = _recode_base64(value)
        data[key] = value
    for key, value in string_data.items():
        data[key] = base64.b64encode(value.encode()).decode() if isinstance(value, str) else value
    return data


def config_hash(objects: Mapping[Ref, Mapping[str, Any] | None]) -> str:
    """sha256 (hex) over the content of the given ConfigMaps/Secrets, sorted by (kind, name).

    Only data/binaryData (and a Secret's stringData) count: metadata such as resourceVersion or
    labels changes without affecting what the pod sees. A missing object (None) is hashed as
    absent, so its later creation also changes the hash.
    """
    entries: list[dict[str, Any]] = []
    for ref in sorted(objects, key=lambda r: (r.kind, r.name)):
        obj = objects[ref]
        entry: dict[str, Any] = {"kind": ref.kind, "name": ref.name}
        if obj is None:
            entry["absent"] = True
        elif ref.kind == "Secret":
            entry["data"] = _canonical_secret_data(obj)
        else:
            entry["data"] = obj.get("data") or {}
            entry["binaryData"] = obj.get("binaryData") or {}
        entries.append(entry)
    canonical = json.dumps(
        entries, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _env(spec: Mapping[str, Any]) -> list[dict[str, str]]:
    env = spec.get("KbsEnvVars")
    if env is None:
        return []
    if not isinstance(env, Mapping):
        raise RenderError(f"spec.KbsEnvVars: must be a map of strings, got {type(env).__name__}")
    out: list[dict[str, str]] = []
    for name in sorted(env, key=str):
        value = env[name]
        if not isinstance(name, str) or not name or not isinstance(value, str):
            raise RenderError(f"spec.KbsEnvVars.{name}: names and values must be strings")
        out.append({"name": name, "value": value})
    return out


def _replicas(spec: Mapping[str, Any]) -> int:
    section = spec.get("KbsDeploymentSpec")
    if section is None:
        return 1
    if not isinstance(section, Mapping):
        raise RenderError("spec.KbsDeploymentSpec: must be an object")
    value = section.get("replicas")
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**31 - 1:
        raise RenderError(
            f"spec.KbsDeploymentSpec.replicas: must be a non-negative integer, got {value!r}"
        )
    return value


def _service_type(spec: Mapping[str, Any]) -> str:
    value = spec.get("kbsServiceType")
    if value is None or value == "":
        return "ClusterIP"
    if value not in SERVICE_TYPES:
        raise RenderError(
            f"spec.kbsServiceType: {value!r} is not one of {', '.join(SERVICE_TYPES)}"
        )
    return str(value)


def _owner_references(kbsconfig: Mapping[str, Any], namespace: str) -> list[dict[str, Any]]:
    meta = kbsconfig.get("metadata") or {}
    uid, name = meta.get("uid"), meta.get("name")
    if not (isinstance(uid, str) and uid and isinstance(name, str) and name):
        return []
    cr_namespace = meta.get("namespace")
    if cr_namespace and cr_namespace != namespace:
        return []
    api_version = kbsconfig.get("apiVersion") or KBSCONFIG_API_VERSION
    return [
        {
            "apiVersion": api_version,
            "kind": KBSCONFIG_KIND,
            "name": name,
            "uid": uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def _metadata(name: str, namespace: str, owners: list[dict[str, Any]]) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if owners:
        meta["ownerReferences"] = [dict(o) for o in owners]
    return meta


def _service(namespace: str, owners: list[dict[str, Any]], service_type: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(SERVICE_NAME, namespace, owners),
        "spec": {
            "type": service_type,
            "selector": {"app": "kbs"},
            "ports": [
                {"name": "kbs-port", "protocol": "TCP", "port": KBS_PORT, "targetPort": KBS_PORT}
            ],
        },
    }


def _pod_spec(
    plan: Plan, image: str, env: list[dict[str, str]], replicas: int, scheme: str
) -> dict[str, Any]:
    """The containers and their volumes; `env` (from KbsEnvVars) goes to every container."""
    kbs_env = list(env)
    if replicas > 1:
        # Not one of plan.refs(): the operator makes this Secret and never changes it, so it
        # neither gates a reconcile nor counts towards the rollout hash.
        plan.add(secret_mount(SESSION_KEY_VOLUME, SESSION_KEY_SECRET, SESSION_KEY_DIR, ""))
        if not any(e["name"] == SESSION_KEY_ENV for e in env):
            kbs_env.append({"name": SESSION_KEY_ENV, "value": f"{SESSION_KEY_DIR}/key"})
    containers = [container(KBS, image, kbs_env, plan.mounts_of(KBS), scheme)]
    if plan.microservices:
        containers += [
            container(name, image, [dict(e) for e in env], plan.mounts_of(name))
            for name in (AS, RVPS)
        ]
    return {"containers": containers, "volumes": [dict(m.volume) for m in plan.mounts]}


def render(
    kbsconfig: Mapping[str, Any],
    *,
    namespace: str,
    image: str = DEFAULT_IMAGE,
    objects: Mapping[Ref, Mapping[str, Any] | None] | None = None,
) -> list[dict[str, Any]]:
    """The Deployment and Service the operator applies for `kbsconfig` in `namespace`.

    `objects` holds the ConfigMaps/Secrets fetched from the cluster (or read from files). When
    given, the pod template carries ROLLOUT_ANNOTATION, the config_hash of the referenced ones
    (those not in `objects` count as absent; unrelated entries are ignored). When None, no
    annotation is rendered: that is the CR-alone mode of `trustee operator render`.
    """
    if not isinstance(namespace, str) or len(namespace) > 63 or not DNS_LABEL.fullmatch(namespace):
        raise RenderError(f"namespace: {namespace!r} is not a valid namespace name")
    if not isinstance(image, str) or not image.strip():
        raise RenderError("image: must be a non-empty image reference")
    plan = plan_mounts(kbsconfig, strict=True)
    spec = spec_of(kbsconfig, strict=True)
    env = _env(spec)
    replicas = _replicas(spec)
    service_type = _service_type(spec)
    owners = _owner_references(kbsconfig, namespace)
    scheme = "HTTPS" if plan.https else "HTTP"

    if objects is not None:
        check_keys(plan, objects)
    pod = _pod_spec(plan, image, env, replicas, scheme)
    template_meta: dict[str, Any] = {"labels": {"app": "kbs"}}
    if objects is not None:
        relevant = {ref: objects.get(ref) for ref in plan.refs()}
        template_meta["annotations"] = {ROLLOUT_ANNOTATION: config_hash(relevant)}

    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(DEPLOYMENT_NAME, namespace, owners),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "kbs"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": template_meta,
                "spec": pod,
            },
        },
    }
    return [deployment, _service(namespace, owners, service_type)]


def shares_session_key(deployment: Mapping[str, Any]) -> bool:
    """Whether a rendered Deployment mounts the shared session key Secret."""
    volumes = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("volumes", [])
    return any(v.get("secret", {}).get("secretName") == SESSION_KEY_SECRET for v in volumes)


def session_key_secret(namespace: str, deployment: Mapping[str, Any]) -> dict[str, Any]:
    """A Secret holding a fresh 32-byte session key, owned as the Deployment is. The operator
    creates it once and never replaces it: a new key would refuse every session in flight."""
    owners = deployment.get("metadata", {}).get("ownerReferences", [])
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(SESSION_KEY_SECRET, namespace, owners),
        "type": "Opaque",
        "data": {"key": base64.b64encode(base64.b64encode(os.urandom(32))).decode()},
    }


def to_yaml_stream(objs: list[dict[str, Any]]) -> str:
    """A `---`-separated YAML stream keeping each object's key order as built."""
    return yaml.safe_dump_all(
        objs, explicit_start=True, sort_keys=False, default_flow_style=False, width=4096
    )
