"""The kopf operator against kmock's Kubernetes emulator, seeded with the blog's objects.

Sync tests that drive asyncio themselves (the suite runs under pytest-trio); the harness is in
operator_harness.py. Acceptance: create, update of a referenced ConfigMap (the rollout
annotation changes), delete (the finalizer is released, also when the Deployment is gone).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import kmock
import kopf
import pytest

from tests.unit.operator_harness import (
    CONFIGMAPS,
    DEPLOYMENTS,
    IMAGE,
    KBSCONFIG_NAME,
    KBSCONFIGS,
    MICROSERVICES_SAMPLE,
    NAMESPACE,
    SECRETS,
    SERVICES,
    Cluster,
    blog_configmaps,
    blog_kbsconfig,
    blog_secrets,
    eventually,
    microservices_configmaps,
    microservices_kbsconfig,
    require_seed,
    running_operator,
    secret,
)
from trustee.operator import kopf_operator
from trustee.operator.render import (
    DEFAULT_IMAGE,
    DEPLOYMENT_NAME,
    FINALIZER,
    ROLLOUT_ANNOTATION,
    SERVICE_NAME,
)

pytestmark = pytest.mark.filterwarnings("ignore:read_binary is deprecated:DeprecationWarning")

Scenario = Callable[[Cluster], Awaitable[None]]


def run_with_operator(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    scenario: Scenario,
    *,
    objects: list[dict[str, Any]] | None = None,
    resync_interval: float | None = None,
) -> None:
    require_seed()
    seeded = objects if objects is not None else blog_configmaps() + blog_secrets()

    async def main() -> None:
        async with running_operator(
            tmp_path, monkeypatch, objects=seeded, resync_interval=resync_interval
        ) as cluster:
            await scenario(cluster)

    asyncio.run(main())


# -- small readers over the emulator's state ----------------------------------------------------


def deployment(c: Cluster) -> dict[str, Any] | None:
    return c.get(DEPLOYMENTS, DEPLOYMENT_NAME)


def rollout_hash(c: Cluster) -> str | None:
    dep = deployment(c)
    if dep is None:
        return None
    value = dep["spec"]["template"]["metadata"].get("annotations", {}).get(ROLLOUT_ANNOTATION)
    return str(value) if value is not None else None


def status(c: Cluster) -> dict[str, Any]:
    kbs = c.get(KBSCONFIGS, KBSCONFIG_NAME) or {}
    return dict(kbs.get("status") or {})


def ready_condition(c: Cluster) -> dict[str, Any] | None:
    for cond in status(c).get("conditions") or ():
        if cond.get("type") == "Ready":
            return dict(cond)
    return None


def reason_is(c: Cluster, reason: str) -> dict[str, Any] | None:
    cond = ready_condition(c)
    return cond if cond is not None and cond.get("reason") == reason else None


def operator_requests(c: Cluster, mark: int, method: str, path: str) -> list[Any]:
    return [
        r
        for r in c.requests_since(mark)
        if r.method == method
        and r.url.path == path
        and r.headers.get("User-Agent") == kopf_operator.USER_AGENT
    ]


def kopf_progress(c: Cluster, handler_id: str) -> dict[str, Any] | None:
    kbs = c.get(KBSCONFIGS, KBSCONFIG_NAME) or {}
    raw = (kbs.get("metadata", {}).get("annotations") or {}).get(f"kopf.zalando.org/{handler_id}")
    return dict(json.loads(raw)) if raw else None


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def create_blog_kbsconfig(c: Cluster) -> dict[str, Any]:
    await c.create(KBSCONFIGS, blog_kbsconfig())
    dep: dict[str, Any] = await eventually(lambda: deployment(c), what="the Deployment")
    await eventually(lambda: c.get(SERVICES, SERVICE_NAME), what="the Service")
    await eventually(lambda: reason_is(c, "DeploymentNotReady"), what="the first status")
    return dep


# -- (1) create ---------------------------------------------------------------------------------


def test_create_makes_deployment_service_and_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(c: Cluster) -> None:
        dep = await create_blog_kbsconfig(c)

        pod = dep["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == IMAGE
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts["/etc/kbs-config"] == "kbs-config"
        assert mounts["/opt/confidential-containers/kbs/repository/default/kbsres1"] == "kbsres1"
        assert mounts["/etc/https-key"] == "https-key"
        assert mounts["/etc/https-cert"] == "https-cert"
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["kbs-config"]["configMap"]["name"] == "kbs-config"
        assert volumes["kbsres1"]["secret"]["secretName"] == "kbsres1"
        assert volumes["https-key"]["secret"]["secretName"] == "kbs-https-key"
        assert dep["spec"]["selector"]["matchLabels"] == {"app": "kbs"}

        svc = c.get(SERVICES, SERVICE_NAME)
        assert svc is not None
        assert svc["spec"]["selector"] == {"app": "kbs"}
        assert [(p["name"], p["port"]) for p in svc["spec"]["ports"]] == [("kbs-port", 8080)]

        kbs = c.get(KBSCONFIGS, KBSCONFIG_NAME)
        assert kbs is not None
        assert FINALIZER in kbs["metadata"]["finalizers"]
        st = status(c)
        assert st["observedGeneration"] == 1
        assert st["isReady"] is False
        assert st["configHash"] == rollout_hash(c)
        cond = ready_condition(c)
        assert cond is not None
        assert (cond["status"], cond["observedGeneration"]) == ("False", 1)
        assert "0/1" in cond["message"]

        # kmock has no Deployment controller: report one ready replica by hand.
        await c.patch(
            DEPLOYMENTS,
            DEPLOYMENT_NAME,
            {"status": {"replicas": 1, "readyReplicas": 1}},
            subresource="status",
        )
        cond = await eventually(lambda: reason_is(c, "DeploymentReady"), what="Ready=True")
        assert cond["status"] == "True"
        assert status(c)["isReady"] is True

    run_with_operator(tmp_path, monkeypatch, scenario)


# -- (2) update ---------------------------------------------------------------------------------


def test_referenced_configmap_change_rolls_out_unrelated_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(c: Cluster) -> None:
        await create_blog_kbsconfig(c)
        first = rollout_hash(c)
        assert first
        deployment_path = c.path(DEPLOYMENTS, DEPLOYMENT_NAME)
        list_path = c.path(KBSCONFIGS)

        # An unrelated ConfigMap, created and then changed: the operator looks, touches nothing.
        mark = c.mark()
        unrelated = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "unrelated", "namespace": NAMESPACE, "resourceVersion": "1"},
            "data": {"a": "1"},
        }
        await c.create(CONFIGMAPS, unrelated)
        await c.patch(CONFIGMAPS, "unrelated", {"data": {"a": "2"}})
        await eventually(
            lambda: len(operator_requests(c, mark, "GET", list_path)) >= 2,
            what="the operator to map both ConfigMap events",
        )
        await asyncio.sleep(0.2)  # room for a (wrong) follow-up write
        assert rollout_hash(c) == first
        assert not operator_requests(c, mark, "PATCH", deployment_path)

        # The KBS configuration itself changes: a new pod-template hash, i.e. a rollout.
        toml = blog_configmaps()[0]["data"]["kbs-config.toml"]
        await c.patch(CONFIGMAPS, "kbs-config", {"data": {"kbs-config.toml": toml + "# v2\n"}})
        second = await eventually(
            lambda: rollout_hash(c) not in (None, first) and rollout_hash(c),
            what="a new rollout annotation",
        )
        await eventually(lambda: status(c).get("configHash") == second, what="status.configHash")

        # Secrets count as well (a rotated resource).
        await c.patch(SECRETS, "kbsres1", {"data": {"key1": b64("res1val1-rotated")}})
        await eventually(
            lambda: rollout_hash(c) not in (None, first, second),
            what="a rollout for the Secret change",
        )

    run_with_operator(tmp_path, monkeypatch, scenario)


def test_spec_update_is_applied_with_sorted_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(c: Cluster) -> None:
        await create_blog_kbsconfig(c)
        # kmock does not bump metadata.generation; the patch does it as the API server would.
        await c.patch(
            KBSCONFIGS,
            KBSCONFIG_NAME,
            {
                "metadata": {"generation": 2},
                "spec": {"KbsEnvVars": {"RUST_LOG": "debug", "A": "1"}},
            },
        )

        def env() -> list[dict[str, str]] | None:
            dep = deployment(c)
            assert dep is not None
            value = dep["spec"]["template"]["spec"]["containers"][0].get("env")
            return list(value) if value else None

        assert await eventually(env, what="env in the pod template") == [
            {"name": "A", "value": "1"},
            {"name": "RUST_LOG", "value": "debug"},
        ]
        await eventually(lambda: status(c).get("observedGeneration") == 2, what="generation 2")

    run_with_operator(tmp_path, monkeypatch, scenario)


def test_periodic_resync_reverts_a_silent_hand_edit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def container(c: Cluster) -> dict[str, Any]:
        dep = deployment(c)
        assert dep is not None
        return dict(dep["spec"]["template"]["spec"]["containers"][0])

    async def scenario(c: Cluster) -> None:
        await create_blog_kbsconfig(c)
        edited = dict(container(c), image="someone/else:1")
        c.tamper(
            DEPLOYMENTS, DEPLOYMENT_NAME, {"spec": {"template": {"spec": {"containers": [edited]}}}}
        )
        assert container(c)["image"] == "someone/else:1"
        await eventually(lambda: container(c)["image"] == IMAGE, what="the resync to undo it")
        # Deleting stops the timer before the operator exits (kopf would otherwise wait for it).
        await c.delete(KBSCONFIGS, KBSCONFIG_NAME)
        await eventually(lambda: c.get(KBSCONFIGS, KBSCONFIG_NAME) is None, what="CR gone")

    run_with_operator(tmp_path, monkeypatch, scenario, resync_interval=0.3)


# -- (3) delete ---------------------------------------------------------------------------------


def test_delete_removes_objects_and_releases_finalizer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(c: Cluster) -> None:
        await create_blog_kbsconfig(c)
        await c.delete(KBSCONFIGS, KBSCONFIG_NAME)
        await eventually(lambda: c.get(KBSCONFIGS, KBSCONFIG_NAME) is None, what="CR gone")
        assert deployment(c) is None
        assert c.get(SERVICES, SERVICE_NAME) is None

    run_with_operator(tmp_path, monkeypatch, scenario)


def test_delete_with_deployment_already_gone_still_releases_finalizer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(c: Cluster) -> None:
        await create_blog_kbsconfig(c)
        # Gone without a watch event, so the operator cannot recreate it before finalizing:
        # the finalizer meets a NotFound, the case where trustee-operator's finalizer sticks.
        c.vanish(DEPLOYMENTS, DEPLOYMENT_NAME)
        mark = c.mark()
        await c.delete(KBSCONFIGS, KBSCONFIG_NAME)
        await eventually(lambda: c.get(KBSCONFIGS, KBSCONFIG_NAME) is None, what="CR gone")
        assert operator_requests(c, mark, "DELETE", c.path(DEPLOYMENTS, DEPLOYMENT_NAME))
        assert c.get(SERVICES, SERVICE_NAME) is None

    run_with_operator(tmp_path, monkeypatch, scenario)


# -- (4) missing reference; invalid spec ------------------------------------------------------


def test_missing_secret_reported_then_reconciled_once_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(c: Cluster) -> None:
        await c.create(KBSCONFIGS, blog_kbsconfig())
        cond = await eventually(lambda: reason_is(c, "MissingReference"), what="MissingReference")
        assert cond["status"] == "False"
        assert "kbs-https-key" in cond["message"]
        assert status(c)["isReady"] is False
        assert deployment(c) is None
        # kopf's own record: the handler failed temporarily and will retry after a delay.
        progress = await eventually(lambda: kopf_progress(c, "reconcile"), what="kopf progress")
        assert progress["retries"] >= 1 and progress["delayed"]
        assert progress["success"] is False and progress["failure"] is False
        assert "kbs-https-key" in progress["message"]

        await c.create(SECRETS, secret("kbs-https-key", {"https.key": "key"}))
        await eventually(lambda: deployment(c), what="the Deployment")
        await eventually(lambda: reason_is(c, "DeploymentNotReady"), what="the reconciled status")

        # A referenced Secret deleted later is reported the same way.
        await c.delete(SECRETS, "kbsres1")
        cond = await eventually(lambda: reason_is(c, "MissingReference"), what="MissingReference")
        assert "kbsres1" in cond["message"]

    objects = blog_configmaps() + [
        s for s in blog_secrets() if s["metadata"]["name"] != "kbs-https-key"
    ]
    run_with_operator(tmp_path, monkeypatch, scenario, objects=objects)


def test_microservices_deployment_is_reconciled_and_follows_its_service_configs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(c: Cluster) -> None:
        await c.create(KBSCONFIGS, microservices_kbsconfig())
        dep = await eventually(lambda: deployment(c), what="the Deployment")
        await eventually(lambda: reason_is(c, "DeploymentNotReady"), what="the first status")
        containers = {x["name"]: x for x in dep["spec"]["template"]["spec"]["containers"]}
        assert list(containers) == ["kbs", "as", "rvps"]
        assert {x["image"] for x in containers.values()} == {IMAGE}
        mounts = {m["mountPath"]: m for m in containers["as"]["volumeMounts"]}
        assert mounts["/etc/as-config.json"]["subPath"] == "as-config.json"
        volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
        assert volumes["as-config"]["configMap"]["name"] == "as-config-grpc"
        first = rollout_hash(c)

        # The AS's configuration changes: the pods roll.
        text = (MICROSERVICES_SAMPLE / "as-config.json").read_text()
        await c.patch(CONFIGMAPS, "as-config-grpc", {"data": {"as-config.json": text + "\n"}})
        await eventually(
            lambda: rollout_hash(c) not in (None, first), what="a rollout for the AS config"
        )
        # The RVPS's disappears: reported by name.
        await c.delete(CONFIGMAPS, "rvps-config-grpc")
        cond = await eventually(lambda: reason_is(c, "MissingReference"), what="MissingReference")
        assert "rvps-config-grpc" in cond["message"]

    run_with_operator(
        tmp_path, monkeypatch, scenario, objects=microservices_configmaps() + blog_secrets()
    )


def test_microservices_without_an_rvps_config_is_an_invalid_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(c: Cluster) -> None:
        kbs = microservices_kbsconfig()
        del kbs["spec"]["kbsRvpsConfigMapName"]
        await c.create(KBSCONFIGS, kbs)
        cond = await eventually(lambda: reason_is(c, "InvalidSpec"), what="InvalidSpec")
        assert cond["message"].startswith("spec.kbsRvpsConfigMapName: required")
        assert deployment(c) is None

    run_with_operator(
        tmp_path, monkeypatch, scenario, objects=microservices_configmaps() + blog_secrets()
    )


# -- the small API client against the emulator (no kopf) ---------------------------------------


def test_kube_api_not_found_merge_patch_and_401_retry() -> None:
    async def main() -> None:
        async with kmock.KubernetesEmulator() as mock, kmock.Server(mock) as server:
            mock.resources.load_bundled()
            mock[kmock.headers({"Authorization": "Bearer expired"})] << 401
            tokens = iter(["expired", "fresh"])
            resolved: list[str] = []

            def credentials() -> kopf.ConnectionInfo:
                resolved.append(next(tokens))
                return kopf.ConnectionInfo(server=str(server.url), token=resolved[-1])

            api = kopf_operator.KubeApi(credentials)
            try:
                path = kopf_operator.object_path("v1", "configmaps", NAMESPACE)
                # 401 first, then the credentials are resolved again; absent is None, not an error.
                assert await api.get(f"{path}/absent") is None
                assert resolved == ["expired", "fresh"]
                cm = {"metadata": {"name": "cm", "namespace": NAMESPACE}, "data": {"a": "1"}}
                await api.create(path, cm)
                item = f"{path}/cm"
                await api.merge_patch(item, {"data": {"b": "2"}})
                assert (await api.get(item) or {})["data"] == {"a": "1", "b": "2"}
                assert await api.delete(item) is True
                assert await api.delete(item) is False  # NotFound is not an error
                with pytest.raises(kopf_operator.ApiError):
                    await api.request("GET", "/apis/nothing.example/v1/things")
            finally:
                await api.close()

    asyncio.run(main())


# -- pure helpers (no emulator) ---------------------------------------------------------------


def test_contains_ignores_server_added_fields_but_not_changes() -> None:
    live = {"spec": {"a": 1, "extra": True, "items": [{"x": 1, "default": 0}]}}
    assert kopf_operator.contains(live, {"spec": {"a": 1, "items": [{"x": 1}]}})
    assert not kopf_operator.contains(live, {"spec": {"a": 2}})
    assert not kopf_operator.contains(live, {"spec": {"items": [{"x": 1}, {"x": 2}]}})


def test_readiness_and_condition_transitions() -> None:
    assert kopf_operator.deployment_readiness(None)[:2] == (False, "DeploymentMissing")
    dep: dict[str, Any] = {"spec": {"replicas": 2}, "status": {"readyReplicas": 1}}
    assert kopf_operator.deployment_readiness(dep)[0] is False
    dep["status"]["readyReplicas"] = 2
    assert kopf_operator.deployment_readiness(dep)[:2] == (True, "DeploymentReady")

    old = {"type": "Ready", "status": "False", "lastTransitionTime": "2020-01-01T00:00:00Z"}
    same = kopf_operator.ready_condition(
        ready=False, reason="X", message="m", generation=3, previous=[old]
    )
    assert same["lastTransitionTime"] == old["lastTransitionTime"]
    assert same["observedGeneration"] == 3
    flipped = kopf_operator.ready_condition(
        ready=True, reason="Y", message="m", generation=None, previous=[old]
    )
    assert flipped["lastTransitionTime"] != old["lastTransitionTime"]
    assert "observedGeneration" not in flipped


def test_config_from_env_fallbacks() -> None:
    cfg = kopf_operator.OperatorConfig.from_env({})
    assert cfg.namespace == "trustee-operator-system"
    assert cfg.image == DEFAULT_IMAGE
    cfg = kopf_operator.OperatorConfig.from_env({"POD_NAMESPACE": "ns", "KBS_IMAGE_NAME": "i:1"})
    assert (cfg.namespace, cfg.image) == ("ns", "i:1")


# -- replicas share a session key ---------------------------------------------------------------


def test_replicas_get_one_session_key_made_once_and_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trustee.operator.render import SESSION_KEY_ENV, SESSION_KEY_SECRET
    from trustee.storage.session_keys import parse_key

    async def scenario(c: Cluster) -> None:
        await create_blog_kbsconfig(c)
        # One replica: nothing to share, no Secret made.
        assert c.get(SECRETS, SESSION_KEY_SECRET) is None
        await c.patch(
            KBSCONFIGS,
            KBSCONFIG_NAME,
            {"metadata": {"generation": 2}, "spec": {"KbsDeploymentSpec": {"replicas": 3}}},
        )
        made = await eventually(
            lambda: c.get(SECRETS, SESSION_KEY_SECRET), what="the session key Secret"
        )
        key_file = base64.b64decode(made["data"]["key"])
        assert len(parse_key(key_file)) == 32

        def pod_spec() -> dict[str, Any] | None:
            dep = deployment(c)
            assert dep is not None
            spec = dep["spec"]["template"]["spec"]
            return dict(spec) if dep["spec"]["replicas"] == 3 else None

        spec = await eventually(pod_spec, what="three replicas")
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["session-key"]["secret"]["secretName"] == SESSION_KEY_SECRET
        container = spec["containers"][0]
        assert {"name": SESSION_KEY_ENV, "value": "/etc/kbs-session-key/key"} in container["env"]
        assert {"name": "session-key", "mountPath": "/etc/kbs-session-key"} in container[
            "volumeMounts"
        ]
        # Reconciling again (a spec change) keeps the key: a new one would refuse the
        # sessions in flight.
        await c.patch(
            KBSCONFIGS,
            KBSCONFIG_NAME,
            {"metadata": {"generation": 3}, "spec": {"KbsEnvVars": {"RUST_LOG": "debug"}}},
        )
        await eventually(lambda: status(c).get("observedGeneration") == 3, what="generation 3")
        kept = c.get(SECRETS, SESSION_KEY_SECRET)
        assert kept is not None and kept["data"] == made["data"]
        await c.delete(KBSCONFIGS, KBSCONFIG_NAME)
        await eventually(lambda: c.get(KBSCONFIGS, KBSCONFIG_NAME) is None, what="CR gone")
        assert c.get(SECRETS, SESSION_KEY_SECRET) is None

    run_with_operator(tmp_path, monkeypatch, scenario)
