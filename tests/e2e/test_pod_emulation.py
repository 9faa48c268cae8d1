"""Pod emulation: the KBS image, run with exactly the mounts the operator renders for the
blog's KbsConfig (populated from the blog's objects), serves the blog's secret over HTTPS.

No Kubernetes here: buildah builds the image (deploy/scripts/build-image.sh) and runs it with one
bind mount per rendered volumeMount, materialised as the kubelet would (Secret data decoded).
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.e2e.seed import SEED, make_blog_deployment, seed_dir

pytestmark = pytest.mark.needs_buildah

TAG = "localhost/trustee-py:e2e"
BUILDAH_ENV = {"STORAGE_DRIVER": "vfs", "BUILDAH_ISOLATION": "chroot"}


def _why_not() -> str | None:
    for tool in ("buildah", "openssl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = subprocess.run(
        ["unshare", "-U", "-m", "-p", "--fork", "true"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        return "user namespaces are not available (unshare failed)"
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", 8080))
        except OSError:
            return "port 8080 (the blog's kbs-config.toml socket) is in use"
    return None


def _run(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **BUILDAH_ENV}
    return subprocess.run(args, env=env, text=True, capture_output=True, check=True, **kw)


def _blog_objects(blog_root: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The blog's ConfigMaps (its YAML) and Secrets (as `kubectl create secret` makes them)."""
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for name in (
        "kbs-config-configmap.yaml",
        "rvps-reference-values-configmap.yaml",
        "resource-policy-configmap.yaml",
    ):
        doc = yaml.safe_load((SEED / name).read_text())
        objects[("ConfigMap", doc["metadata"]["name"])] = doc

    def secret(name: str, files: dict[str, bytes]) -> None:
        data = {k: base64.b64encode(v).decode() for k, v in files.items()}
        objects[("Secret", name)] = {"kind": "Secret", "metadata": {"name": name}, "data": data}

    secret("kbs-auth-public-key", {"publicKey": (blog_root / "publicKey").read_bytes()})
    secret("kbs-https-certificate", {"https.crt": (blog_root / "https.crt").read_bytes()})
    secret("kbs-https-key", {"https.key": (blog_root / "https.key").read_bytes()})
    secret("kbsres1", {"key1": b"res1val1", "key2": b"res1val2"})
    return objects


def _materialise(
    deployment: dict[str, Any], objects: dict[tuple[str, str], dict[str, Any]], root: Path
) -> list[str]:
    """One `-v host:container` per volumeMount, in the rendered order (parents first)."""
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    (container,) = pod["containers"]
    mounts = []
    for i, mount in enumerate(container["volumeMounts"]):
        volume = volumes[mount["name"]]
        host = root / f"{i:02d}-{mount['name']}"
        host.mkdir(parents=True)
        if "emptyDir" in volume:
            host.chmod(0o777)  # the KBS runs as a non-root user and writes here
        elif "configMap" in volume:
            cm = objects[("ConfigMap", volume["configMap"]["name"])]
            for key, value in (cm.get("data") or {}).items():
                (host / key).write_text(value)
        elif "secret" in volume:
            sec = objects[("Secret", volume["secret"]["secretName"])]
            for key, value in (sec.get("data") or {}).items():
                (host / key).write_bytes(base64.b64decode(value))
        else:
            raise AssertionError(f"unexpected volume kind in {volume}")
        for path in host.rglob("*"):
            path.chmod(0o777 if path.is_dir() else 0o644)
        mounts.append(f"{host}:{mount['mountPath']}")
    return mounts


def _wait_https(cafile: Path, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    ctx = ssl.create_default_context(cafile=str(cafile))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the KBS container exited"
        try:
            with (
                socket.create_connection(("127.0.0.1", 8080), timeout=2) as raw,
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
            ):
                tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: kbs-service\r\n\r\n")
                if tls.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise AssertionError("the KBS container did not answer /healthz")


@pytest.mark.skipif((reason := _why_not()) is not None, reason=reason or "")
def test_blog_secret_from_the_image_with_operator_mounts(tmp_path: Path) -> None:
    from trustee.operator.render import Ref, render

    seed_dir()  # before the image build: a missing seed skips (fails under CI) at once
    _run(str(ROOT / "deploy" / "scripts" / "build-image.sh"), TAG, cwd=ROOT, timeout=600)
    blog = make_blog_deployment(tmp_path / "blog")
    objects = _blog_objects(blog.root)
    cr = yaml.safe_load((SEED / "kbsconfig-sample.yaml").read_text())
    rendered = render(
        cr,
        namespace="operators",
        image=TAG,
        objects={Ref(kind, name): obj for (kind, name), obj in objects.items()},
    )
    (deployment,) = [o for o in rendered if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == TAG
    mounts = _materialise(deployment, objects, tmp_path / "volumes")

    ctr = _run("buildah", "from", TAG).stdout.strip()
    env = {**os.environ, **BUILDAH_ENV}
    args = ["buildah", "run"]
    for mount in mounts:
        args += ["-v", mount]
    process = subprocess.Popen(
        [*args, ctr, "--", *container["command"]],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_https(blog.https_crt, process)
        result = subprocess.run(
            [
                sys.executable, "-m", "trustee.client.cli", "--protocol", "0.1.1",
                "--url", "https://127.0.0.1:8080", "--cert-file", str(blog.https_crt),
                "get-resource", "--path", "default/kbsres1/key1",
            ],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert result.stdout == "cmVzMXZhbDE=\n", result.stderr
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            out, _ = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, _ = process.communicate()
        subprocess.run(["buildah", "rm", ctr], env=env, capture_output=True, check=False)
    log = out.decode(errors="replace")
    assert log.splitlines()[0].endswith("Using config file /etc/kbs-config/kbs-config.toml"), log
