"""Static checks of deploy/ without a cluster, kubectl, kustomize or helm.

- Built-in kinds are validated with kubernetes-validate (bundled OpenAPI schemas, strict mode).
- KbsConfig objects are validated against our CRD's openAPIV3Schema with jsonschema, with
  unknown fields rejected as `kubectl apply` (field validation Strict) would.
- kustomize is emulated for exactly the fields deploy/ uses; any other field fails the test.
- Helm templates are rendered by a minimal substitution, limited to the forms listed in
  deploy/helm/trustee-operator/README.md; anything else fails the test.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.support.shared import seed_dir, seed_file, seed_path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SEED = seed_path()
CRD_FILE = DEPLOY / "crd" / "kbsconfigs.confidentialcontainers.org.yaml"
CHART = DEPLOY / "helm" / "trustee-operator"
BLOG = DEPLOY / "samples" / "blog"
MICROSERVICES = DEPLOY / "samples" / "microservices"
SAMPLES = (BLOG, MICROSERVICES)
KEYS_SCRIPT = DEPLOY / "scripts" / "blog-keys.sh"

K8S_VERSIONS = ("1.32.0", "1.37.0")
NAMESPACE = "trustee-operator-system"
MODULE = "trustee.operator.kopf_operator"
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
RELEASE = {"Name": "trustee-operator", "Namespace": NAMESPACE}

Obj = dict[str, Any]


def load_docs(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def rel(path: Path) -> str:
    return str(path.relative_to(DEPLOY))


def validate_builtin(obj: Obj) -> None:
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


def is_kustomization(obj: Obj) -> bool:
    return str(obj.get("apiVersion", "")).startswith("kustomize.config.k8s.io/")


def by_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [obj for obj in objs if obj["kind"] == kind]


def one(objs: list[Obj], kind: str) -> Obj:
    (obj,) = by_kind(objs, kind)
    return obj


# --- KbsConfig against the CRD ---------------------------------------------------------------


def crd_schema() -> Obj:
    (version,) = load_docs(CRD_FILE)[0]["spec"]["versions"]
    schema: Obj = version["schema"]["openAPIV3Schema"]
    return schema


def strict(schema: Obj) -> Obj:
    """Reject unknown fields where the API server would (no preserve-unknown-fields)."""
    schema = copy.deepcopy(schema)

    def walk(node: Obj) -> None:
        if "properties" in node:
            if not node.get("x-kubernetes-preserve-unknown-fields"):
                node.setdefault("additionalProperties", False)
            for child in node["properties"].values():
                walk(child)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key])

    walk(schema)
    return schema


def kbsconfig(spec: Obj) -> Obj:
    return {
        "apiVersion": "confidentialcontainers.org/v1alpha1",
        "kind": "KbsConfig",
        "metadata": {"name": "kbsconfig-sample", "namespace": NAMESPACE},
        "spec": spec,
    }


def validate_kbsconfig(obj: Obj) -> None:
    assert obj["apiVersion"] == "confidentialcontainers.org/v1alpha1"
    assert obj["kind"] == "KbsConfig"
    jsonschema.Draft4Validator(strict(crd_schema())).validate(obj)


# --- kustomize emulation ---------------------------------------------------------------------

KUSTOMIZE_FIELDS = {
    "apiVersion",
    "kind",
    "namespace",
    "resources",
    "generatorOptions",
    "configMapGenerator",
    "secretGenerator",
}


def generate(kind: str, spec: Obj, directory: Path) -> Obj:
    assert set(spec) <= {"name", "files", "literals"}, spec
    data: dict[str, str] = {}
    for name in spec.get("files", []):
        data[name] = (directory / name).read_text()
    for literal in spec.get("literals", []):
        key, value = literal.split("=", 1)
        data[key] = value
    obj: Obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": spec["name"]}}
    if kind == "Secret":
        obj["type"] = "Opaque"
        data = {k: kustomize_base64(v.encode()) for k, v in data.items()}
    obj["data"] = data
    return obj


KUSTOMIZE_LINE = 70


def kustomize_base64(raw: bytes) -> str:
    """Secret data as kustomize writes it: one line below 70 characters; otherwise lines of 70,
    each ending in a newline (so real PEM keys come out as YAML block scalars)."""
    encoded = base64.b64encode(raw).decode()
    if len(encoded) < KUSTOMIZE_LINE:
        return encoded
    step = KUSTOMIZE_LINE
    return "".join(encoded[i : i + step] + "\n" for i in range(0, len(encoded), step))


def kustomize(directory: Path) -> list[Obj]:
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert set(kust) <= KUSTOMIZE_FIELDS, f"emulation does not cover {set(kust) - KUSTOMIZE_FIELDS}"
    objs: list[Obj] = []
    for entry in kust.get("resources", []):
        path = directory / entry
        objs += kustomize(path) if path.is_dir() else load_docs(path)
    generators = [("ConfigMap", g) for g in kust.get("configMapGenerator", [])]
    generators += [("Secret", g) for g in kust.get("secretGenerator", [])]
    if generators:
        # Name hashes are not emulated, and the KbsConfig refers to plain names anyway.
        assert kust["generatorOptions"] == {"disableNameSuffixHash": True}
    objs += [generate(kind, spec, directory) for kind, spec in generators]
    if namespace := kust.get("namespace"):
        for obj in objs:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = namespace
            for subject in obj.get("subjects", []):
                if subject["kind"] == "ServiceAccount":
                    subject["namespace"] = namespace
    return objs


def secret_source_files(sample: Path = BLOG) -> set[str]:
    kust = yaml.safe_load((sample / "kustomization.yaml").read_text())
    return {name for gen in kust["secretGenerator"] for name in gen.get("files", [])}


def with_placeholder_keys(sample: Path) -> Path:
    """Placeholder key material in a copy of a sample where blog-keys.sh has not been run."""
    for name in secret_source_files(sample):
        path = sample / name
        if not path.exists():
            path.write_text(f"placeholder {name}\n")
    return sample


@pytest.fixture
def deploy_copy(tmp_path: Path) -> Path:
    """deploy/ with placeholder key material where blog-keys.sh has not been run."""
    dst = tmp_path / "deploy"
    shutil.copytree(DEPLOY, dst)
    for sample in SAMPLES:
        with_placeholder_keys(dst / sample.relative_to(DEPLOY))
    return dst


# --- Helm emulation --------------------------------------------------------------------------

ACTION = re.compile(r"\{\{(.*?)\}\}")
VALUE_REF = r"\.Values(?:\.[A-Za-z_]\w*)+"
GUARD = re.compile(rf"\{{\{{- if ({VALUE_REF}) \}}\}}\n")


def lookup(ref: str, values: Obj) -> Any:
    scope, *path = ref.split(".")[1:]
    node: Any = {"Values": values, "Release": RELEASE}[scope]
    for key in path:
        node = node[key]
    return node


def scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    assert isinstance(value, str | int | float), f"use toJson for {value!r}"
    return str(value)


def render_template(text: str, values: Obj) -> str:
    if guard := GUARD.match(text):
        body = text[guard.end() :]
        assert body.endswith("{{- end }}\n"), "a guard must close on the file's last line"
        if not lookup(guard.group(1), values):
            return ""
        text = body.removesuffix("{{- end }}\n")

    def substitute(match: re.Match[str]) -> str:
        action = match.group(1)
        if m := re.fullmatch(rf" ({VALUE_REF}|\.Release\.(?:Name|Namespace)) ", action):
            return scalar(lookup(m.group(1), values))
        if m := re.fullmatch(rf" toJson ({VALUE_REF}) ", action):
            return json.dumps(lookup(m.group(1), values), sort_keys=True, separators=(",", ":"))
        raise AssertionError(f"unsupported template action {match.group(0)!r} (see chart README)")

    return ACTION.sub(substitute, text)


def chart_values() -> Obj:
    values: Obj = yaml.safe_load((CHART / "values.yaml").read_text())
    return values


def helm_render(**overrides: Any) -> list[Obj]:
    values = chart_values() | overrides
    objs = load_docs(CHART / "crds" / CRD_FILE.name)
    for template in sorted((CHART / "templates").glob("*.yaml")):
        rendered = render_template(template.read_text(), values)
        objs += [doc for doc in yaml.safe_load_all(rendered) if doc is not None]
    return objs


# --- (a) parsing and (b) built-in kinds ------------------------------------------------------

RAW_YAML = sorted(
    path
    for pattern in ("*.yaml", "*.yml")
    for path in DEPLOY.rglob(pattern)
    if (CHART / "templates") not in path.parents
)


@pytest.mark.parametrize("path", RAW_YAML, ids=rel)
def test_yaml_parses(path: Path) -> None:
    assert load_docs(path), f"{rel(path)} holds no document"


@pytest.mark.parametrize("path", RAW_YAML, ids=rel)
def test_builtin_kinds_validate_strict(path: Path) -> None:
    for obj in load_docs(path):
        if "kind" in obj and not is_kustomization(obj) and obj["kind"] != "KbsConfig":
            validate_builtin(obj)


def test_kubernetes_validate_rejects_unknown_field() -> None:
    (deployment,) = load_docs(DEPLOY / "operator" / "manager.yaml")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_builtin(deployment)


# --- (c) the CRD and KbsConfig objects -------------------------------------------------------

SPEC_FIELDS = {
    "kbsConfigMapName",
    "kbsAuthSecretName",
    "kbsDeploymentType",
    "kbsServiceType",
    "kbsRvpsRefValuesConfigMapName",
    "kbsHttpsKeySecretName",
    "kbsHttpsCertSecretName",
    "kbsSecretResources",
    "kbsResourcePolicyConfigMapName",
    "kbsAttestationPolicyConfigMapName",
    "kbsGpuAttestationPolicyConfigMapName",
    "kbsAsConfigMapName",
    "kbsRvpsConfigMapName",
    "kbsAttestationKeySecretName",
    "kbsAttestationCertSecretName",
    "tdxConfigSpec",
    "ibmSEConfigSpec",
    "kbsLocalCertCacheSpec",
    "KbsEnvVars",
    "KbsDeploymentSpec",
}


def test_crd_shape() -> None:
    (crd,) = load_docs(CRD_FILE)
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "kbsconfigs.confidentialcontainers.org"
    assert (spec["group"], spec["scope"]) == ("confidentialcontainers.org", "Namespaced")
    assert spec["names"] == {
        "kind": "KbsConfig",
        "listKind": "KbsConfigList",
        "plural": "kbsconfigs",
        "singular": "kbsconfig",
    }
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    props = crd_schema()["properties"]
    assert set(props["spec"]["properties"]) == SPEC_FIELDS
    assert props["spec"]["properties"]["kbsDeploymentType"]["enum"] == [
        "AllInOneDeployment",
        "MicroservicesDeployment",
    ]
    status = props["status"]["properties"]
    assert set(status) == {"isReady", "observedGeneration", "conditions", "configHash"}
    assert set(status["conditions"]["items"]["properties"]) >= {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
    }


def test_crd_schema_is_structural() -> None:
    def walk(node: Obj, where: str) -> None:
        assert "type" in node, f"{where} has no type"
        assert not ("properties" in node and "additionalProperties" in node), where
        for name, child in node.get("properties", {}).items():
            walk(child, f"{where}.{name}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key], f"{where}[{key}]")

    walk(crd_schema(), "openAPIV3Schema")


def test_helm_crd_is_a_copy_of_deploy_crd() -> None:
    assert (CHART / "crds" / CRD_FILE.name).read_bytes() == CRD_FILE.read_bytes()


def test_seed_kbsconfig_validates() -> None:
    sample = seed_file("kbsconfig-sample.yaml")
    (obj,) = load_docs(sample)
    validate_kbsconfig(obj)
    (ours,) = load_docs(BLOG / "kbsconfig.yaml")
    assert ours["spec"] == obj["spec"]


def test_our_kbsconfigs_validate() -> None:
    (blog,) = load_docs(BLOG / "kbsconfig.yaml")
    helm = one(helm_render(kbsConfig=chart_values()["kbsConfig"] | {"create": True}), "KbsConfig")
    for obj in (blog, helm):
        validate_kbsconfig(obj)
    assert helm["spec"] == blog["spec"]


def test_kbsconfig_with_every_field_validates() -> None:
    props = crd_schema()["properties"]["spec"]["properties"]
    spec: dict[str, Any] = {f: "x" for f in SPEC_FIELDS if props[f]["type"] == "string"}
    spec |= {
        "kbsDeploymentType": "MicroservicesDeployment",
        "kbsServiceType": "NodePort",
        "kbsSecretResources": ["a", "b"],
        "tdxConfigSpec": {"kbsTdxConfigMapName": "tdx"},
        "ibmSEConfigSpec": {"certStorePvc": "pvc"},
        "kbsLocalCertCacheSpec": {"secrets": [{"secretName": "vcek", "mountPath": "/vcek"}]},
        "KbsEnvVars": {"RUST_LOG": "debug"},
        "KbsDeploymentSpec": {"replicas": 2},
    }
    assert set(spec) == SPEC_FIELDS
    status = {
        "isReady": True,
        "observedGeneration": 3,
        "configHash": "sha256:00",
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "DeploymentReady",
                "message": "1/1 replicas ready",
                "lastTransitionTime": "2025-02-19T12:00:00Z",
            }
        ],
    }
    validate_kbsconfig(kbsconfig(spec) | {"status": status})


@pytest.mark.parametrize(
    "spec",
    [
        {"kbsDeploymentType": "AllInOne"},
        {"kbsConfigmapName": "kbs-config"},
        {"kbsEnvVars": {"A": "b"}},
        {"KbsEnvVars": {"RUST_LOG": 1}},
        {"kbsSecretResources": "kbsres1"},
        {"KbsDeploymentSpec": {"replicas": "1"}},
        {"kbsLocalCertCacheSpec": {"secrets": [{"mountPath": "/vcek"}]}},
    ],
    ids=lambda spec: next(iter(spec)),
)
def test_invalid_kbsconfig_rejected(spec: Obj) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate_kbsconfig(kbsconfig({"kbsConfigMapName": "kbs-config"} | spec))


# --- (d) Helm chart --------------------------------------------------------------------------


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["apiVersion"], chart["name"], chart["type"]) == (
        "v2",
        "trustee-operator",
        "application",
    )
    assert {"image", "kbsImage", "resources", "kbsConfig"} <= set(chart_values())


@pytest.mark.parametrize("create", [False, True], ids=["default", "with-kbsconfig"])
def test_helm_render_validates(create: bool) -> None:
    objs = helm_render(kbsConfig=chart_values()["kbsConfig"] | {"create": create})
    assert len(by_kind(objs, "KbsConfig")) == int(create)
    for obj in objs:
        if obj["kind"] == "KbsConfig":
            validate_kbsconfig(obj)
        else:
            validate_builtin(obj)
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"]["namespace"] == NAMESPACE


def test_helm_values_reach_the_deployment() -> None:
    resources = {"limits": {"cpu": "1", "memory": "1Gi"}}
    objs = helm_render(image="reg.example/op:1", kbsImage="reg.example/kbs:2", resources=resources)
    container = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "reg.example/op:1"
    assert {"name": "KBS_IMAGE_NAME", "value": "reg.example/kbs:2"} in container["env"]
    assert container["resources"] == resources


def test_render_default_image_is_the_one_deploy_builds_and_installs() -> None:
    # `trustee operator render` without --image must print what the installed operator applies.
    from trustee.operator.render import DEFAULT_IMAGE

    (deployment,) = load_docs(DEPLOY / "operator" / "manager.yaml")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == DEFAULT_IMAGE
    assert {"name": "KBS_IMAGE_NAME", "value": DEFAULT_IMAGE} in container["env"]
    values = chart_values()
    assert values["image"] == values["kbsImage"] == DEFAULT_IMAGE
    build = (DEPLOY / "scripts" / "build-image.sh").read_text()
    assert f"TAG=${{1:-{DEFAULT_IMAGE}}}" in build


@pytest.mark.parametrize(
    "template",
    ['{{ include "x" . }}', "{{ .Values.image | quote }}", "{{ .Values.resources }}"],
)
def test_helm_emulation_refuses_other_constructs(template: str) -> None:
    with pytest.raises(AssertionError):
        render_template(template, chart_values())


def test_helm_matches_kustomize_base() -> None:
    helm, base = helm_render(), kustomize(DEPLOY / "operator")
    for kind in ("ClusterRole", "Role"):
        assert one(helm, kind)["rules"] == one(base, kind)["rules"]
    helm_pod = one(helm, "Deployment")["spec"]["template"]["spec"]
    base_pod = one(base, "Deployment")["spec"]["template"]["spec"]
    assert helm_pod == base_pod


# --- (e) kustomize: operator base and the blog overlay ---------------------------------------

REQUIRED_RBAC = {
    "Role": {
        ("confidentialcontainers.org", "kbsconfigs", verb)
        for verb in ("get", "list", "watch", "patch", "update")
    }
    | {
        ("confidentialcontainers.org", "kbsconfigs/status", "patch"),
        ("confidentialcontainers.org", "kbsconfigs/finalizers", "update"),
        ("", "events", "create"),
    }
    | {("", res, verb) for res in ("configmaps", "secrets") for verb in ("get", "list", "watch")}
    | {
        (group, res, verb)
        for group, res in (("apps", "deployments"), ("", "services"))
        for verb in ("get", "list", "watch", "create", "update", "patch", "delete")
    },
    # kopf's scanning of CRDs and namespaces.
    "ClusterRole": {
        (group, res, verb)
        for group, res in (
            ("apiextensions.k8s.io", "customresourcedefinitions"),
            ("", "namespaces"),
        )
        for verb in ("list", "watch")
    },
}


def granted(role: Obj) -> set[tuple[str, str, str]]:
    return {
        (group, res, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for res in rule["resources"]
        for verb in rule["verbs"]
    }


def test_operator_base() -> None:
    objs = kustomize(DEPLOY / "operator")
    kinds = sorted(obj["kind"] for obj in objs)
    assert kinds == sorted(
        [
            "CustomResourceDefinition",
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Deployment",
        ]
    )
    for obj in objs:
        validate_builtin(obj)
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"]["namespace"] == NAMESPACE
    assert one(objs, "Namespace")["metadata"]["name"] == NAMESPACE

    for kind, required in REQUIRED_RBAC.items():
        assert required <= granted(one(objs, kind)), required - granted(one(objs, kind))
    assert {verb for *_, verb in granted(one(objs, "ClusterRole"))} <= {"get", "list", "watch"}

    account = one(objs, "ServiceAccount")["metadata"]
    for binding, role in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        b = one(objs, binding)
        assert b["roleRef"]["name"] == one(objs, role)["metadata"]["name"]
        assert b["subjects"] == [
            {"kind": "ServiceAccount", "name": account["name"], "namespace": NAMESPACE}
        ]

    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    argv = container["command"] + container["args"]
    # The console script runs MODULE's main(): standalone kopf serving only POD_NAMESPACE.
    assert argv == ["trustee-operator", "--liveness=http://0.0.0.0:8081/healthz"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["trustee-operator"] == f"{MODULE}:main"
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["KBS_IMAGE_NAME"]["value"]
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


BLOG_SECRETS = {
    ("Secret", "kbs-auth-public-key"),
    ("Secret", "kbs-https-key"),
    ("Secret", "kbs-https-certificate"),
    ("Secret", "kbsres1"),
}


def sample_objects(directory: Path, configmaps: set[str]) -> list[Obj]:
    """A sample's objects: its KbsConfig, these ConfigMaps and the blog's Secrets, each valid,
    in the operator's namespace, and every object the KbsConfig names generated beside it."""
    objs = kustomize(directory)
    names = {(obj["kind"], obj["metadata"]["name"]) for obj in objs}
    expected = {("ConfigMap", name) for name in configmaps} | BLOG_SECRETS
    assert names == {("KbsConfig", "kbsconfig-sample")} | expected
    for obj in objs:
        assert obj["metadata"]["namespace"] == NAMESPACE
        if obj["kind"] == "KbsConfig":
            validate_kbsconfig(obj)
        else:
            validate_builtin(obj)
    spec = one(objs, "KbsConfig")["spec"]
    referenced = {v for k, v in spec.items() if k.endswith("Name")} | set(
        spec["kbsSecretResources"]
    )
    assert referenced == {name for _, name in expected}
    return objs


