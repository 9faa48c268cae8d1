"""MicroservicesDeployment: the KBS, the AS and the RVPS as three containers of one pod.

The sample in deploy/samples/microservices is rendered with its own ConfigMaps and Secrets and
checked end to end without a cluster: the manifests against the Kubernetes schemas, the KBS
config against the AS container, the AS config against the RVPS container, and every file a
configuration names against the mounts of the container that reads it.
"""

from __future__ import annotations

import copy
import json
import shutil
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from tests.unit.test_deploy_manifests import (
    K8S_VERSIONS,
    MICROSERVICES,
    kustomize,
    validate_kbsconfig,
    with_placeholder_keys,
)
from tests.unit.test_operator_render import run_cli
from trustee.operator.render import (
    ROLLOUT_ANNOTATION,
    Ref,
    RenderError,
    referenced,
    render,
    to_yaml_stream,
)

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden" / "operator-microservices.yaml"
NAMESPACE = "trustee-operator-system"

Obj = dict[str, Any]


@pytest.fixture
def sample(tmp_path: Path) -> list[Obj]:
    """The sample's objects as `kubectl apply -k` would create them."""
    directory = tmp_path / "microservices"
    shutil.copytree(MICROSERVICES, directory)
    return kustomize(with_placeholder_keys(directory))


def kbsconfig_of(objs: list[Obj]) -> Obj:
    (kbsconfig,) = [o for o in objs if o["kind"] == "KbsConfig"]
    return copy.deepcopy(kbsconfig)


def objects_of(objs: list[Obj]) -> dict[Ref, Obj]:
    return {Ref(o["kind"], o["metadata"]["name"]): o for o in objs if o["kind"] != "KbsConfig"}


def rendered(objs: list[Obj]) -> list[Obj]:
    return render(kbsconfig_of(objs), namespace=NAMESPACE, objects=objects_of(objs))


def pod_of(objs: list[Obj]) -> Obj:
    pod: Obj = objs[0]["spec"]["template"]["spec"]
    return pod


def containers_of(objs: list[Obj]) -> dict[str, Obj]:
    return {c["name"]: c for c in pod_of(objs)["containers"]}


