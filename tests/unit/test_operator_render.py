"""The KbsConfig renderer: golden manifests for the blog's CR, variants, hash, and the CLI."""

from __future__ import annotations

import base64
import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.shared import seed_file, seed_path
from trustee.operator.render import (
    DEFAULT_IMAGE,
    FINALIZER,
    ROLLOUT_ANNOTATION,
    Ref,
    RenderError,
    config_hash,
    referenced,
    render,
    to_yaml_stream,
)

REPO = Path(__file__).resolve().parents[2]
SEED = seed_path()
GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE_GOLDEN = os.environ.get("TRUSTEE_UPDATE_GOLDEN") == "1"


@pytest.fixture
def blog_seed() -> Path:
    return seed_file("kbsconfig-sample.yaml").parent


needs_seed = pytest.mark.usefixtures("blog_seed")

# The blog's KbsConfig, kept here so the variant tests run without the seed directory;
# test_inline_cr_matches_seed checks it has not drifted.
BLOG_CR: dict[str, Any] = {
    "apiVersion": "confidentialcontainers.org/v1alpha1",
    "kind": "KbsConfig",
    "metadata": {
        "labels": {
            "app.kubernetes.io/name": "kbsconfig",
            "app.kubernetes.io/instance": "kbsconfig-sample",
            "app.kubernetes.io/part-of": "kbs-operator",
            "app.kubernetes.io/managed-by": "kustomize",
            "app.kubernetes.io/created-by": "kbs-operator",
        },
        "name": "kbsconfig-sample",
        "namespace": "operators",
    },
    "spec": {
        "kbsConfigMapName": "kbs-config",
        "kbsAuthSecretName": "kbs-auth-public-key",
        "kbsDeploymentType": "AllInOneDeployment",
        "kbsRvpsRefValuesConfigMapName": "rvps-reference-values",
        "kbsSecretResources": ["kbsres1"],
        "kbsHttpsKeySecretName": "kbs-https-key",
        "kbsHttpsCertSecretName": "kbs-https-certificate",
        "kbsResourcePolicyConfigMapName": "resource-policy",
    },
}

# trustee-operator v0.3.0's mounts for the blog's CR, in order: (volume, mountPath, source).
BLOG_LAYOUT = [
    ("confidential-containers", "/opt/confidential-containers", {"emptyDir": {"medium": "Memory"}}),
    (
        "default",
        "/opt/confidential-containers/kbs/repository/default",
        {"emptyDir": {"medium": "Memory"}},
    ),
    ("kbs-config", "/etc/kbs-config", {"configMap": {"name": "kbs-config"}}),
    ("opa", "/opt/confidential-containers/opa", {"configMap": {"name": "resource-policy"}}),
    ("auth-secret", "/etc/auth-secret", {"secret": {"secretName": "kbs-auth-public-key"}}),
    ("https-key", "/etc/https-key", {"secret": {"secretName": "kbs-https-key"}}),
    ("https-cert", "/etc/https-cert", {"secret": {"secretName": "kbs-https-certificate"}}),
    (
        "kbsres1",
        "/opt/confidential-containers/kbs/repository/default/kbsres1",
        {"secret": {"secretName": "kbsres1"}},
    ),
    (
        "reference-values",
        "/opt/confidential-containers/rvps/reference-values",
        {"configMap": {"name": "rvps-reference-values"}},
    ),
]


def cr(**spec_changes: Any) -> dict[str, Any]:
    """The blog's CR with spec fields replaced; a value of None removes the field."""
    out = copy.deepcopy(BLOG_CR)
    for key, value in spec_changes.items():
        if value is None:
            out["spec"].pop(key, None)
        else:
            out["spec"][key] = value
    return out


def deployment_of(objs: list[dict[str, Any]]) -> dict[str, Any]:
    assert [o["kind"] for o in objs] == ["Deployment", "Service"]
    return objs[0]


def container_of(objs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = deployment_of(objs)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]  # type: ignore[no-any-return]


def mounts_of(objs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(m["name"], m["mountPath"]) for m in container_of(objs)["volumeMounts"]]


def volumes_of(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return deployment_of(objs)["spec"]["template"]["spec"]["volumes"]  # type: ignore[no-any-return]


def annotations_of(objs: list[dict[str, Any]]) -> dict[str, str]:
    meta = deployment_of(objs)["spec"]["template"]["metadata"]
    return meta.get("annotations", {})  # type: ignore[no-any-return]


def load_stream(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def seed_objects() -> dict[Ref, dict[str, Any]]:
    out: dict[Ref, dict[str, Any]] = {}
    for path in sorted(SEED.glob("*configmap.yaml")):
        for doc in load_stream(path):
            out[Ref(doc["kind"], doc["metadata"]["name"])] = doc
    return out


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"{path} missing; run with TRUSTEE_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(), f"{name} differs; if intended, regenerate and review"


# --- the blog's CR ------------------------------------------------------------------------


@needs_seed
def test_inline_cr_matches_seed() -> None:
    assert load_stream(SEED / "kbsconfig-sample.yaml") == [BLOG_CR]


@needs_seed
def test_golden_blog_cr_alone() -> None:
    (kbsconfig,) = load_stream(SEED / "kbsconfig-sample.yaml")
    check_golden("operator-blog.yaml", to_yaml_stream(render(kbsconfig, namespace="operators")))


@needs_seed
def test_golden_blog_with_seed_objects() -> None:
    (kbsconfig,) = load_stream(SEED / "kbsconfig-sample.yaml")
    objs = render(kbsconfig, namespace="operators", objects=seed_objects())
    check_golden("operator-blog-with-seed-objects.yaml", to_yaml_stream(objs))


def test_golden_files_differ_only_by_the_annotation() -> None:
    alone = load_stream(GOLDEN / "operator-blog.yaml")
    with_objects = load_stream(GOLDEN / "operator-blog-with-seed-objects.yaml")
    annotations = with_objects[0]["spec"]["template"]["metadata"].pop("annotations")
    assert list(annotations) == [ROLLOUT_ANNOTATION]
    assert with_objects == alone
    # The goldens are also the renderer's current output for the inline CR.
    assert render(BLOG_CR, namespace="operators") == alone


def test_blog_layout_matches_v030() -> None:
    objs = render(BLOG_CR, namespace="operators")
    dep, svc = objs
    assert mounts_of(objs) == [(name, path) for name, path, _ in BLOG_LAYOUT]
    assert volumes_of(objs) == [{"name": name, **source} for name, _, source in BLOG_LAYOUT]
    assert all("subPath" not in m for m in container_of(objs)["volumeMounts"])

    assert dep["apiVersion"] == "apps/v1"
    assert dep["metadata"] == {"name": "trustee-deployment", "namespace": "operators"}
    spec = dep["spec"]
    assert spec["replicas"] == 1
    assert spec["selector"] == {"matchLabels": {"app": "kbs"}}
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
    assert spec["template"]["metadata"] == {"labels": {"app": "kbs"}}

    c = container_of(objs)
    assert c["name"] == "kbs"
    assert c["image"] == DEFAULT_IMAGE
    assert c["command"] == [
        "/usr/local/bin/kbs",
        "--config-file",
        "/etc/kbs-config/kbs-config.toml",
    ]
    assert c["ports"] == [{"name": "kbs", "containerPort": 8080, "protocol": "TCP"}]
    assert "env" not in c
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    for probe, delay, period in (("readinessProbe", 5, 10), ("livenessProbe", 15, 30)):
        assert c[probe] == {
            "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTPS"},
            "initialDelaySeconds": delay,
            "periodSeconds": period,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        }

    assert svc == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kbs-service", "namespace": "operators"},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app": "kbs"},
            "ports": [{"name": "kbs-port", "protocol": "TCP", "port": 8080, "targetPort": 8080}],
        },
    }