def test_blog_overlay(deploy_copy: Path) -> None:
    objs = sample_objects(
        deploy_copy / "samples" / "blog", {"kbs-config", "rvps-reference-values", "resource-policy"}
    )

    data = {obj["metadata"]["name"]: obj["data"] for obj in objs if "data" in obj}
    assert set(data["kbs-config"]) == {"kbs-config.toml"}
    assert set(data["rvps-reference-values"]) == {"reference-values.json"}
    assert set(data["resource-policy"]) == {"policy.rego"}
    assert set(data["kbs-auth-public-key"]) == {"publicKey"}
    assert set(data["kbs-https-key"]) == {"https.key"}
    assert set(data["kbs-https-certificate"]) == {"https.crt"}
    assert data["kbsres1"] == {"key1": "cmVzMXZhbDE=", "key2": "cmVzMXZhbDI="}


def test_microservices_overlay(deploy_copy: Path) -> None:
    configmaps = {"kbs-config-grpc", "as-config-grpc", "rvps-config-grpc"}
    shared = {"rvps-reference-values", "resource-policy"}
    objs = sample_objects(deploy_copy / "samples" / "microservices", configmaps | shared)
    assert one(objs, "KbsConfig")["spec"]["kbsDeploymentType"] == "MicroservicesDeployment"
    # What it shares with the blog is the blog's, so both deploy the same resources.
    blog = {o["metadata"]["name"]: o for o in kustomize(deploy_copy / "samples" / "blog")}
    for obj in objs:
        if obj["metadata"]["name"] in shared:
            assert obj == blog[obj["metadata"]["name"]]
    assert secret_source_files(MICROSERVICES) == secret_source_files(BLOG)


