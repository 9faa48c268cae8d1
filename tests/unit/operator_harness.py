"""Run the kopf operator in-process against kmock's Kubernetes emulator (asyncio only).

The suite runs under pytest-trio, so tests stay synchronous and drive asyncio themselves with
``asyncio.run(...)``; kmock's own pytest plugin (which needs pytest-asyncio) is not used.

kmock 0.8 workarounds applied here (see the deployment spec, kopf + kmock harness):

* its bundled builtin resources are loaded, and KbsConfig is declared with its verbs and the
  ``status`` subresource, or kopf would not serve it;
* the operator runs for exact namespaces with scanning disabled (kmock answers
  ``GET /api/v1/namespaces`` with a 500);
* every seeded object carries a ``resourceVersion`` (kmock assigns none, and kopf's finalizer
  JSON-patch tests it);
* kopf's event posting is disabled.

Fidelity limits: PATCH is a plain recursive dict merge, there is no Deployment controller (a
test sets ``status.readyReplicas`` itself), no garbage collection, and no generation bumps.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kmock
import kopf
import pytest
import yaml

from tests.support.shared import seed_file, seed_path
from trustee.operator import kopf_operator

SEED_DIR = seed_path()
NAMESPACE = "operators"  # the blog's namespace: operator, CR, ConfigMaps and Secrets
IMAGE = "registry.example/trustee-py:test"
KBSCONFIG_NAME = "kbsconfig-sample"

KBSCONFIGS = "confidentialcontainers.org/v1alpha1/kbsconfigs"
CONFIGMAPS = "v1/configmaps"
SECRETS = "v1/secrets"
DEPLOYMENTS = "apps/v1/deployments"
SERVICES = "v1/services"


def require_seed() -> Path:
    return seed_file("kbsconfig-sample.yaml").parent


def _load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((require_seed() / name).read_text())
    assert isinstance(doc, dict)
    return doc


def blog_configmaps() -> list[dict[str, Any]]:
    return [
        _load(name)
        for name in (
            "kbs-config-configmap.yaml",
            "resource-policy-configmap.yaml",
            "rvps-reference-values-configmap.yaml",
        )
    ]


MICROSERVICES_SAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "samples" / "microservices"


def configmap(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NAMESPACE, "resourceVersion": "1"},
        "data": data,
    }


def microservices_configmaps() -> list[dict[str, Any]]:
    """The microservices sample's three service configurations beside the blog's reference
    values and resource policy."""
    files = {
        "kbs-config-grpc": "kbs-config.toml",
        "as-config-grpc": "as-config.json",
        "rvps-config-grpc": "rvps-config.json",
    }
    services = [
        configmap(name, {key: (MICROSERVICES_SAMPLE / key).read_text()})
        for name, key in files.items()
    ]
    return services + [c for c in blog_configmaps() if c["metadata"]["name"] != "kbs-config"]


def microservices_kbsconfig() -> dict[str, Any]:
    doc = blog_kbsconfig()
    doc["spec"].update(
        kbsDeploymentType="MicroservicesDeployment",
        kbsConfigMapName="kbs-config-grpc",
        kbsAsConfigMapName="as-config-grpc",
        kbsRvpsConfigMapName="rvps-config-grpc",
    )
    return doc


def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": name, "namespace": NAMESPACE, "resourceVersion": "1"},
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
    }


def blog_secrets() -> list[dict[str, Any]]:
    """The Secrets the blog creates with kubectl (placeholder key material)."""
    return [
        secret("kbs-auth-public-key", {"publicKey": "-----BEGIN PUBLIC KEY-----\nAA==\n"}),
        secret("kbs-https-certificate", {"https.crt": "-----BEGIN CERTIFICATE-----\nAA==\n"}),
        secret("kbs-https-key", {"https.key": "-----BEGIN PRIVATE KEY-----\nAA==\n"}),
        secret("kbsres1", {"key1": "res1val1", "key2": "res1val2"}),
    ]


def blog_kbsconfig() -> dict[str, Any]:
    doc = _load("kbsconfig-sample.yaml")
    meta = doc["metadata"]
    # What the API server would add; kmock adds nothing.
    meta.update(resourceVersion="1", generation=1, uid="0b1c2d3e-kbsconfig-sample")
    return doc


@dataclass
class Cluster:
    """The kmock emulator plus a few HTTP helpers that go through its API (watch events fire)."""

    mock: kmock.KubernetesEmulator

    @staticmethod
    def path(resource: str, name: str | None = None, subresource: str | None = None) -> str:
        group_version, plural = resource.rsplit("/", 1)
        return kopf_operator.object_path(group_version, plural, NAMESPACE, name, subresource)

    def get(self, resource: str, name: str) -> dict[str, Any] | None:
        key = (kmock.resource(resource), NAMESPACE, name)  # `in` does not parse strings
        if key not in self.mock.objects or self.mock.objects[key].deleted:
            return None
        raw: dict[str, Any] = self.mock.objects[key].raw
        return raw

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = await self.mock.request(method, path, json=body)
        async with response:
            payload = await response.json(content_type=None)
            assert response.status < 300, (method, path, response.status, payload)
            return payload

    async def create(self, resource: str, obj: dict[str, Any]) -> Any:
        return await self._call("POST", self.path(resource), obj)

    async def patch(
        self, resource: str, name: str, body: dict[str, Any], subresource: str | None = None
    ) -> Any:
        return await self._call("PATCH", self.path(resource, name, subresource), body)

    async def delete(self, resource: str, name: str) -> Any:
        return await self._call("DELETE", self.path(resource, name))

    def tamper(self, resource: str, name: str, changes: dict[str, Any]) -> None:
        """Change an object behind the operator's back: no watch event is sent."""
        self.mock.objects[(kmock.resource(resource), NAMESPACE, name)].patch(changes)

    def vanish(self, resource: str, name: str) -> None:
        """Remove an object behind the operator's back: no watch event is sent."""
        self.mock.objects[(kmock.resource(resource), NAMESPACE, name)].delete()

    def requests_since(self, mark: int) -> list[Any]:
        return list(self.mock)[mark:]

    def mark(self) -> int:
        return len(list(self.mock))