@needs_seed
def test_blog_paths_match_the_blogs_kbs_config() -> None:
    """Every file the blog's kbs-config.toml names lies under one of the rendered mounts."""
    toml_text = (SEED / "kbs-config.toml").read_text()
    mount_paths = [path for _, path in mounts_of(render(BLOG_CR, namespace="operators"))]
    expected = {
        "/etc/https-key/https.key": "/etc/https-key",
        "/etc/https-cert/https.crt": "/etc/https-cert",
        "/etc/auth-secret/publicKey": "/etc/auth-secret",
        "/opt/confidential-containers/rvps/reference-values/reference-values.json": (
            "/opt/confidential-containers/rvps/reference-values"
        ),
        "/opt/confidential-containers/opa/policy.rego": "/opt/confidential-containers/opa",
    }
    for file_path, mount in expected.items():
        assert f'"{file_path}"' in toml_text
        assert mount in mount_paths


def test_render_is_deterministic_and_does_not_mutate_input() -> None:
    before = copy.deepcopy(BLOG_CR)
    first = to_yaml_stream(render(BLOG_CR, namespace="operators"))
    assert before == BLOG_CR
    assert to_yaml_stream(render(copy.deepcopy(BLOG_CR), namespace="operators")) == first


def test_image_and_namespace() -> None:
    objs = render(BLOG_CR, namespace="elsewhere", image="registry.example/kbs:1")
    assert container_of(objs)["image"] == "registry.example/kbs:1"
    assert {o["metadata"]["namespace"] for o in objs} == {"elsewhere"}
    with pytest.raises(RenderError, match=r"^namespace:"):
        render(BLOG_CR, namespace="Not_A_Namespace")
    with pytest.raises(RenderError, match=r"^image:"):
        render(BLOG_CR, namespace="operators", image="")


# --- variants -----------------------------------------------------------------------------


def test_https_absent_means_no_https_mounts_and_http_probes() -> None:
    objs = render(
        cr(kbsHttpsKeySecretName=None, kbsHttpsCertSecretName=None), namespace="operators"
    )
    names = [name for name, _ in mounts_of(objs)]
    assert "https-key" not in names and "https-cert" not in names
    assert names == [n for n, _, _ in BLOG_LAYOUT if n not in ("https-key", "https-cert")]
    c = container_of(objs)
    assert c["readinessProbe"]["httpGet"]["scheme"] == "HTTP"
    assert c["livenessProbe"]["httpGet"]["scheme"] == "HTTP"


@pytest.mark.parametrize(
    ("present", "missing"),
    [
        ("kbsHttpsKeySecretName", "kbsHttpsCertSecretName"),
        ("kbsHttpsCertSecretName", "kbsHttpsKeySecretName"),
        ("kbsAttestationKeySecretName", "kbsAttestationCertSecretName"),
        ("kbsAttestationCertSecretName", "kbsAttestationKeySecretName"),
    ],
)
def test_half_a_secret_pair_is_refused(present: str, missing: str) -> None:
    changes: dict[str, Any] = {"kbsHttpsKeySecretName": None, "kbsHttpsCertSecretName": None}
    changes[present] = "only"
    kbsconfig = cr(**changes)
    with pytest.raises(RenderError, match=rf"^spec\.{missing}: required when spec\.{present}"):
        render(kbsconfig, namespace="operators")


def test_several_secret_resources() -> None:
    objs = render(cr(kbsSecretResources=["kbsres1", "kbsres2", "wrapped.keys"]), namespace="ns")
    repo = "/opt/confidential-containers/kbs/repository/default"
    resource_mounts = [(n, p) for n, p in mounts_of(objs) if p.startswith(repo + "/")]
    assert [p for _, p in resource_mounts] == [
        f"{repo}/kbsres1",
        f"{repo}/kbsres2",
        f"{repo}/wrapped.keys",
    ]
    # A dotted Secret name is a valid object name but not a valid volume name.
    assert resource_mounts[0][0] == "kbsres1"
    assert resource_mounts[1][0] == "kbsres2"
    derived = resource_mounts[2][0]
    assert derived.startswith("resource-") and "." not in derived
    secrets = {v["name"]: v["secret"]["secretName"] for v in volumes_of(objs) if "secret" in v}
    assert secrets[derived] == "wrapped.keys"
    # They stay between the https mounts and the reference values, as in v0.3.0.
    names = [n for n, _ in mounts_of(objs)]
    assert names.index("https-cert") < names.index("kbsres1") < names.index("reference-values")


