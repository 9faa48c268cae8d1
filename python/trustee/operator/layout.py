"""Which volumes and mounts a KbsConfig's fields ask for, and which container each goes to: the
spec read strictly (render) or leniently (the operator's watch mapping), in trustee-operator
v0.3.0's order and layout. `placement` assembles them into a plan."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

SESSION_KEY_VOLUME = "session-key"
SESSION_KEY_DIR = "/etc/kbs-session-key"

ALL_IN_ONE = "AllInOneDeployment"
MICROSERVICES = "MicroservicesDeployment"
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")

# The pod's containers: the KBS alone (AllInOne), or with the AS and the RVPS beside it.
KBS = "kbs"
AS = "as"
RVPS = "rvps"

# Where the AS and the RVPS read their configuration (upstream's docker-compose paths), and
# the ConfigMap keys that hold it (upstream trustee-operator's).
AS_CONFIG_FILE = "/etc/as-config.json"
AS_CONFIG_KEY = "as-config.json"
RVPS_CONFIG_FILE = "/etc/rvps.json"
RVPS_CONFIG_KEY = "rvps-config.json"

CC_ROOT = "/opt/confidential-containers"
REPOSITORY_DEFAULT = f"{CC_ROOT}/kbs/repository/default"
ATTESTATION_POLICY_DIR = f"{CC_ROOT}/attestation-service/policies/opa"
REFERENCE_VALUES_DIR = f"{CC_ROOT}/rvps/reference-values"
_CERT_CACHE_DIR = f"{CC_ROOT}/attestation-service/kds-store/vcek"
_IBMSE_DIR = "/run/confidential-containers/ibmse/"
_TDX_QCNL = "sgx_default_qcnl.conf"

# Volumes named after user-chosen objects must not take one of these, even when the fixed
# volume itself is not rendered for this CR, so that adding an optional field later never
# renames an existing volume.
FIXED_VOLUMES = frozenset(
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
        "as-config",
        "rvps-config",
        "as-data",
        "rvps-data",
        SESSION_KEY_VOLUME,
    }
)

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


class RenderError(ValueError):
    """The KbsConfig cannot be rendered; the message starts with the offending field."""


@dataclass(frozen=True)
class Ref:
    kind: str  # "ConfigMap" | "Secret"
    name: str


@dataclass(frozen=True)
class Mount:
    volume: dict[str, Any]
    mount: dict[str, Any]
    path: str  # the spec field, for error messages
    ref: Ref | None
    containers: tuple[str, ...] = (KBS,)


@dataclass
class Plan:
    microservices: bool = False
    mounts: list[Mount] = field(default_factory=list)
    https: bool = False

    def add(self, mount: Mount, microservices_in: tuple[str, ...] = (KBS,)) -> None:
        """Add a mount; ``microservices_in`` names the containers that get it in a
        MicroservicesDeployment (AllInOne has the kbs container only)."""
        if self.microservices:
            mount = replace(mount, containers=microservices_in)
        self.mounts.append(mount)

    def refs(self) -> list[Ref]:
        seen: dict[Ref, None] = {}
        for m in self.mounts:
            if m.ref is not None:
                seen.setdefault(m.ref)
        return list(seen)

    def mounts_of(self, container: str) -> list[dict[str, Any]]:
        return [dict(m.mount) for m in self.mounts if container in m.containers]


class Reader:
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
        if len(value) > 253 or not DNS_SUBDOMAIN.fullmatch(value):
            self.fail(f"{path}: {value!r} is not a valid Kubernetes object name")
            return None
        return value


def spec_of(kbsconfig: Mapping[str, Any], strict: bool) -> Mapping[str, Any]:
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


def deployment_type(reader: Reader) -> str:
    value = reader.spec.get("kbsDeploymentType")
    if value is None or value == "" or value == ALL_IN_ONE:
        return ALL_IN_ONE
    if value == MICROSERVICES:
        return MICROSERVICES
    reader.fail(
        f"spec.kbsDeploymentType: {value!r} is not one of {ALL_IN_ONE}, {MICROSERVICES} "
        "(empty means AllInOneDeployment)"
    )
    return ALL_IN_ONE


def _free_volume_name(preferred: str, prefix: str, taken: set[str]) -> str:
    # Object names may contain dots and may equal one of our fixed volume names; volume names
    # must be unique DNS labels. The preferred name (what v0.3.0 used) wins whenever it fits.
    if DNS_LABEL.fullmatch(preferred) and len(preferred) <= 63 and preferred not in taken:
        return preferred
    digest = hashlib.sha256(preferred.encode()).hexdigest()[:10]
    candidate = f"{prefix}-{digest}"
    n = 1
    while candidate in taken:
        n += 1
        candidate = f"{prefix}-{digest}-{n}"
    return candidate


def _configmap(vol: str, cm: str, mount_path: str, path: str, sub_path: str | None = None) -> Mount:
    mount: dict[str, Any] = {"name": vol, "mountPath": mount_path}
    if sub_path is not None:
        mount["subPath"] = sub_path
    return Mount(
        volume={"name": vol, "configMap": {"name": cm}},
        mount=mount,
        path=path,
        ref=Ref("ConfigMap", cm),
    )


def secret_mount(vol: str, secret: str, mount_path: str, path: str) -> Mount:
    return Mount(
        volume={"name": vol, "secret": {"secretName": secret}},
        mount={"name": vol, "mountPath": mount_path},
        path=path,
        ref=Ref("Secret", secret),
    )


def memory_dir(vol: str, mount_path: str) -> Mount:
    # Memory-backed so that writable state (the repository, the attestation-service work dir,
    # the policies written to it) never lands on node disk.
    return Mount(
        volume={"name": vol, "emptyDir": {"medium": "Memory"}},
        mount={"name": vol, "mountPath": mount_path},
        path=f"the built-in {vol} volume",
        ref=None,
    )


def _secret_pair(
    reader: Reader, key_field: str, cert_field: str, what: str
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
    microservices_in: tuple[str, ...] = (KBS,)

    def add(self, reader: Reader, plan: Plan, taken: set[str]) -> None:
        section, _, leaf = self.key.rpartition(".")
        table = reader.section(section) if section else reader.spec
        path = f"spec.{self.key}"
        name = reader.name(path, table.get(leaf), required=self.required)
        if name is None:
            return
        if self.kind == "ConfigMap":
            mount = _configmap(self.volume, name, self.mount_path, path, sub_path=self.sub_path)
        else:
            mount = secret_mount(self.volume, name, self.mount_path, path)
        plan.add(mount, self.microservices_in)


@dataclass(frozen=True)
class _SecretPair:
    """Two Secret fields that only make sense together (a key and its certificate)."""

    key_field: str
    cert_field: str
    what: str  # why both are needed, for the error naming the missing one
    key_mount: tuple[str, str]  # (volume, mount path)
    cert_mount: tuple[str, str]
    https: bool = False
    key_in: tuple[str, ...] = (KBS,)  # the containers that get each in Microservices
    cert_in: tuple[str, ...] = (KBS,)

    def add(self, reader: Reader, plan: Plan, taken: set[str]) -> None:
        pair = _secret_pair(reader, self.key_field, self.cert_field, self.what)
        if pair is None:
            return
        plan.https = plan.https or self.https
        for (volume, mount_path), name, field_name, containers in (
            (self.key_mount, pair[0], self.key_field, self.key_in),
            (self.cert_mount, pair[1], self.cert_field, self.cert_in),
        ):
            mount = secret_mount(volume, name, mount_path, f"spec.{field_name}")
            plan.add(mount, containers)


class _Step(Protocol):
    def add(self, reader: Reader, plan: Plan, taken: set[str]) -> None: ...


@dataclass(frozen=True)
class _Custom:
    """A mount the table cannot describe: a function that adds it."""

    add_mounts: Callable[[Reader, set[str]], list[Mount]]
    microservices_in: tuple[str, ...] = (KBS,)

    def add(self, reader: Reader, plan: Plan, taken: set[str]) -> None:
        for mount in self.add_mounts(reader, taken):
            plan.add(mount, self.microservices_in)


def _ibmse_mounts(reader: Reader, taken: set[str]) -> list[Mount]:
    pvc_path = "spec.ibmSEConfigSpec.certStorePvc"
    pvc = reader.name(pvc_path, reader.section("ibmSEConfigSpec").get("certStorePvc"))
    if pvc is None:
        return []
    vol = _free_volume_name(pvc, "ibmse", taken)
    taken.add(vol)
    return [
        Mount(
            volume={"name": vol, "persistentVolumeClaim": {"claimName": pvc}},
            mount={"name": vol, "mountPath": _IBMSE_DIR},
            path=pvc_path,
            ref=None,
        )
    ]


def _cert_cache_mounts(reader: Reader, taken: set[str]) -> list[Mount]:
    entries = reader.section("kbsLocalCertCacheSpec").get("secrets")
    if entries is None:
        return []
    if not isinstance(entries, list):
        reader.fail("spec.kbsLocalCertCacheSpec.secrets: must be a list of {secretName, mountPath}")
        return []
    out: list[Mount] = []
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
        out.append(secret_mount(vol, secret, mount_path, f"{path}.mountPath"))
    return out


def _secret_resource_mounts(reader: Reader, taken: set[str]) -> list[Mount]:
    names = reader.spec.get("kbsSecretResources")
    if names is None:
        return []
    if not isinstance(names, list):
        reader.fail(
            f"spec.kbsSecretResources: must be a list of Secret names, got {type(names).__name__}"
        )
        return []
    out: list[Mount] = []
    for i, value in enumerate(names):
        path = f"spec.kbsSecretResources[{i}]"
        secret = reader.name(path, value, required="an empty entry names no Secret")
        if secret is None:
            continue
        # Each key of the Secret becomes the resource default/<secret>/<key>.
        vol = _free_volume_name(secret, "resource", taken)
        taken.add(vol)
        out.append(secret_mount(vol, secret, f"{REPOSITORY_DEFAULT}/{secret}", path))
    return out


# Every mount a KbsConfig can ask for, in v0.3.0's order (after the writable directories).
# In a MicroservicesDeployment the verifier's inputs go to the AS, which is what verifies
# (v0.3.0 left them in the kbs container, where nothing read them), and the reference values
# to the RVPS.
LAYOUT: tuple[_Step, ...] = (
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
        ATTESTATION_POLICY_DIR,
        microservices_in=(AS,),
    ),
    _Field("kbsResourcePolicyConfigMapName", "ConfigMap", "opa", f"{CC_ROOT}/opa"),
    _Field(
        "tdxConfigSpec.kbsTdxConfigMapName",
        "ConfigMap",
        "tdx-config",
        f"/etc/{_TDX_QCNL}",
        sub_path=_TDX_QCNL,
        microservices_in=(AS,),
    ),
    _Custom(_ibmse_mounts, microservices_in=(AS,)),
    _Field(
        "kbsAuthSecretName",
        "Secret",
        "auth-secret",
        "/etc/auth-secret",
        required="it names the Secret holding the admin public key",
    ),
    _Custom(_cert_cache_mounts, microservices_in=(AS,)),
    _SecretPair(
        "kbsHttpsKeySecretName",
        "kbsHttpsCertSecretName",
        "HTTPS needs both",
        ("https-key", "/etc/https-key"),
        ("https-cert", "/etc/https-cert"),
        https=True,
    ),
    # The AS signs tokens with the key; the KBS may trust them through the certificate.
    _SecretPair(
        "kbsAttestationKeySecretName",
        "kbsAttestationCertSecretName",
        "the attestation token signer needs both",
        ("attestation-key", "/etc/attestation-key"),
        ("attestation-cert", "/etc/attestation-cert"),
        key_in=(AS,),
        cert_in=(KBS, AS),
    ),
    _Custom(_secret_resource_mounts),
    _Field(
        "kbsRvpsRefValuesConfigMapName",
        "ConfigMap",
        "reference-values",
        REFERENCE_VALUES_DIR,
        required="trustee-operator v0.3.0 always mounts the RVPS reference values ConfigMap",
        microservices_in=(RVPS,),
    ),
)

# What only a MicroservicesDeployment mounts, after the rest as in v0.3.0: each service's
# configuration file, one key of the named ConfigMap.
MICROSERVICES_LAYOUT: tuple[_Step, ...] = (
    _Field(
        "kbsAsConfigMapName",
        "ConfigMap",
        "as-config",
        AS_CONFIG_FILE,
        sub_path=AS_CONFIG_KEY,
        required=f"a MicroservicesDeployment's AS reads its {AS_CONFIG_KEY} from it",
        microservices_in=(AS,),
    ),
    _Field(
        "kbsRvpsConfigMapName",
        "ConfigMap",
        "rvps-config",
        RVPS_CONFIG_FILE,
        sub_path=RVPS_CONFIG_KEY,
        required=f"a MicroservicesDeployment's RVPS reads its {RVPS_CONFIG_KEY} from it",
        microservices_in=(RVPS,),
    ),
)
