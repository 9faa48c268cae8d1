"""The pod's containers: the KBS, and in a MicroservicesDeployment the AS and the RVPS beside
it. One image runs all three; only the command differs."""

from __future__ import annotations

from typing import Any

from trustee.operator.layout import AS, AS_CONFIG_FILE, KBS, RVPS, RVPS_CONFIG_FILE

KBS_PORT = 8080
AS_PORT = 50004
RVPS_PORT = 50003
KBS_COMMAND = ("/usr/local/bin/kbs", "--config-file", "/etc/kbs-config/kbs-config.toml")
# Upstream's grpc-as and rvps command lines. Both listen on every address of the pod, as
# upstream's do: the kubelet's probes come from outside the pod's loopback. The Service
# exposes the KBS's port only.
AS_COMMAND = ("grpc-as", "--socket", f"0.0.0.0:{AS_PORT}", "--config-file", AS_CONFIG_FILE)
RVPS_COMMAND = ("rvps", "--address", f"0.0.0.0:{RVPS_PORT}", "--config", RVPS_CONFIG_FILE)

# The address the KBS's `as_addr` and the AS's `rvps_config.address` name: the pod's own
# loopback, which the containers of one pod share.
AS_ADDRESS = f"http://127.0.0.1:{AS_PORT}"
RVPS_ADDRESS = f"http://127.0.0.1:{RVPS_PORT}"

_COMMANDS = {KBS: KBS_COMMAND, AS: AS_COMMAND, RVPS: RVPS_COMMAND}
_PORTS = {KBS: KBS_PORT, AS: AS_PORT, RVPS: RVPS_PORT}


def _probe(check: dict[str, Any], initial_delay: int, period: int) -> dict[str, Any]:
    return {
        **check,
        "initialDelaySeconds": initial_delay,
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
    }


def _check(name: str, scheme: str) -> dict[str, Any]:
    if name == KBS:
        return {"httpGet": {"path": "/healthz", "port": KBS_PORT, "scheme": scheme}}
    # The AS and the RVPS speak gRPC only; an accepted connection is what is checked.
    return {"tcpSocket": {"port": _PORTS[name]}}


def container(
    name: str,
    image: str,
    env: list[dict[str, str]],
    volume_mounts: list[dict[str, Any]],
    scheme: str = "HTTP",
) -> dict[str, Any]:
    """The container `name` (KBS, AS or RVPS); `scheme` is the KBS's probe scheme."""
    spec: dict[str, Any] = {
        "name": name,
        "image": image,
        "command": list(_COMMANDS[name]),
        "ports": [{"name": name, "containerPort": _PORTS[name], "protocol": "TCP"}],
    }
    if env:
        spec["env"] = env
    spec["volumeMounts"] = volume_mounts
    spec["readinessProbe"] = _probe(_check(name, scheme), 5, 10)
    spec["livenessProbe"] = _probe(_check(name, scheme), 15, 30)
    spec["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        # Not in v0.3.0: the trustee-py image runs as a non-root numeric USER, so the kubelet
        # can enforce this; a root-running image would be refused at pod start, which is the
        # point.
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    return spec