def test_secret_resource_named_like_a_fixed_volume_gets_its_own_volume() -> None:
    objs = render(cr(kbsSecretResources=["default", "opa"]), namespace="ns")
    names = [v["name"] for v in volumes_of(objs)]
    assert len(names) == len(set(names))
    repo = "/opt/confidential-containers/kbs/repository/default"
    by_path = {p: n for n, p in mounts_of(objs)}
    assert by_path[f"{repo}/default"].startswith("resource-")
    assert by_path[f"{repo}/opa"].startswith("resource-")


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("kbsres1", r"spec\.kbsSecretResources"),
        ({"kbsres1": "x"}, r"spec\.kbsSecretResources"),
        (["kbsres1", 7], r"spec\.kbsSecretResources\[1\]"),
        (["kbsres1", ""], r"spec\.kbsSecretResources\[1\]"),
        (["Bad_Name"], r"spec\.kbsSecretResources\[0\]"),
        (["kbsres1", "kbsres1"], r"spec\.kbsSecretResources\[1\]"),
    ],
)
def test_bad_secret_resources(value: Any, field: str) -> None:
    with pytest.raises(RenderError, match=f"^{field}:"):
        render(cr(kbsSecretResources=value), namespace="operators")


def test_env_sorted_by_name_regardless_of_input_order() -> None:
    a = render(cr(KbsEnvVars={"RUST_LOG": "debug", "A_VAR": "1", "M": "x"}), namespace="ns")
    b = render(cr(KbsEnvVars={"M": "x", "A_VAR": "1", "RUST_LOG": "debug"}), namespace="ns")
    assert container_of(a)["env"] == [
        {"name": "A_VAR", "value": "1"},
        {"name": "M", "value": "x"},
        {"name": "RUST_LOG", "value": "debug"},
    ]
    assert to_yaml_stream(a) == to_yaml_stream(b)
    assert "env" not in container_of(render(cr(KbsEnvVars={}), namespace="ns"))


@pytest.mark.parametrize("env", [{"A": 1}, ["A=1"], {"A": None}])
def test_bad_env(env: Any) -> None:
    with pytest.raises(RenderError, match=r"^spec\.KbsEnvVars"):
        render(cr(KbsEnvVars=env), namespace="ns")


@pytest.mark.parametrize(
    ("section", "expected"), [(None, 1), ({}, 1), ({"replicas": 3}, 3), ({"replicas": 0}, 0)]
)
def test_replicas(section: Any, expected: int) -> None:
    objs = render(cr(KbsDeploymentSpec=section), namespace="ns")
    assert deployment_of(objs)["spec"]["replicas"] == expected