@pytest.mark.parametrize("sample", SAMPLES, ids=rel)
def test_sample_key_material_is_gitignored(sample: Path) -> None:
    ignored = {
        line.strip()
        for line in (sample / ".gitignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert secret_source_files(sample) <= ignored


def test_blog_configmaps_match_seed(deploy_copy: Path) -> None:
    seed_dir()
    ours = {
        obj["metadata"]["name"]: obj["data"]
        for obj in kustomize(deploy_copy / "samples" / "blog")
        if obj["kind"] == "ConfigMap"
    }
    for name in (
        "kbs-config-configmap.yaml",
        "rvps-reference-values-configmap.yaml",
        "resource-policy-configmap.yaml",
    ):
        (seed,) = load_docs(SEED / name)
        assert ours[seed["metadata"]["name"]] == seed["data"], name
    assert (BLOG / "kbs-service-509.conf").read_text() == (
        SEED / "kbs-service-509.conf"
    ).read_text()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_blog_keys_script(tmp_path: Path) -> None:
    done = subprocess.run(
        ["sh", str(KEYS_SCRIPT), str(tmp_path)], check=True, capture_output=True, text=True
    )
    # One line, and none of openssl's key-generation progress characters.
    assert (done.stdout, done.stderr) == (
        f"wrote privateKey publicKey https.key https.crt to {tmp_path}\n",
        "",
    )
    assert {p.name for p in tmp_path.iterdir()} == secret_source_files() | {"privateKey"}

    private = serialization.load_pem_private_key((tmp_path / "privateKey").read_bytes(), None)
    public = serialization.load_pem_public_key((tmp_path / "publicKey").read_bytes())
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    assert isinstance(public, ed25519.Ed25519PublicKey)
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    assert private.public_key().public_bytes(*raw) == public.public_bytes(*raw)

    cert = x509.load_pem_x509_certificate((tmp_path / "https.crt").read_bytes())
    assert cert.subject.rfc4514_string() == (
        "CN=kbs-service,OU=Development,O=Red Hat,L=Bristol,ST=England,C=UK"
    )
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["kbs-service"]
    key = serialization.load_pem_private_key((tmp_path / "https.key").read_bytes(), None)
    assert key.public_key() == cert.public_key()

    again = subprocess.run(["sh", str(KEYS_SCRIPT), str(tmp_path)], capture_output=True)
    assert again.returncode != 0, "the script must not silently replace existing keys"


def test_blog_keys_script_shows_openssl_errors(tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "openssl"
    fake.parent.mkdir()
    fake.write_text(
        '#!/bin/sh\nprintf "..+++*\\n" >&2\necho "genpkey: unsupported algorithm" >&2\nexit 1\n'
    )
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"}
    failed = subprocess.run(
        ["sh", str(KEYS_SCRIPT), str(tmp_path / "out")], capture_output=True, text=True, env=env
    )
    assert failed.returncode != 0
    assert "genpkey: unsupported algorithm" in failed.stderr
    assert failed.stdout == ""


@pytest.fixture
def deploy_with_keys(tmp_path: Path) -> Path:
    """deploy/ with fresh key material from blog-keys.sh, as a user following deploy/README has
    it (real PEM files, long enough for kustomize to wrap their base64)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    dst = tmp_path / "deploy"
    generated = secret_source_files() | {"privateKey"}
    shutil.copytree(DEPLOY, dst, ignore=lambda _, names: [n for n in names if n in generated])
    blog = dst / "samples" / "blog"
    subprocess.run(["sh", str(KEYS_SCRIPT), str(blog)], check=True, capture_output=True)
    return dst


def test_generated_keys_emulate_to_valid_secrets_of_the_same_bytes(
    deploy_with_keys: Path,
) -> None:
    blog = deploy_with_keys / "samples" / "blog"
    secrets = [obj for obj in kustomize(blog) if obj["kind"] == "Secret"]
    from_files = secret_source_files()
    checked = set()
    for obj in secrets:
        validate_builtin(obj)
        for name, value in obj["data"].items():
            if name in from_files:
                assert base64.b64decode(value) == (blog / name).read_bytes(), name
                assert max(map(len, value.splitlines())) == KUSTOMIZE_LINE, name
                checked.add(name)
    assert checked == from_files


# What kustomize v5.5 (kubectl v1.32) writes for bytes(range(size)): at and around the edges
# of its line rule (68 and 72 characters, and exactly two full lines).
WRAP_1 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMz"
WRAP_2 = "Q1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdo"
KUSTOMIZE_WRITES = {
    1: "AA==",
    51: WRAP_1[:68],
    52: f"{WRAP_1[:69]}w\n==\n",
    105: f"{WRAP_1}\n{WRAP_2}\n",
    106: f"{WRAP_1}\n{WRAP_2}\naQ==\n",
}


@pytest.mark.parametrize("size", sorted(KUSTOMIZE_WRITES))
def test_secret_base64_is_wrapped_as_kustomize_wraps_it(size: int) -> None:
    assert kustomize_base64(bytes(range(size))) == KUSTOMIZE_WRITES[size]


def assert_kubectl_agrees(directory: Path) -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(directory)], check=True, capture_output=True, text=True
    ).stdout

    def key(obj: Obj) -> tuple[str, str]:
        return obj["kind"], obj["metadata"]["name"]

    real = sorted((doc for doc in yaml.safe_load_all(out) if doc), key=key)
    assert real == sorted(kustomize(directory), key=key)


needs_kubectl = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl is not installed"
)


@needs_kubectl
@pytest.mark.parametrize("overlay", ["operator", "samples/blog", "samples/microservices"])
def test_kubectl_kustomize_agrees_with_emulation(deploy_copy: Path, overlay: str) -> None:
    """Where kubectl exists, its built-in kustomize must give what the emulation gives."""
    assert_kubectl_agrees(deploy_copy / overlay)


@needs_kubectl
def test_kubectl_kustomize_agrees_with_emulation_on_generated_keys(
    deploy_with_keys: Path,
) -> None:
    assert_kubectl_agrees(deploy_with_keys / "samples" / "blog")


@needs_kubectl
def test_kubectl_kustomize_wraps_as_the_emulation_says(tmp_path: Path) -> None:
    for size in KUSTOMIZE_WRITES:
        (tmp_path / f"f{size}").write_bytes(bytes(range(size)))
    kust = {
        "generatorOptions": {"disableNameSuffixHash": True},
        "secretGenerator": [{"name": "sizes", "files": [f"f{n}" for n in KUSTOMIZE_WRITES]}],
    }
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(kust))
    out = subprocess.run(
        ["kubectl", "kustomize", str(tmp_path)], check=True, capture_output=True, text=True
    ).stdout
    (secret,) = yaml.safe_load_all(out)
    assert secret["data"] == {f"f{n}": text for n, text in KUSTOMIZE_WRITES.items()}


# --- Helm itself (Helm's Go SDK through helm-python-sdk, offline) ----------------------------


def _real_helm() -> Any:
    return pytest.importorskip("helm_python", reason="helm-python-sdk is not installed")


@pytest.mark.parametrize("create", [False, True])
def test_real_helm_render_matches_and_validates(create: bool) -> None:
    helm = _real_helm()
    chart = helm.Chart.load(str(CHART))
    values = {"kbsConfig": {**chart_values()["kbsConfig"], "create": create}}
    rendered = chart.render(values, name=RELEASE["Name"], namespace=RELEASE["Namespace"])
    objs: list[Obj] = [
        doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc is not None
    ]
    for obj in objs:
        if obj["kind"] == "KbsConfig":
            jsonschema.validate(obj, crd_schema())
        else:
            validate_builtin(obj)
    emulated = [
        o
        for o in helm_render(kbsConfig=values["kbsConfig"])
        if o["kind"] != "CustomResourceDefinition"
    ]
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    assert sorted(objs, key=key) == sorted(emulated, key=key)
    assert ("KbsConfig" in {o["kind"] for o in objs}) is create


def test_real_helm_lint_is_clean() -> None:
    helm = _real_helm()
    report = helm.lint(str(CHART), strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
