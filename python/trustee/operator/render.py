"""Pure rendering of a KbsConfig custom resource into the objects the operator applies.

The kopf operator and `trustee operator render` share this module, so what a reviewer sees in
GitOps is byte for byte what the operator applies. Nothing here talks to a cluster.

Layout: the blog's `kbs-config.toml` only lines up with trustee-operator v0.3.0's mounts, so
volume names, mount paths and their order follow v0.3.0 (fields added by later releases slot in
where those releases put them). Deliberate differences from v0.3.0:

* An empty or absent `kbsDeploymentType` means AllInOne, as the CRD text says (v0.3.0's code
  picked Microservices). Microservices is refused for now.
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
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import yaml

DEFAULT_IMAGE = "ghcr.io/confidential-containers/trustee-py:latest"
DEFAULT_NAMESPACE = "trustee-operator-system"
ROLLOUT_ANNOTATION = "kbs.confidentialcontainers.org/config-hash"
FINALIZER = "kbsconfig.confidentialcontainers.org/finalizer"

KBSCONFIG_API_VERSION = "confidentialcontainers.org/v1alpha1"
KBSCONFIG_KIND = "KbsConfig"
DEPLOYMENT_NAME = "trustee-deployment"
SERVICE_NAME = "kbs-service"
KBS_PORT = 8080
KBS_COMMAND = ("/usr/local/bin/kbs", "--config-file", "/etc/kbs-config/kbs-config.toml")

# The session key every replica seals and opens session cookies with.
SESSION_KEY_SECRET = "kbs-session-key"
SESSION_KEY_ENV = "KBS_SESSION_KEY_FILE"
_SESSION_KEY_VOLUME = "session-key"
_SESSION_KEY_DIR = "/etc/kbs-session-key"

ALL_IN_ONE = "AllInOneDeployment"
MICROSERVICES = "MicroservicesDeployment"
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")

_CC_ROOT = "/opt/confidential-containers"
_REPOSITORY_DEFAULT = f"{_CC_ROOT}/kbs/repository/default"
_ATTESTATION_POLICY_DIR = f"{_CC_ROOT}/attestation-service/policies/opa"
_REFERENCE_VALUES_DIR = f"{_CC_ROOT}/rvps/reference-values"
_CERT_CACHE_DIR = f"{_CC_ROOT}/attestation-service/kds-store/vcek"
_IBMSE_DIR = "/run/confidential-containers/ibmse/"
_TDX_QCNL = "sgx_default_qcnl.conf"

# Volumes named after user-chosen objects must not take one of these, even when the fixed
# volume itself is not rendered for this CR, so that adding an optional field later never
# renames an existing volume.
_FIXED_VOLUMES = frozenset(
    {
        "confidential-containers",
        "default",
        "kbs-config",
        "attestation-policy",
        "opa",
        "tdx-config",
        "auth-secret",
        "https-key",
        "https-cert",
        "attestation-key",
        "attestation-cert",
        "reference-values",
        _SESSION_KEY_VOLUME,
    }
)

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


class RenderError(ValueError):
    """The KbsConfig cannot be rendered; the message starts with the offending field."""


@dataclass(frozen=True)
class Ref:
    kind: str  # "ConfigMap" | "Secret"
    name: str


@dataclass(frozen=True)
class _Mount:
    volume: dict[str, Any]
    mount: dict[str, Any]
    path: str  # the spec field, for error messages
    ref: Ref | None


@dataclass
class _Plan:
    mounts: list[_Mount] = field(default_factory=list)
    extra_refs: list[Ref] = field(default_factory=list)
    https: bool = False

    def refs(self) -> list[Ref]:
        seen: dict[Ref, None] = {}
        for m in self.mounts:
            if m.ref is not None:
                seen.setdefault(m.ref)
        for ref in self.extra_refs:
            seen.setdefault(ref)
        return list(seen)


class _Reader:
    """Reads spec fields strictly (render) or leniently (referenced).

    referenced() feeds the operator's ConfigMap/Secret watch mapping, which must keep working
    for a CR that render() refuses, so in lenient mode a bad value is skipped, never raised.
    """

    def __init__(self, spec: Mapping[str, Any], strict: bool) -> None:
        self.spec = spec
        self.strict = strict

    def fail(self, message: str) -> None:
        if self.strict:
            raise RenderError(message)

    def section(self, key: str) -> Mapping[str, Any]:
        value = self.spec.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(f"spec.{key}: must be an object, got {type(value).__name__}")
            return {}
        return value

    def name(self, path: str, value: Any, *, required: str | None = None) -> str | None:
        if value is None or value == "":
            if required is not None:
                self.fail(f"{path}: required; {required}")
            return None
        if not isinstance(value, str):
            self.fail(f"{path}: must be a string, got {type(value).__name__}")
            return None
        if len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
            self.fail(f"{path}: {value!r} is not a valid Kubernetes object name")
            return None
        return value


def _spec_of(kbsconfig: Mapping[str, Any], strict: bool) -> Mapping[str, Any]:
    if not isinstance(kbsconfig, Mapping):
        if strict:
            raise RenderError(f"KbsConfig: must be an object, got {type(kbsconfig).__name__}")
        return {}
    spec = kbsconfig.get("spec")
    if spec is None:
        return {}
    if not isinstance(spec, Mapping):
        if strict:
            raise RenderError(f"spec: must be an object, got {type(spec).__name__}")
        return {}
    return spec


def _deployment_type(reader: _Reader) -> str:
    value = reader.spec.get("kbsDeploymentType")
    if value is None or value == "" or value == ALL_IN_ONE:
        return ALL_IN_ONE
    if value == MICROSERVICES:
        reader.fail(
            "spec.kbsDeploymentType: MicroservicesDeployment is not supported yet; "
            "use AllInOneDeployment"
        )
        return MICROSERVICES
    reader.fail(
        f"spec.kbsDeploymentType: {value!r} is not one of {ALL_IN_ONE}, {MICROSERVICES} "
        "(empty means AllInOneDeployment)"
    )
    return ALL_IN_ONE


def _free_volume_name(preferred: str, prefix: str, taken: set[str]) -> str:
    # Object names may contain dots and may equal one of our fixed volume names; volume names
    # must be unique DNS labels. The preferred name (what v0.3.0 used) wins whenever it fits.
    if _DNS_LABEL.fullmatch(preferred) and len(preferred) <= 63 and preferred not in taken:
        return preferred
    digest = hashlib.sha256(preferred.encode()).hexdigest()[:10]
    candidate = f"{prefix}-{digest}"
    n = 1
    while candidate in taken:
        n += 1
        candidate = f"{prefix}-{digest}-{n}"
    return candidate


def _configmap(
    vol: str, cm: str, mount_path: str, path: str, sub_path: str | None = None
) -> _Mount:
    mount: dict[str, Any] = {"name": vol, "mountPath": mount_path}
    if sub_path is not None:
        mount["subPath"] = sub_path
    return _Mount(
        volume={"name": vol, "configMap": {"name": cm}},
        mount=mount,
        path=path,
        ref=Ref("ConfigMap", cm),
    )


def _secret(vol: str, secret: str, mount_path: str, path: str) -> _Mount:
    return _Mount(
        volume={"name": vol, "secret": {"secretName": secret}},
        mount={"name": vol, "mountPath": mount_path},
        path=path,
        ref=Ref("Secret", secret),
    )


def _memory_dir(vol: str, mount_path: str) -> _Mount:
    # Memory-backed so that the KBS's writable state (attestation-service work dir, policies
    # it writes) never lands on node disk.
    return _Mount(
        volume={"name": vol, "emptyDir": {"medium": "Memory"}},
        mount={"name": vol, "mountPath": mount_path},
        path=f"the built-in {vol} volume",
        ref=None,
    )


def _secret_pair(
    reader: _Reader, key_field: str, cert_field: str, what: str
) -> tuple[str, str] | None:
    key = reader.name(f"spec.{key_field}", reader.spec.get(key_field))
    cert = reader.name(f"spec.{cert_field}", reader.spec.get(cert_field))
    if key is not None and cert is not None:
        return key, cert
    if key is not None:
        reader.fail(f"spec.{cert_field}: required when spec.{key_field} is set ({what})")
    if cert is not None:
        reader.fail(f"spec.{key_field}: required when spec.{cert_field} is set ({what})")
    return None


@dataclass(frozen=True)
class _Field:
    """A spec field naming one ConfigMap or Secret, mounted whole (or one key of it)."""

    key: str  # dotted below `spec`: "kbsConfigMapName", "tdxConfigSpec.kbsTdxConfigMapName"
    kind: str  # "ConfigMap" | "Secret"
    volume: str
    mount_path: str
    sub_path: str | None = None
    required: str | None = None  # why the field must be set, when it must

    def add(self, reader: _Reader, plan: _Plan, taken: set[str]) -> None:
        section, _, leaf = self.key.rpartition(".")
        table = reader.section(section) if section else reader.spec
        path = f"spec.{self.key}"
        name = reader.name(path, table.get(leaf), required=self.required)
        if name is None:
            return
        if self.kind == "ConfigMap":
            plan.mounts.append(
                _configmap(self.volume, name, self.mount_path, path, sub_path=self.sub_path)
            )
        else:
            plan.mounts.append(_secret(self.volume, name, self.mount_path, path))


@dataclass(frozen=True)
class _SecretPair:
    """Two Secret fields that only make sense together (a key and its certificate)."""

    key_field: str
    cert_field: str
    what: str  # why both are needed, for the error naming the missing one
    key_mount: tuple[str, str]  # (volume, mount path)
    cert_mount: tuple[str, str]
    https: bool = False

    def add(self, reader: _Reader, plan: _Plan, taken: set[str]) -> None:
        pair = _secret_pair(reader, self.key_field, self.cert_field, self.what)
        if pair is None:
            return
        plan.https = plan.https or self.https
        for (volume, mount_path), name, field_name in (
            (self.key_mount, pair[0], self.key_field),
            (self.cert_mount, pair[1], self.cert_field),
        ):
            plan.mounts.append(_secret(volume, name, mount_path, f"spec.{field_name}"))


class _Step(Protocol):
    def add(self, reader: _Reader, plan: _Plan, taken: set[str]) -> None: ...


@dataclass(frozen=True)
class _Custom:
    """A mount the table cannot describe: a function that adds it."""

    add_mounts: Callable[[_Reader, set[str]], list[_Mount]]

    def add(self, reader: _Reader, plan: _Plan, taken: set[str]) -> None:
        plan.mounts.extend(self.add_mounts(reader, taken))


def _ibmse_mounts(reader: _Reader, taken: set[str]) -> list[_Mount]:
    pvc_path = "spec.ibmSEConfigSpec.certStorePvc"
    pvc = reader.name(pvc_path, reader.section("ibmSEConfigSpec").get("certStorePvc"))
    if pvc is None:
        return []
    vol = _free_volume_name(pvc, "ibmse", taken)
    taken.add(vol)
    return [
        _Mount(
            volume={"name": vol, "persistentVolumeClaim": {"claimName": pvc}},
            mount={"name": vol, "mountPath": _IBMSE_DIR},
            path=pvc_path,
            ref=None,
        )
    ]


def _cert_cache_mounts(reader: _Reader, taken: set[str]) -> list[_Mount]:
    entries = reader.section("kbsLocalCertCacheSpec").get("secrets")
    if entries is None:
        return []
    if not isinstance(entries, list):
        reader.fail("spec.kbsLocalCertCacheSpec.secrets: must be a list of {secretName, mountPath}")
        return []
    out: list[_Mount] = []
    for i, entry in enumerate(entries):
        path = f"spec.kbsLocalCertCacheSpec.secrets[{i}]"
        if not isinstance(entry, Mapping):
            reader.fail(f"{path}: must be an object with secretName and mountPath")
            continue
        secret = reader.name(
            f"{path}.secretName", entry.get("secretName"), required="it names the cache Secret"
        )
        mount_path = entry.get("mountPath") or _CERT_CACHE_DIR
        if not isinstance(mount_path, str) or not mount_path.startswith("/"):
            reader.fail(f"{path}.mountPath: must be an absolute path, got {mount_path!r}")
            continue
        if secret is None:
            continue
        vol = _free_volume_name(secret, "cert-cache", taken)
        taken.add(vol)
        out.append(_secret(vol, secret, mount_path, f"{path}.mountPath"))
    return out


def _secret_resource_mounts(reader: _Reader, taken: set[str]) -> list[_Mount]:
    names = reader.spec.get("kbsSecretResources")
    if names is None:
        return []
    if not isinstance(names, list):
        reader.fail(
            f"spec.kbsSecretResources: must be a list of Secret names, got {type(names).__name__}"
        )
        return []
    out: list[_Mount] = []
    for i, value in enumerate(names):
        path = f"spec.kbsSecretResources[{i}]"
        secret = reader.name(path, value, required="an empty entry names no Secret")
        if secret is None:
            continue
        # Each key of the Secret becomes the resource default/<secret>/<key>.
        vol = _free_volume_name(secret, "resource", taken)
        taken.add(vol)
        out.append(_secret(vol, secret, f"{_REPOSITORY_DEFAULT}/{secret}", path))
    return out


# Every mount a KbsConfig can ask for, in v0.3.0's order (after the two writable directories).
_LAYOUT: tuple[_Step, ...] = (
    _Field(
        "kbsConfigMapName",
        "ConfigMap",
        "kbs-config",
        "/etc/kbs-config",
        required="it names the ConfigMap holding kbs-config.toml",
    ),
    _Field(
        "kbsAttestationPolicyConfigMapName",
        "ConfigMap",
        "attestation-policy",
        _ATTESTATION_POLICY_DIR,
    ),
    _Field("kbsResourcePolicyConfigMapName", "ConfigMap", "opa", f"{_CC_ROOT}/opa"),
    _Field(
        "tdxConfigSpec.kbsTdxConfigMapName",
        "ConfigMap",
        "tdx-config",
        f"/etc/{_TDX_QCNL}",
        sub_path=_TDX_QCNL,
    ),
    _Custom(_ibmse_mounts),
    _Field(
        "kbsAuthSecretName",
        "Secret",
        "auth-secret",
        "/etc/auth-secret",
        required="it names the Secret holding the admin public key",
    ),
    _Custom(_cert_cache_mounts),
    _SecretPair(
        "kbsHttpsKeySecretName",
        "kbsHttpsCertSecretName",
        "HTTPS needs both",
        ("https-key", "/etc/https-key"),
        ("https-cert", "/etc/https-cert"),
        https=True,
    ),
    _SecretPair(
        "kbsAttestationKeySecretName",
        "kbsAttestationCertSecretName",
        "the attestation token signer needs both",
        ("attestation-key", "/etc/attestation-key"),
        ("attestation-cert", "/etc/attestation-cert"),
    ),
    _Custom(_secret_resource_mounts),
    _Field(
        "kbsRvpsRefValuesConfigMapName",
        "ConfigMap",
        "reference-values",
        _REFERENCE_VALUES_DIR,
        required="trustee-operator v0.3.0 always mounts the RVPS reference values ConfigMap",
    ),
)


def _plan(kbsconfig: Mapping[str, Any], strict: bool) -> _Plan:
    reader = _Reader(_spec_of(kbsconfig, strict), strict)
    spec = reader.spec
    deployment_type = _deployment_type(reader)
    plan = _Plan()
    taken = set(_FIXED_VOLUMES)

    # v0.3.0 mounts the whole of /opt/confidential-containers as a writable emptyDir and the
    # `default` repository directory as a second one, so that the per-Secret mounts below can
    # nest inside it while the rest of the repository stays writable.
    plan.mounts.append(_memory_dir("confidential-containers", _CC_ROOT))
    plan.mounts.append(_memory_dir("default", _REPOSITORY_DEFAULT))
    for step in _LAYOUT:
        step.add(reader, plan, taken)

    if deployment_type == MICROSERVICES:
        # Only reachable leniently: the watch mapping should still know these names.
        for key in ("kbsAsConfigMapName", "kbsRvpsConfigMapName"):
            name = reader.name(f"spec.{key}", spec.get(key))
            if name is not None:
                plan.extra_refs.append(Ref("ConfigMap", name))

    if strict:
        _check_unique_mount_paths(plan.mounts)
    return plan


def _check_unique_mount_paths(mounts: list[_Mount]) -> None:
    owners: dict[str, str] = {}
    for m in mounts:
        mount_path = m.mount["mountPath"].rstrip("/") or "/"
        if mount_path in owners:
            raise RenderError(
                f"{m.path}: mount path {m.mount['mountPath']} is already used by "
                f"{owners[mount_path]}"
            )
        owners[mount_path] = m.path


def referenced(kbsconfig: Mapping[str, Any]) -> list[Ref]:
    """Every ConfigMap/Secret the rendered Deployment mounts, in mount order, without repeats.

    Never raises: invalid fields are skipped, so the operator can still map ConfigMap/Secret
    events to a KbsConfig whose render currently fails.
    """
    return _plan(kbsconfig, strict=False).refs()


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


def _probe(scheme: str, initial_delay: int, period: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": "/healthz", "port": KBS_PORT, "scheme": scheme},
        "initialDelaySeconds": initial_delay,
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
    }


def _metadata(name: str, namespace: str, owners: list[dict[str, Any]]) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if owners:
        meta["ownerReferences"] = [dict(o) for o in owners]
    return meta


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
    if not isinstance(namespace, str) or len(namespace) > 63 or not _DNS_LABEL.fullmatch(namespace):
        raise RenderError(f"namespace: {namespace!r} is not a valid namespace name")
    if not isinstance(image, str) or not image.strip():
        raise RenderError("image: must be a non-empty image reference")
    plan = _plan(kbsconfig, strict=True)
    spec = _spec_of(kbsconfig, strict=True)
    env = _env(spec)
    replicas = _replicas(spec)
    service_type = _service_type(spec)
    owners = _owner_references(kbsconfig, namespace)
    scheme = "HTTPS" if plan.https else "HTTP"

    mounts = list(plan.mounts)
    if replicas > 1:
        # Not one of plan.refs(): the operator makes this Secret and never changes it, so it
        # neither gates a reconcile nor counts towards the rollout hash.
        mounts.append(_secret(_SESSION_KEY_VOLUME, SESSION_KEY_SECRET, _SESSION_KEY_DIR, ""))
        if not any(e["name"] == SESSION_KEY_ENV for e in env):
            env.append({"name": SESSION_KEY_ENV, "value": f"{_SESSION_KEY_DIR}/key"})

    container: dict[str, Any] = {
        "name": "kbs",
        "image": image,
        "command": list(KBS_COMMAND),
        "ports": [{"name": "kbs", "containerPort": KBS_PORT, "protocol": "TCP"}],
    }
    if env:
        container["env"] = env
    container["volumeMounts"] = [dict(m.mount) for m in mounts]
    container["readinessProbe"] = _probe(scheme, 5, 10)
    container["livenessProbe"] = _probe(scheme, 15, 30)
    container["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        # Not in v0.3.0: the trustee-py image runs as a non-root numeric USER, so the kubelet
        # can enforce this; a root-running image would be refused at pod start, which is the
        # point.
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }

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
                "spec": {
                    "containers": [container],
                    "volumes": [dict(m.volume) for m in mounts],
                },
            },
        },
    }
    service: dict[str, Any] = {
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
    return [deployment, service]


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