def test_several_replicas_mount_one_shared_session_key() -> None:
    from trustee.operator.render import (
        SESSION_KEY_SECRET,
        session_key_secret,
        shares_session_key,
    )
    from trustee.storage.session_keys import parse_key

    single = deployment_of(render(cr(), namespace="ns"))
    assert not shares_session_key(single)
    many = deployment_of(render(cr(KbsDeploymentSpec={"replicas": 2}), namespace="ns"))
    assert shares_session_key(many)
    container = many["spec"]["template"]["spec"]["containers"][0]
    assert container["env"][-1] == {
        "name": "KBS_SESSION_KEY_FILE",
        "value": "/etc/kbs-session-key/key",
    }
    secret = session_key_secret("ns", many)
    assert secret["metadata"]["name"] == SESSION_KEY_SECRET
    assert len(parse_key(base64.b64decode(secret["data"]["key"]))) == 32
    assert session_key_secret("ns", many)["data"] != secret["data"]  # fresh every time
    # A user's own KBS_SESSION_KEY_FILE (a key they manage) is kept.
    own = {"KBS_SESSION_KEY_FILE": "/etc/mine/key"}
    mine = deployment_of(
        render(cr(KbsDeploymentSpec={"replicas": 2}, KbsEnvVars=own), namespace="ns")
    )
    env = mine["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "KBS_SESSION_KEY_FILE", "value": "/etc/mine/key"}]


@pytest.mark.parametrize("value", [-1, "2", True, 1.5])
def test_bad_replicas(value: Any) -> None:
    with pytest.raises(RenderError, match=r"^spec\.KbsDeploymentSpec\.replicas:"):
        render(cr(KbsDeploymentSpec={"replicas": value}), namespace="ns")


def test_attestation_policy_configmap_mount() -> None:
    objs = render(cr(kbsAttestationPolicyConfigMapName="attestation-policy"), namespace="ns")
    names = [n for n, _ in mounts_of(objs)]
    # v0.3.0 item 4: after kbs-config, before the resource policy.
    assert names[2:5] == ["kbs-config", "attestation-policy", "opa"]
    assert mounts_of(objs)[3] == (
        "attestation-policy",
        "/opt/confidential-containers/attestation-service/policies/opa",
    )
    assert volumes_of(objs)[3] == {
        "name": "attestation-policy",
        "configMap": {"name": "attestation-policy"},
    }
    assert Ref("ConfigMap", "attestation-policy") in referenced(
        cr(kbsAttestationPolicyConfigMapName="attestation-policy")
    )


def test_resource_policy_is_optional() -> None:
    objs = render(cr(kbsResourcePolicyConfigMapName=None), namespace="ns")
    assert "opa" not in [n for n, _ in mounts_of(objs)]


@pytest.mark.parametrize("value", [None, "", "AllInOneDeployment"])
def test_empty_deployment_type_is_all_in_one(value: str | None) -> None:
    objs = render(cr(kbsDeploymentType=value), namespace="operators")
    assert objs == render(BLOG_CR, namespace="operators")
    assert len(deployment_of(objs)["spec"]["template"]["spec"]["containers"]) == 1
    assert ("reference-values", "/opt/confidential-containers/rvps/reference-values") in (
        mounts_of(objs)
    )


def ms(**spec_changes: Any) -> dict[str, Any]:
    """The blog's CR as a MicroservicesDeployment, with the two service ConfigMaps."""
    changes: dict[str, Any] = {
        "kbsDeploymentType": "MicroservicesDeployment",
        "kbsAsConfigMapName": "as-config",
        "kbsRvpsConfigMapName": "rvps-config",
    }
    return cr(**(changes | spec_changes))


# Every input of the verifier and the token signer the spec can name.
VERIFIER_INPUTS: dict[str, Any] = {
    "kbsAttestationPolicyConfigMapName": "att-policy",
    "tdxConfigSpec": {"kbsTdxConfigMapName": "tdx-qcnl"},
    "ibmSEConfigSpec": {"certStorePvc": "ibmse-pvc"},
    "kbsLocalCertCacheSpec": {"secrets": [{"secretName": "vcek-cache"}]},
    "kbsAttestationKeySecretName": "token-key",
    "kbsAttestationCertSecretName": "token-cert",
}


def mounts_by_container(objs: list[dict[str, Any]]) -> dict[str, list[str]]:
    containers = deployment_of(objs)["spec"]["template"]["spec"]["containers"]
    return {c["name"]: [m["name"] for m in c["volumeMounts"]] for c in containers}


def test_microservices_places_each_input_with_its_reader() -> None:
    kbsconfig = ms(**VERIFIER_INPUTS)
    objs = render(kbsconfig, namespace="ns")
    assert mounts_by_container(objs) == {
        "kbs": [
            "confidential-containers",
            "default",
            "kbs-config",
            "opa",
            "auth-secret",
            "https-key",
            "https-cert",
            "attestation-cert",
            "kbsres1",
        ],
        # What verifies, signs and appraises: the AS.
        "as": [
            "as-data",
            "attestation-policy",
            "tdx-config",
            "ibmse-pvc",
            "vcek-cache",
            "attestation-key",
            "attestation-cert",
            "as-config",
        ],
        "rvps": ["rvps-data", "reference-values", "rvps-config"],
    }
    # v0.3.0's volume order, the services' own after the KBS's two writable directories.
    names = [v["name"] for v in volumes_of(objs)]
    assert names[:4] == ["confidential-containers", "default", "as-data", "rvps-data"]
    assert names[-3:] == ["reference-values", "as-config", "rvps-config"]
    mounts = {
        c["name"]: {m["name"]: m for m in c["volumeMounts"]}
        for c in deployment_of(objs)["spec"]["template"]["spec"]["containers"]
    }
    assert mounts["as"]["as-config"] == {
        "name": "as-config",
        "mountPath": "/etc/as-config.json",
        "subPath": "as-config.json",
    }
    assert mounts["rvps"]["rvps-config"] == {
        "name": "rvps-config",
        "mountPath": "/etc/rvps.json",
        "subPath": "rvps-config.json",
    }
    assert mounts["as"]["attestation-policy"]["mountPath"] == (
        "/opt/confidential-containers/attestation-service/policies/opa"
    )
    assert referenced(kbsconfig)[-2:] == [
        Ref("ConfigMap", "as-config"),
        Ref("ConfigMap", "rvps-config"),
    ]


def test_microservices_env_everywhere_session_key_in_kbs_only() -> None:
    objs = render(
        ms(KbsEnvVars={"RUST_LOG": "debug"}, KbsDeploymentSpec={"replicas": 2}), namespace="ns"
    )
    containers = {
        c["name"]: c for c in deployment_of(objs)["spec"]["template"]["spec"]["containers"]
    }
    debug = {"name": "RUST_LOG", "value": "debug"}
    assert containers["kbs"]["env"] == [
        debug,
        {"name": "KBS_SESSION_KEY_FILE", "value": "/etc/kbs-session-key/key"},
    ]
    assert containers["as"]["env"] == containers["rvps"]["env"] == [debug]
    assert "session-key" in mounts_by_container(objs)["kbs"]
    assert "session-key" not in mounts_by_container(objs)["as"] + mounts_by_container(objs)["rvps"]
    assert "&id" not in to_yaml_stream(objs)  # each container its own env list


def test_microservices_service_volume_names_are_reserved() -> None:
    objs = render(ms(kbsSecretResources=["as-config", "rvps-data"]), namespace="ns")
    names = [v["name"] for v in volumes_of(objs)]
    assert len(names) == len(set(names))
    resources = [n for n in mounts_by_container(objs)["kbs"] if n.startswith("resource-")]
    assert len(resources) == 2


@pytest.mark.parametrize("field", ["kbsAsConfigMapName", "kbsRvpsConfigMapName"])
@pytest.mark.parametrize("value", [None, ""])
def test_microservices_needs_both_service_configs(field: str, value: str | None) -> None:
    with pytest.raises(RenderError, match=rf"^spec\.{field}: required; a MicroservicesDeployment"):
        render(ms(**{field: value}), namespace="ns")  # None: the field is absent
    # AllInOne has no use for them: neither mounted nor watched.
    plain = cr(kbsAsConfigMapName="as-config", kbsRvpsConfigMapName="rvps-config")
    container_of(render(plain, namespace="ns"))  # the one kbs container
    assert Ref("ConfigMap", "as-config") not in referenced(plain)


def test_mount_paths_are_unique_per_container() -> None:
    # A cache at the AS's config file collides in the AS container ...
    clash = {"secrets": [{"secretName": "vcek", "mountPath": "/etc/as-config.json"}]}
    with pytest.raises(RenderError, match=r"already used by .* in the as container$"):
        render(ms(kbsLocalCertCacheSpec=clash), namespace="ns")
    render(cr(kbsLocalCertCacheSpec=clash), namespace="ns")  # ... where there is one
    # The cache lives in the AS, so a path the KBS alone uses is free there.
    beside = {"secrets": [{"secretName": "vcek", "mountPath": "/etc/kbs-config"}]}
    render(ms(kbsLocalCertCacheSpec=beside), namespace="ns")
    with pytest.raises(RenderError, match=r"in the kbs container$"):
        render(cr(kbsLocalCertCacheSpec=beside), namespace="ns")


def service_objects(**data: dict[str, Any]) -> dict[Ref, dict[str, Any] | None]:
    objects = blog_objects()
    for name, entries in data.items():
        objects[Ref("ConfigMap", name)] = {"kind": "ConfigMap", **entries}
    return objects


def test_a_mounted_key_must_exist_when_the_configmap_is_at_hand() -> None:
    good = {"data": {"as-config.json": "{}"}}
    rvps = {"data": {"rvps-config.json": "{}"}}
    render(
        ms(), namespace="ns", objects=service_objects(**{"as-config": good, "rvps-config": rvps})
    )
    binary = {"binaryData": {"as-config.json": "e30="}}
    render(
        ms(), namespace="ns", objects=service_objects(**{"as-config": binary, "rvps-config": rvps})
    )
    # Absent: the operator waits for it; nothing to check yet.
    render(ms(), namespace="ns", objects=service_objects(**{"rvps-config": rvps}))
    wrong = {"data": {"config.json": "{}", "other": "x"}}
    with pytest.raises(RenderError) as info:
        render(
            ms(),
            namespace="ns",
            objects=service_objects(**{"as-config": wrong, "rvps-config": rvps}),
        )
    assert str(info.value) == (
        "spec.kbsAsConfigMapName: ConfigMap as-config has no key 'as-config.json', which the as "
        "container reads as /etc/as-config.json (keys: config.json, other)"
    )
    with pytest.raises(RenderError, match=r"^spec\.kbsRvpsConfigMapName: .* \(keys: none\)$"):
        render(
            ms(), namespace="ns", objects=service_objects(**{"as-config": good, "rvps-config": {}})
        )
    # The same holds for every one-key mount, AllInOne's TDX configuration too.
    tdx = cr(tdxConfigSpec={"kbsTdxConfigMapName": "tdx-qcnl"})
    with pytest.raises(
        RenderError, match=r"^spec\.tdxConfigSpec\.kbsTdxConfigMapName: .*'sgx_default_qcnl\.conf'"
    ):
        render(tdx, namespace="ns", objects=service_objects(**{"tdx-qcnl": {"data": {}}}))


def test_unknown_deployment_type_refused() -> None:
    with pytest.raises(RenderError, match=r"^spec\.kbsDeploymentType: 'AllInOne' is not one of"):
        render(cr(kbsDeploymentType="AllInOne"), namespace="ns")


@pytest.mark.parametrize(
    "field", ["kbsConfigMapName", "kbsAuthSecretName", "kbsRvpsRefValuesConfigMapName"]
)
@pytest.mark.parametrize("value", [None, ""])
def test_missing_mandatory_fields(field: str, value: str | None) -> None:
    kbsconfig = cr()
    if value is None:
        del kbsconfig["spec"][field]
    else:
        kbsconfig["spec"][field] = value
    with pytest.raises(RenderError, match=rf"^spec\.{field}: required"):
        render(kbsconfig, namespace="ns")


def test_missing_spec_names_the_first_mandatory_field() -> None:
    with pytest.raises(RenderError, match=r"^spec\.kbsConfigMapName: required"):
        render({"kind": "KbsConfig", "metadata": {"name": "x"}}, namespace="ns")
    with pytest.raises(RenderError, match=r"^spec: must be an object"):
        render({"kind": "KbsConfig", "spec": ["x"]}, namespace="ns")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "ClusterIP"),
        ("", "ClusterIP"),
        ("NodePort", "NodePort"),
        ("LoadBalancer", "LoadBalancer"),
    ],
)
def test_service_type(value: str | None, expected: str) -> None:
    _, svc = render(cr(kbsServiceType=value), namespace="ns")
    assert svc["spec"]["type"] == expected