async def eventually(
    check: Callable[[], Any], *, timeout: float = 5.0, what: str = "condition"
) -> Any:
    """Poll ``check`` until it returns something truthy (and return that)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def _kubeconfig(server: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kmock", "cluster": {"server": server}}],
            "users": [{"name": "kmock", "user": {"token": "kmock-token"}}],
            "contexts": [
                {
                    "name": "kmock",
                    "context": {"cluster": "kmock", "user": "kmock", "namespace": NAMESPACE},
                }
            ],
            "current-context": "kmock",
        }
    )


@contextlib.asynccontextmanager
async def running_operator(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    objects: Iterable[dict[str, Any]],
    resync_interval: float | None = None,
) -> AsyncIterator[Cluster]:
    """kmock seeded with ``objects`` and the operator running against it via a kubeconfig."""
    async with kmock.KubernetesEmulator() as mock, kmock.Server(mock) as server:
        mock.resources.load_bundled()
        mock.resources[KBSCONFIGS] = kmock.ResourceInfo(
            kind="KbsConfig",
            singular="kbsconfig",
            namespaced=True,
            verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
            subresources={"status"},
        )
        plurals = {"ConfigMap": CONFIGMAPS, "Secret": SECRETS}
        for obj in objects:
            meta = obj.setdefault("metadata", {})
            meta.setdefault("namespace", NAMESPACE)
            meta.setdefault("resourceVersion", "1")
            mock.objects[(plurals[obj["kind"]], NAMESPACE, meta["name"])] = obj

        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(_kubeconfig(str(server.url).rstrip("/")))
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))

        registry = kopf_operator.build_registry(
            kopf_operator.OperatorConfig(
                namespace=NAMESPACE, image=IMAGE, resync_interval=resync_interval
            )
        )
        settings = kopf.OperatorSettings()
        settings.posting.enabled = False
        # kopf gets its own thread and event loop: on exit it cancels every task of its loop
        # that it did not start with, which here would include kmock's request handlers.
        stop, ready = threading.Event(), threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(
                    kopf.operator(
                        registry=registry,
                        settings=settings,
                        namespaces=[NAMESPACE],
                        standalone=True,
                        stop_flag=stop,
                        ready_flag=ready,
                    )
                )
            except BaseException as exc:
                failure.append(exc)
                ready.set()

        thread = threading.Thread(target=run, name="kopf-operator", daemon=True)
        thread.start()
        try:
            assert await asyncio.to_thread(ready.wait, 5), "the operator did not start"
            assert not failure, failure
            yield Cluster(mock)
        finally:
            stop.set()
            await asyncio.to_thread(thread.join, 10)
        assert not thread.is_alive(), "the operator did not stop"
        assert not failure, failure
        unexpected = [
            error
            for error in mock.errors
            if not (isinstance(error, kmock.KubernetesError) and error.status in (404, 409))
        ]
        assert not unexpected, unexpected