def argument(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def port_of(address: str) -> int:
    port = urlsplit(address if "//" in address else f"//{address}").port
    assert port is not None, address
    return port


def file_source(objs: list[Obj], container: Obj, path: str) -> tuple[Obj, str]:
    """The ConfigMap and key the container sees at `path`: a subPath mount of exactly that
    file, else the deepest directory mount holding it."""
    volumes = {v["name"]: v for v in pod_of(objs)["volumes"]}
    target = PurePosixPath(path)
    best: tuple[int, Obj, str] | None = None
    for mount in container["volumeMounts"]:
        where = PurePosixPath(mount["mountPath"])
        if "subPath" in mount:
            if where == target:
                best = (len(where.parts), volumes[mount["name"]], mount["subPath"])
                break
            continue
        if target.parent == where and (best is None or len(where.parts) > best[0]):
            best = (len(where.parts), volumes[mount["name"]], target.name)
    assert best is not None, f"{path} is not mounted in the {container['name']} container"
    _, volume, key = best
    assert "configMap" in volume, f"{path} comes from {volume}, not a ConfigMap"
    return volume, key


def read_mounted(sample: list[Obj], out: list[Obj], container: str, path: str) -> str:
    """The text the container reads at `path`, from the sample's ConfigMaps."""
    volume, key = file_source(out, containers_of(out)[container], path)
    configmap = objects_of(sample)[Ref("ConfigMap", volume["configMap"]["name"])]
    assert key in configmap["data"], f"{path}: ConfigMap has no key {key}"
    return str(configmap["data"][key])


def under_a_mount(container: Obj, path: str) -> Obj:
    """The deepest mount of `container` at or above `path`."""
    target = PurePosixPath(path)
    holding = [
        m
        for m in container["volumeMounts"]
        if target == PurePosixPath(m["mountPath"])
        or PurePosixPath(m["mountPath"]) in target.parents
    ]
    assert holding, f"{path} lies under no mount of the {container['name']} container"
    return max(holding, key=lambda m: len(PurePosixPath(m["mountPath"]).parts))


# --- the manifests ----------------------------------------------------------------------------


def test_sample_renders_one_pod_of_three_valid_containers(sample: list[Obj]) -> None:
    validate_kbsconfig(kbsconfig_of(sample))
    out = rendered(sample)
    assert [o["kind"] for o in out] == ["Deployment", "Service"]
    for obj in out:
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
    containers = containers_of(out)
    assert list(containers) == ["kbs", "as", "rvps"]
    assert {c["image"] for c in containers.values()} == {"localhost/trustee-py:dev"}
    assert containers["as"]["command"] == [
        "grpc-as",
        "--socket",
        "0.0.0.0:50004",
        "--config-file",
        "/etc/as-config.json",
    ]
    assert containers["rvps"]["command"] == [
        "rvps",
        "--address",
        "0.0.0.0:50003",
        "--config",
        "/etc/rvps.json",
    ]
    # Only the KBS is a Service; the AS and the RVPS are the pod's own.
    assert [p["port"] for p in out[1]["spec"]["ports"]] == [8080]
    assert out[0]["spec"]["template"]["metadata"]["annotations"][ROLLOUT_ANNOTATION]


def test_ports_probes_and_listen_addresses_agree(sample: list[Obj]) -> None:
    containers = containers_of(rendered(sample))
    ports = []
    for name, flag in (("as", "--socket"), ("rvps", "--address")):
        c = containers[name]
        (port,) = c["ports"]
        listens = port_of(argument(c["command"], flag))
        assert port == {"name": name, "containerPort": listens, "protocol": "TCP"}
        for probe in ("readinessProbe", "livenessProbe"):
            assert c[probe]["tcpSocket"] == {"port": listens}
        ports.append(listens)
    assert containers["kbs"]["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    ports.append(containers["kbs"]["ports"][0]["containerPort"])
    assert len(set(ports)) == 3  # the containers of a pod share its network namespace


def test_volumes_and_mounts_are_consistent(sample: list[Obj]) -> None:
    out = rendered(sample)
    volumes = [v["name"] for v in pod_of(out)["volumes"]]
    assert len(volumes) == len(set(volumes))
    used: set[str] = set()
    for c in containers_of(out).values():
        paths = [m["mountPath"].rstrip("/") for m in c["volumeMounts"]]
        assert len(paths) == len(set(paths)), c["name"]
        used |= {m["name"] for m in c["volumeMounts"]}
    assert used == set(volumes)
    # Each service has its own writable memory-backed directory: the AS and the RVPS never
    # see the KBS's repository.
    for name, volume in (
        ("kbs", "confidential-containers"),
        ("as", "as-data"),
        ("rvps", "rvps-data"),
    ):
        mount = under_a_mount(containers_of(out)[name], "/opt/confidential-containers/x")
        assert mount["name"] == volume
    emptydirs = {v["name"]: v.get("emptyDir") for v in pod_of(out)["volumes"]}
    assert emptydirs["as-data"] == emptydirs["rvps-data"] == {"medium": "Memory"}


# --- the configurations against the containers ------------------------------------------------


def config_read_by(sample: list[Obj], out: list[Obj], name: str, flag: str) -> str:
    """The configuration file the container's command line names with `flag`, as it reads it."""
    return read_mounted(sample, out, name, argument(containers_of(out)[name]["command"], flag))


def assert_reaches(out: list[Obj], address: str, name: str) -> None:
    """`address` is the container's port on the pod's loopback, which its containers share."""
    parts = urlsplit(address)
    assert parts.scheme == "http"
    assert parts.hostname == "127.0.0.1"
    assert parts.port == containers_of(out)[name]["ports"][0]["containerPort"]


def test_kbs_config_points_at_the_as(sample: list[Obj]) -> None:
    out = rendered(sample)
    service = tomllib.loads(config_read_by(sample, out, "kbs", "--config-file"))[
        "attestation_service"
    ]
    assert service["type"] == "coco_as_grpc"
    assert_reaches(out, service["as_addr"], "as")


def test_as_config_points_at_the_rvps(sample: list[Obj]) -> None:
    out = rendered(sample)
    config = json.loads(config_read_by(sample, out, "as", "--config-file"))
    assert config["rvps_config"]["type"] == "GrpcRemote"
    assert_reaches(out, config["rvps_config"]["address"], "rvps")
    as_container = containers_of(out)["as"]
    # Where the AS writes and reads policies is its own writable directory, where an
    # attestation policy ConfigMap would be mounted.
    assert under_a_mount(as_container, config["work_dir"])["name"] == "as-data"
    with_policy = kbsconfig_of(sample)
    with_policy["spec"]["kbsAttestationPolicyConfigMapName"] = "attestation-policy"
    policy_dir = f"{config['attestation_token_broker']['policy_dir']}/opa"
    mounted = containers_of(render(with_policy, namespace=NAMESPACE))["as"]
    assert under_a_mount(mounted, f"{policy_dir}/default.rego")["name"] == "attestation-policy"


def test_rvps_config_reads_the_mounted_reference_values(sample: list[Obj]) -> None:
    out = rendered(sample)
    rvps = containers_of(out)["rvps"]
    config = json.loads(config_read_by(sample, out, "rvps", "--config"))
    store = config["storage"]
    assert store["type"] == "LocalJson"
    values = json.loads(read_mounted(sample, out, "rvps", store["file_path"]))
    assert isinstance(values, list)
    volume, _ = file_source(out, rvps, store["file_path"])
    assert volume["name"] == "reference-values"
    # The reference values are the RVPS's alone.
    assert "reference-values" not in {m["name"] for m in containers_of(out)["kbs"]["volumeMounts"]}


def test_every_file_the_kbs_config_names_is_mounted_in_kbs(sample: list[Obj]) -> None:
    out = rendered(sample)
    kbs = containers_of(out)["kbs"]
    config = tomllib.loads(read_mounted(sample, out, "kbs", "/etc/kbs-config/kbs-config.toml"))
    files = {
        "https-key": config["http_server"]["private_key"],
        "https-cert": config["http_server"]["certificate"],
        "auth-secret": config["admin"]["auth_public_key"],
        "opa": config["policy_engine"]["policy_path"],
    }
    for volume, path in files.items():
        assert under_a_mount(kbs, path)["name"] == volume, path
    assert (
        under_a_mount(kbs, f"{config['plugins'][0]['dir_path']}/default/kbsres1/key1")["name"]
        == "kbsres1"
    )


# --- the golden and the CLI -------------------------------------------------------------------


def test_cli_renders_the_sample_as_the_golden() -> None:
    result = run_cli("--kbsconfig", MICROSERVICES / "kbsconfig.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    kbsconfig = yaml.safe_load((MICROSERVICES / "kbsconfig.yaml").read_text())
    assert result.stdout == to_yaml_stream(render(kbsconfig, namespace=NAMESPACE))
    assert result.stdout == GOLDEN.read_text(), "if intended, regenerate it and review"


def test_cli_names_a_missing_config_key(tmp_path: Path, sample: list[Obj]) -> None:
    broken = [o for o in sample if o["kind"] != "KbsConfig"]
    for obj in broken:
        if obj["metadata"]["name"] == "as-config-grpc":
            obj["data"] = {"config.json": obj["data"]["as-config.json"]}
    objects = tmp_path / "objects.yaml"
    objects.write_text(yaml.safe_dump_all(broken))
    result = run_cli("--kbsconfig", MICROSERVICES / "kbsconfig.yaml", "--objects", objects)
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("trustee operator render: ")
    assert "spec.kbsAsConfigMapName: ConfigMap as-config-grpc has no key 'as-config.json'" in line
    assert "/etc/as-config.json" in line and "config.json" in line


# --- what the operator watches ----------------------------------------------------------------


def test_referenced_includes_the_service_configs_only_for_microservices(
    sample: list[Obj],
) -> None:
    kbsconfig = kbsconfig_of(sample)
    refs = referenced(kbsconfig)
    assert Ref("ConfigMap", "as-config-grpc") in refs
    assert Ref("ConfigMap", "rvps-config-grpc") in refs
    assert set(refs) == set(objects_of(sample))
    kbsconfig["spec"]["kbsDeploymentType"] = "AllInOneDeployment"
    assert Ref("ConfigMap", "as-config-grpc") not in referenced(kbsconfig)


@pytest.mark.parametrize("name", ["as-config-grpc", "rvps-config-grpc"])
def test_service_config_change_rolls_the_pods(sample: list[Obj], name: str) -> None:
    before = rendered(sample)[0]["spec"]["template"]["metadata"]["annotations"]
    changed = [dict(o) for o in sample]
    for obj in changed:
        if obj["metadata"]["name"] == name:
            obj["data"] = {k: v + "\n" for k, v in obj["data"].items()}
    after = rendered(changed)[0]["spec"]["template"]["metadata"]["annotations"]
    assert after[ROLLOUT_ANNOTATION] != before[ROLLOUT_ANNOTATION]


def test_render_refuses_a_sample_without_its_service_configs(sample: list[Obj]) -> None:
    for field in ("kbsAsConfigMapName", "kbsRvpsConfigMapName"):
        kbsconfig = kbsconfig_of(sample)
        del kbsconfig["spec"][field]
        with pytest.raises(RenderError, match=rf"^spec\.{field}: required; a Microservices"):
            render(kbsconfig, namespace=NAMESPACE)


def test_the_sample_configs_load_in_the_servers_that_read_them() -> None:
    """The three ConfigMaps are read by our own loaders as the containers will read them: the
    KBS on the gRPC AS, the AS on the remote RVPS, the RVPS on its reference-value file."""
    from trustee.config import as_file, rvps_file
    from trustee.config.loader import parse as parse_kbs

    sample = REPO / "deploy" / "samples" / "microservices"
    kbs = parse_kbs((sample / "kbs-config.toml").read_text(), "kbs-config.toml")
    assert kbs.attestation_service is not None
    remote = kbs.attestation_service.remote
    assert remote is not None and remote.type == "coco_as_grpc"
    assert urlsplit(remote.address).port == 50004
    as_cfg = as_file.parse((sample / "as-config.json").read_text(), "as-config.json")
    assert as_cfg.service.rvps.type == "GrpcRemote"
    assert as_cfg.service.rvps.address is not None
    assert as_cfg.service.rvps.address.endswith(":50003")
    rvps = rvps_file.parse((sample / "rvps-config.json").read_text(), "rvps-config.json")
    assert rvps.records_file == (
        "/opt/confidential-containers/rvps/reference-values/reference-values.json"
    )