def test_bad_service_type() -> None:
    with pytest.raises(RenderError, match=r"^spec\.kbsServiceType:"):
        render(cr(kbsServiceType="ExternalName"), namespace="ns")


def test_owner_references_on_both_objects_when_uid_known() -> None:
    kbsconfig = cr()
    kbsconfig["metadata"]["uid"] = "0b5e6c1e-1111-2222-3333-444455556666"
    objs = render(kbsconfig, namespace="operators")
    expected = [
        {
            "apiVersion": "confidentialcontainers.org/v1alpha1",
            "kind": "KbsConfig",
            "name": "kbsconfig-sample",
            "uid": "0b5e6c1e-1111-2222-3333-444455556666",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    for obj in objs:
        assert obj["metadata"]["ownerReferences"] == expected
    # Rendered into another namespace, an owner reference would be cross-namespace (invalid,
    # and the garbage collector would delete the objects), so there is none.
    for obj in render(kbsconfig, namespace="trustee-operator-system"):
        assert "ownerReferences" not in obj["metadata"]
    # No uid (CR-alone render of a file): nothing to point at.
    for obj in render(cr(), namespace="operators"):
        assert "ownerReferences" not in obj["metadata"]


def test_tdx_ibmse_cert_cache_and_attestation_token_order() -> None:
    kbsconfig = cr(
        kbsAttestationPolicyConfigMapName="att-policy",
        tdxConfigSpec={"kbsTdxConfigMapName": "tdx-qcnl"},
        ibmSEConfigSpec={"certStorePvc": "ibmse-pvc"},
        kbsLocalCertCacheSpec={
            "secrets": [
                {"secretName": "vcek-cache"},
                {"secretName": "other-cache", "mountPath": "/opt/cache/other"},
            ]
        },
        kbsAttestationKeySecretName="token-key",
        kbsAttestationCertSecretName="token-cert",
    )
    objs = render(kbsconfig, namespace="ns")
    mounts = container_of(objs)["volumeMounts"]
    assert [(m["name"], m["mountPath"], m.get("subPath")) for m in mounts] == [
        ("confidential-containers", "/opt/confidential-containers", None),
        ("default", "/opt/confidential-containers/kbs/repository/default", None),
        ("kbs-config", "/etc/kbs-config", None),
        (
            "attestation-policy",
            "/opt/confidential-containers/attestation-service/policies/opa",
            None,
        ),
        ("opa", "/opt/confidential-containers/opa", None),
        ("tdx-config", "/etc/sgx_default_qcnl.conf", "sgx_default_qcnl.conf"),
        ("ibmse-pvc", "/run/confidential-containers/ibmse/", None),
        ("auth-secret", "/etc/auth-secret", None),
        ("vcek-cache", "/opt/confidential-containers/attestation-service/kds-store/vcek", None),
        ("other-cache", "/opt/cache/other", None),
        ("https-key", "/etc/https-key", None),
        ("https-cert", "/etc/https-cert", None),
        ("attestation-key", "/etc/attestation-key", None),
        ("attestation-cert", "/etc/attestation-cert", None),
        ("kbsres1", "/opt/confidential-containers/kbs/repository/default/kbsres1", None),
        ("reference-values", "/opt/confidential-containers/rvps/reference-values", None),
    ]
    volumes = {v["name"]: v for v in volumes_of(objs)}
    assert volumes["tdx-config"] == {"name": "tdx-config", "configMap": {"name": "tdx-qcnl"}}
    assert volumes["ibmse-pvc"] == {
        "name": "ibmse-pvc",
        "persistentVolumeClaim": {"claimName": "ibmse-pvc"},
    }
    assert volumes["vcek-cache"] == {"name": "vcek-cache", "secret": {"secretName": "vcek-cache"}}
    assert volumes["attestation-key"] == {
        "name": "attestation-key",
        "secret": {"secretName": "token-key"},
    }
    assert [v["name"] for v in volumes_of(objs)] == [m["name"] for m in mounts]
    # The PVC is not a ConfigMap/Secret, so it feeds neither the hash nor the watch.
    assert referenced(kbsconfig) == [
        Ref("ConfigMap", "kbs-config"),
        Ref("ConfigMap", "att-policy"),
        Ref("ConfigMap", "resource-policy"),
        Ref("ConfigMap", "tdx-qcnl"),
        Ref("Secret", "kbs-auth-public-key"),
        Ref("Secret", "vcek-cache"),
        Ref("Secret", "other-cache"),
        Ref("Secret", "kbs-https-key"),
        Ref("Secret", "kbs-https-certificate"),
        Ref("Secret", "token-key"),
        Ref("Secret", "token-cert"),
        Ref("Secret", "kbsres1"),
        Ref("ConfigMap", "rvps-reference-values"),
    ]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (
            {"secrets": [{"mountPath": "/x"}]},
            r"spec\.kbsLocalCertCacheSpec\.secrets\[0\]\.secretName",
        ),
        (
            {"secrets": [{"secretName": "a", "mountPath": "rel"}]},
            r"spec\.kbsLocalCertCacheSpec\.secrets\[0\]\.mountPath",
        ),
        # Both default to the same directory: Kubernetes would refuse the pod.
        (
            {"secrets": [{"secretName": "a"}, {"secretName": "b"}]},
            r"spec\.kbsLocalCertCacheSpec\.secrets\[1\]\.mountPath",
        ),
        (
            {"secrets": [{"secretName": "a", "mountPath": "/etc/kbs-config/"}]},
            r"spec\.kbsLocalCertCacheSpec\.secrets\[0\]\.mountPath",
        ),
        ({"secrets": "a"}, r"spec\.kbsLocalCertCacheSpec\.secrets"),
        ("a", r"spec\.kbsLocalCertCacheSpec"),
    ],
)
def test_bad_cert_cache(spec: Any, field: str) -> None:
    with pytest.raises(RenderError, match=f"^{field}:"):
        render(cr(kbsLocalCertCacheSpec=spec), namespace="ns")


def test_output_validates_against_kubernetes_schema() -> None:
    kv = pytest.importorskip("kubernetes_validate")
    full = cr(
        **VERIFIER_INPUTS,
        KbsEnvVars={"RUST_LOG": "debug"},
        KbsDeploymentSpec={"replicas": 2},
        kbsServiceType="NodePort",
        kbsSecretResources=["kbsres1", "wrapped.keys", "default"],
    )
    full["metadata"]["uid"] = "0b5e6c1e-1111-2222-3333-444455556666"
    microservices = copy.deepcopy(full)
    microservices["spec"].update(
        kbsDeploymentType="MicroservicesDeployment",
        kbsAsConfigMapName="as-config",
        kbsRvpsConfigMapName="rvps-config",
    )
    for kbsconfig in (BLOG_CR, full, microservices):
        for obj in render(kbsconfig, namespace="operators", objects={}):
            kv.validate(obj, "1.32.0", strict=True)


# --- referenced() and the rollout hash ----------------------------------------------------


def test_referenced_blog_order() -> None:
    assert referenced(BLOG_CR) == [
        Ref("ConfigMap", "kbs-config"),
        Ref("ConfigMap", "resource-policy"),
        Ref("Secret", "kbs-auth-public-key"),
        Ref("Secret", "kbs-https-key"),
        Ref("Secret", "kbs-https-certificate"),
        Ref("Secret", "kbsres1"),
        Ref("ConfigMap", "rvps-reference-values"),
    ]


def test_referenced_deduplicates_and_never_raises() -> None:
    shared = cr(kbsResourcePolicyConfigMapName="kbs-config", kbsSecretResources=["kbs-https-key"])
    refs = referenced(shared)
    assert len(refs) == len(set(refs))
    assert refs.count(Ref("ConfigMap", "kbs-config")) == 1
    # A CR render() refuses still maps back from its ConfigMaps/Secrets.
    broken = cr(
        kbsDeploymentType="MicroservicesDeployment",
        kbsAsConfigMapName="as-config",
        kbsSecretResources="not-a-list",
        KbsEnvVars=["bad"],
        kbsHttpsCertSecretName=None,
    )
    refs = referenced(broken)
    assert Ref("ConfigMap", "kbs-config") in refs
    assert Ref("ConfigMap", "as-config") in refs
    assert Ref("Secret", "kbs-https-key") not in refs  # half a pair: not mounted
    assert referenced({}) == []
    assert referenced({"spec": "junk"}) == []


def cm(name: str, data: dict[str, str], **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "operators", **meta},
        "data": data,
    }


def blog_objects() -> dict[Ref, dict[str, Any] | None]:
    return {
        Ref("ConfigMap", "kbs-config"): cm("kbs-config", {"kbs-config.toml": "[http_server]\n"}),
        Ref("ConfigMap", "resource-policy"): cm(
            "resource-policy", {"policy.rego": "package policy default allow = true"}
        ),
        Ref("ConfigMap", "rvps-reference-values"): cm(
            "rvps-reference-values", {"reference-values.json": "[\n]\n"}
        ),
        Ref("Secret", "kbsres1"): {
            "kind": "Secret",
            "metadata": {"name": "kbsres1"},
            "data": {"key1": "cmVzMXZhbDE=", "key2": "cmVzMXZhbDI="},
        },
    }


def rollout_hash(objects: dict[Ref, dict[str, Any] | None]) -> str:
    return annotations_of(render(BLOG_CR, namespace="operators", objects=objects))[
        ROLLOUT_ANNOTATION
    ]


def test_hash_annotation_only_with_objects() -> None:
    assert annotations_of(render(BLOG_CR, namespace="operators")) == {}
    value = rollout_hash({})
    assert len(value) == 64 and int(value, 16) >= 0
    assert value == config_hash({ref: None for ref in referenced(BLOG_CR)})


def test_hash_changes_with_referenced_configmap_data() -> None:
    objects = blog_objects()
    before = rollout_hash(objects)
    objects[Ref("ConfigMap", "kbs-config")]["data"]["kbs-config.toml"] += "# edited\n"  # type: ignore[index]
    assert rollout_hash(objects) != before


def test_hash_changes_with_referenced_secret_data() -> None:
    objects = blog_objects()
    before = rollout_hash(objects)
    objects[Ref("Secret", "kbsres1")]["data"]["key1"] = "bmV3"  # type: ignore[index]
    assert rollout_hash(objects) != before


def test_hash_ignores_unrelated_objects_and_metadata() -> None:
    objects = blog_objects()
    before = rollout_hash(objects)
    objects[Ref("ConfigMap", "unrelated")] = cm("unrelated", {"a": "1"})
    objects[Ref("Secret", "kbs-client")] = {"kind": "Secret", "data": {"privateKey": "eA=="}}
    assert rollout_hash(objects) == before
    objects[Ref("ConfigMap", "unrelated")]["data"]["a"] = "2"  # type: ignore[index]
    assert rollout_hash(objects) == before
    objects[Ref("ConfigMap", "kbs-config")]["metadata"]["resourceVersion"] = "999"  # type: ignore[index]
    objects[Ref("ConfigMap", "kbs-config")]["metadata"]["labels"] = {"x": "y"}  # type: ignore[index]
    assert rollout_hash(objects) == before


def test_hash_absent_vs_empty_vs_present() -> None:
    objects = blog_objects()
    present = rollout_hash(objects)
    objects[Ref("Secret", "kbsres1")] = None
    absent = rollout_hash(objects)
    del objects[Ref("Secret", "kbsres1")]
    assert rollout_hash(objects) == absent  # not given == given as None
    objects[Ref("Secret", "kbsres1")] = {"kind": "Secret", "data": {}}
    empty = rollout_hash(objects)
    assert len({present, absent, empty}) == 3


def test_hash_secret_string_data_equals_data() -> None:
    as_data = {Ref("Secret", "s"): {"kind": "Secret", "data": {"k": "cmVzMXZhbDE="}}}
    as_string = {Ref("Secret", "s"): {"kind": "Secret", "stringData": {"k": "res1val1"}}}
    # Line-wrapped base64, as `base64` prints it into a hand-written manifest.
    other_form = {Ref("Secret", "s"): {"kind": "Secret", "data": {"k": "cmVzMX\nZhbDE=\n"}}}
    assert config_hash(as_data) == config_hash(as_string) == config_hash(other_form)


def test_hash_configmap_binary_data_counts() -> None:
    a = {Ref("ConfigMap", "c"): {"data": {"k": "v"}}}
    b = {Ref("ConfigMap", "c"): {"data": {"k": "v"}, "binaryData": {"b": "AA=="}}}
    assert config_hash(a) != config_hash(b)


def test_hash_independent_of_mapping_order() -> None:
    objects = blog_objects()
    reordered = dict(reversed(list(objects.items())))
    assert config_hash(objects) == config_hash(reordered)


def test_hash_survives_malformed_objects() -> None:
    assert len(config_hash({Ref("Secret", "s"): {"data": ["x"]}})) == 64
    assert len(config_hash({Ref("ConfigMap", "c"): {"data": "x"}})) == 64


def test_constants() -> None:
    assert ROLLOUT_ANNOTATION == "kbs.confidentialcontainers.org/config-hash"
    assert FINALIZER == "kbsconfig.confidentialcontainers.org/finalizer"
    assert DEFAULT_IMAGE == "localhost/trustee-py:dev"


def test_to_yaml_stream_round_trips() -> None:
    objs = render(BLOG_CR, namespace="operators", objects=blog_objects())
    text = to_yaml_stream(objs)
    assert text.startswith("---\n")
    assert text.count("\n---\n") == 1
    assert "&id" not in text and "*id" not in text  # no YAML aliases for a reviewer to chase
    assert list(yaml.safe_load_all(text)) == objs


def test_render_module_does_not_import_kopf() -> None:
    code = "import sys, trustee.operator.render, trustee.operator; assert 'kopf' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# --- the CLI ------------------------------------------------------------------------------


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trustee.cli", "operator", "render", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


@needs_seed
def test_cli_blog_cr_alone_matches_golden() -> None:
    result = run_cli("--kbsconfig", SEED / "kbsconfig-sample.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == (GOLDEN / "operator-blog.yaml").read_text()


@needs_seed
def test_cli_blog_with_seed_objects_matches_golden() -> None:
    result = run_cli(
        "--kbsconfig",
        SEED / "kbsconfig-sample.yaml",
        "--objects",
        *sorted(SEED.glob("*configmap.yaml")),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == (GOLDEN / "operator-blog-with-seed-objects.yaml").read_text()
    # The blog creates its Secrets with kubectl, so they are not among the seed files.
    warnings = result.stderr.splitlines()
    assert len(warnings) == 4
    assert all(w.startswith("warning: Secret/") for w in warnings)


def write(tmp_path: Path, name: str, docs: list[Any] | str) -> Path:
    path = tmp_path / name
    path.write_text(docs if isinstance(docs, str) else yaml.safe_dump_all(docs))
    return path


def test_cli_objects_feed_the_hash_like_render(tmp_path: Path) -> None:
    objects = blog_objects()
    kbsconfig = write(tmp_path, "kbsconfig.yaml", [BLOG_CR])
    # A List (as `kubectl get -o yaml` prints), a plain stream, unrelated kinds and documents.
    secret = copy.deepcopy(objects[Ref("Secret", "kbsres1")])
    configmaps = [o for r, o in objects.items() if r.kind == "ConfigMap"]
    listed = write(tmp_path, "cms.yaml", [{"kind": "List", "items": configmaps}, BLOG_CR])
    plain = write(tmp_path, "secret.yaml", [secret, {"kind": "Pod", "metadata": {"name": "p"}}])
    result = run_cli("--kbsconfig", kbsconfig, "--objects", listed, "--objects", plain)
    assert result.returncode == 0, result.stderr
    rendered = list(yaml.safe_load_all(result.stdout))
    assert rendered == render(BLOG_CR, namespace="operators", objects=objects)
    assert annotations_of(rendered)[ROLLOUT_ANNOTATION] == rollout_hash(objects)
    assert result.stderr.count("warning:") == 3  # the auth and https Secrets


def test_cli_namespace_and_image(tmp_path: Path) -> None:
    no_ns = copy.deepcopy(BLOG_CR)
    del no_ns["metadata"]["namespace"]
    path = write(tmp_path, "kbsconfig.yaml", [no_ns])
    result = run_cli("--kbsconfig", path)
    assert result.returncode == 0, result.stderr
    docs = list(yaml.safe_load_all(result.stdout))
    assert {d["metadata"]["namespace"] for d in docs} == {"trustee-operator-system"}
    result = run_cli("--kbsconfig", path, "--namespace", "kbs", "--image", "example/kbs:1")
    docs = list(yaml.safe_load_all(result.stdout))
    assert {d["metadata"]["namespace"] for d in docs} == {"kbs"}
    assert docs[0]["spec"]["template"]["spec"]["containers"][0]["image"] == "example/kbs:1"


def test_cli_objects_from_another_namespace_are_ignored(tmp_path: Path) -> None:
    kbsconfig = write(tmp_path, "kbsconfig.yaml", [BLOG_CR])
    other = cm("kbs-config", {"kbs-config.toml": "x"})
    other["metadata"]["namespace"] = "elsewhere"
    objects = write(tmp_path, "objects.yaml", [other])
    result = run_cli("--kbsconfig", kbsconfig, "--objects", objects)
    assert result.returncode == 0, result.stderr
    assert "ConfigMap/kbs-config is in namespace elsewhere, not operators; ignored" in (
        result.stderr
    )
    rendered = list(yaml.safe_load_all(result.stdout))
    assert annotations_of(rendered)[ROLLOUT_ANNOTATION] == rollout_hash({})


def assert_cli_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("trustee operator render: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_cli_error_microservices_without_an_as_config(tmp_path: Path) -> None:
    path = write(tmp_path, "ms.yaml", [cr(kbsDeploymentType="MicroservicesDeployment")])
    assert_cli_error(
        run_cli("--kbsconfig", path),
        str(path),
        "spec.kbsAsConfigMapName: required; a MicroservicesDeployment's AS reads its "
        "as-config.json from it",
    )


def test_cli_error_missing_field(tmp_path: Path) -> None:
    path = write(tmp_path, "cr.yaml", [cr(kbsAuthSecretName=None)])
    assert_cli_error(run_cli("--kbsconfig", path), str(path), "spec.kbsAuthSecretName: required")


def test_cli_error_unreadable_and_invalid_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert_cli_error(run_cli("--kbsconfig", missing), str(missing), "cannot read")
    bad = write(tmp_path, "bad.yaml", "spec: [unclosed\n  x: {\n")
    assert_cli_error(run_cli("--kbsconfig", bad), str(bad), "invalid YAML")
    no_cr = write(tmp_path, "no-cr.yaml", [cm("a", {})])
    assert_cli_error(run_cli("--kbsconfig", no_cr), str(no_cr), "no KbsConfig")
    two = write(tmp_path, "two.yaml", [BLOG_CR, BLOG_CR])
    assert_cli_error(run_cli("--kbsconfig", two), str(two), "2 KbsConfig documents")
    good = write(tmp_path, "good.yaml", [BLOG_CR])
    assert_cli_error(run_cli("--kbsconfig", good, "--objects", bad), str(bad), "invalid YAML")
    dup = write(tmp_path, "dup.yaml", [cm("kbs-config", {}), cm("kbs-config", {})])
    assert_cli_error(
        run_cli("--kbsconfig", good, "--objects", dup), str(dup), "ConfigMap/kbs-config"
    )
