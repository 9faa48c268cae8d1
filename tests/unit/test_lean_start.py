"""A server imports what its configuration uses, and nothing else, when it starts.

Each check runs in a fresh interpreter, since this process has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from trustee.config.errors import ConfigError
from trustee.config.loader import parse
from trustee.config.reader import Table
from trustee.config.verifier import verifier_settings

# A module counts as loaded when its code ran: a stand-in that loads the real module on first
# use (as trustee.http puts under hypercorn.asyncio) has no __file__ until then.
LOADED = (
    "def loaded(names):\n"
    "    return [\n"
    "        n for n in sorted(sys.modules)\n"
    "        if any(n == p or n.startswith(p + '.') for p in names)\n"
    "        and getattr(sys.modules[n], '__file__', None) is not None\n"
    "    ]\n"
)

SERVE_PATH = (
    "import sys, trio\n"
    "import trustee.cli\n"
    "from trustee.config import load_embedded_default\n"
    "from trustee.assemble import assemble\n"
    "from trustee.http.app import create_app\n"
    "from trustee.http.serve import serve\n"
    "create_app(trio.run(assemble, load_embedded_default()))\n"
    + LOADED
    + "print(','.join(loaded(sys.argv[1].split(','))))\n"
)

# Nothing the development configuration uses: database clients, the Kubernetes operator, the
# test PKI simulator, the asyncio server, the HTTP client (remote JWK sets and collateral fetch
# with it, when configured), the collateral sources and every audit sink.
NOT_AT_START = (
    # The web framework: the direct routes answer guests and probes; Quart-Trio is built on
    # the first request that needs it (the admin API).
    "quart",
    "quart_trio",
    "flask",
    "jinja2",
    "werkzeug",
    "psycopg",
    "psycopg_binary",
    "kopf",
    "trustee.operator",
    "trustee.simulate",
    "hypercorn.asyncio",
    "httpx",
    "trustee.collateral.cache",
    "trustee.collateral.http",
    "trustee.collateral.snp",
    "trustee.collateral.tdx",
    "trustee.collateral.tdx_sources",
    "trustee.audit.sink_syslog",
    "trustee.audit.sink_webhook",
    "trustee.audit.sinks_file",
    "trustee.redis",
    "trustee.audit.sink_redis",
    "trustee.storage.redis_sessions",
    "cryptography.x509",
    # A remote Attestation Service's clients, and grpcio under the gRPC one.
    "trustee.remote_as",
    "trustee.grpc_api",
    "grpc",
)


def _run(script: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_the_development_server_imports_no_postgres_client() -> None:
    loaded = _run(SERVE_PATH, "psycopg,psycopg_binary")
    assert loaded == "", f"imported at start: {loaded}"


def test_the_development_server_imports_only_what_it_uses() -> None:
    loaded = _run(SERVE_PATH, ",".join(NOT_AT_START))
    assert loaded == "", f"imported at start: {loaded}"


# The supervisor of a server with workers binds the sockets and watches the workers: it serves
# nothing, so it needs neither the web framework nor the KBS. Its work is stood in for here,
# after it has checked the configuration and the environment as it does before binding.
SUPERVISOR_PATH = (
    "import sys, trustee.cli\n" + LOADED + "def supervise(config):\n"
    "    from trustee.http.listen import worker_sockets\n"
    "    print(','.join(loaded(sys.argv[2].split(','))))\n"
    "    return 0\n"
    "import trustee.serving\n"
    "trustee.serving._serve_workers = supervise\n"
    "sys.exit(trustee.cli.main(['serve', '--config', sys.argv[1]]))\n"
)

WORKERS_CONFIG = """
[http_server]
insecure_http = true
worker_count = 2
[admin]
authorization_mode = "DenyAll"
[attestation_token]
insecure_header_jwk = true
[storage_backend]
storage_type = "LocalFs"
[storage_backend.backends.local_fs]
dir_path = "{data}"
"""

NOT_IN_SUPERVISOR = (
    "trio",
    "hypercorn.trio",
    "trustee.http.serve",
    "quart",
    "quart_trio",
    "flask",
    "jinja2",
    "werkzeug",
    "prometheus_client",
    "httpx",
    "trustee.http.app",
    "trustee.kbs",
    "trustee.assemble",
)


def _loaded_with_config(tmp_path: Path, text: str, script: str, modules: tuple[str, ...]) -> str:
    """Which of `modules` `script` imported, given a kbs-config.toml holding `text`."""
    config = tmp_path / "kbs-config.toml"
    config.write_text(text)
    return _run(script, str(config), ",".join(modules))


def test_the_worker_supervisor_loads_no_web_framework(tmp_path: Path) -> None:
    text = WORKERS_CONFIG.format(data=tmp_path / "data")
    loaded = _loaded_with_config(tmp_path, text, SUPERVISOR_PATH, NOT_IN_SUPERVISOR)
    assert loaded == "", f"imported by the supervisor: {loaded}"


# A single worker listens before it loads trio, builds the KBS or imports the framework: what
# it would run next is stood in for, and tells whether its socket already takes connections.
SINGLE_WORKER_PATH = (
    "import socket, sys, trustee.cli\n" + LOADED + "async def stand_in(config, sockets):\n"
    "    (sock,) = sockets.insecure_sockets\n"
    "    listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)\n"
    "    print(listening, ','.join(loaded(sys.argv[2].split(','))))\n"
    "import trustee.serving\n"
    "trustee.serving._run = stand_in\n"
    "sys.exit(trustee.cli.main(['serve', '--config', sys.argv[1]]))\n"
)

NOT_BEFORE_LISTENING = ("quart", "quart_trio", "werkzeug", "trustee.kbs", "trustee.assemble")


def test_a_single_worker_listens_before_building_its_app(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    text = WORKERS_CONFIG.format(data=tmp_path / "data").replace("worker_count = 2", "")
    text = text.replace(
        "insecure_http = true", f'insecure_http = true\nsockets = ["127.0.0.1:{port}"]'
    )
    config = tmp_path / "kbs-config.toml"
    config.write_text(text.replace('storage_type = "LocalFs"', 'storage_type = "Memory"'))
    out = _run(SINGLE_WORKER_PATH, str(config), ",".join(NOT_BEFORE_LISTENING))
    # "1": the socket takes connections; nothing after it: no framework loaded yet.
    assert out == "1", f"listening flag and modules loaded before the app: {out!r}"


HARDWARE_CONFIG = """
[http_server]
insecure_http = true
[admin]
authorization_mode = "DenyAll"
[attestation_token]
insecure_header_jwk = true
[attestation_service]
type = "coco_as_builtin"
[attestation_service.verifier_config]
collateral = "{collateral}"
kds_url = "https://kds.example"
[[audit.sinks]]
type = "stdout"
"""

# Starts a server whose TDX collateral is a directory and whose SNP VCEKs come from KDS, then
# sends its TDX source one request (the directory is empty, so the answer is an error naming it).
HARDWARE_PATH = (
    "import json, sys, trio\n"
    "from trustee.collateral.errors import CollateralError\n"
    "from trustee.config import load_file\n"
    "from trustee.assemble import assemble\n"
    + LOADED
    + "WATCH = ['trustee.collateral.tdx_sources', 'trustee.collateral.snp', 'httpx',\n"
    "         'trustee.audit.sinks_file', 'trustee.audit.sink_webhook',\n"
    "         'trustee.audit.sink_syslog']\n"
    "async def main():\n"
    "    kbs = await assemble(load_file(sys.argv[1]))\n"
    "    hw = kbs.attestation.hardware\n"
    "    report = {'at_start': loaded(WATCH), 'built': [hw.tdx_source.built, "
    "hw.vek_source.built]}\n"
    "    try:\n"
    "        await hw.tdx_source.get('00906ED50000', 'processor')\n"
    "    except CollateralError as exc:\n"
    "        report['first_request'] = str(exc)\n"
    "    report['after'] = loaded(WATCH)\n"
    "    report['built_after'] = [hw.tdx_source.built, hw.vek_source.built]\n"
    "    print(json.dumps(report))\n"
    "trio.run(main)\n"
)


def test_collateral_sources_are_built_by_the_first_evidence(tmp_path: Path) -> None:
    collateral = tmp_path / "collateral"
    collateral.mkdir()
    config = tmp_path / "kbs-config.toml"
    config.write_text(HARDWARE_CONFIG.format(collateral=collateral))
    report = json.loads(_run(HARDWARE_PATH, str(config)))
    assert report["at_start"] == ["trustee.audit.sinks_file"]  # the configured sink only
    assert report["built"] == [False, False]
    assert str(collateral) in report["first_request"]
    assert "trustee.collateral.tdx_sources" in report["after"]
    assert "httpx" not in report["after"]  # a local directory needs no HTTP client
    assert report["built_after"] == [True, False]  # nothing asked the SNP source yet


BASE = (
    '[http_server]\ninsecure_http = true\n[admin]\nauthorization_mode = "DenyAll"\n'
    '[attestation_service]\ntype = "coco_as_builtin"\n[attestation_service.verifier_config]\n'
)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('pccs_url = "ftp://pccs.example"\n', "pccs_url"),
        ('kds_url = "kds.example"\n', "kds_url"),
        (
            "[attestation_service.verifier_config.dcap_verifier]\n"
            'collateral_service = "pccs.example/sgx"\n',
            "dcap_verifier.collateral_service",
        ),
        (
            "[attestation_service.verifier_config.snp_verifier]\n"
            'vcek_sources = [{type = "KDS", base_url = "kds.example"}]\n',
            "snp_verifier.vcek_sources[0].base_url",
        ),
    ],
)
def test_a_bad_collateral_service_stops_the_start(body: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(BASE + body, "kbs-config.toml")
    assert caught.value.key == f"attestation_service.verifier_config.{key}"
    assert "is not an http(s) URL" in str(caught.value)
    # The server gets its sources from these settings only: no other reading lets a bad table by.
    table = tomllib.loads(BASE + body)["attestation_service"]["verifier_config"]
    with pytest.raises(ConfigError, match=r"is not an http\(s\) URL"):
        verifier_settings(Table(table, "attestation_service.verifier_config"))


# Loading a configuration reads every section into settings and builds nothing from them: no
# dispatcher, sink or collateral source, and so no trio (a worker supervisor does without it).
LOAD_PATH = (
    "import sys\n"
    "from trustee.config import load_file\n" + LOADED + "load_file(sys.argv[1])\n"
    "print(','.join(loaded(sys.argv[2].split(','))))\n"
)

SINKS_CONFIG = """
[[audit.sinks]]
type = "file"
path = "{audit}"
[[audit.sinks]]
type = "stdout"
[[audit.sinks]]
type = "webhook"
url = "https://collector.example/events"
[[audit.sinks]]
type = "syslog"
address = "127.0.0.1:514"
"""

NOT_AT_LOAD = (
    "trio",
    "httpx",
    "trustee.audit.build",
    "trustee.audit.dispatcher",
    "trustee.audit.registry",
    "trustee.audit.sinks_file",
    "trustee.audit.sink_webhook",
    "trustee.audit.sink_syslog",
    "trustee.collateral.build",
    "trustee.collateral.lazy",
    "trustee.collateral.cache",
    "trustee.collateral.tdx_sources",
    "trustee.collateral.snp",
)


def test_loading_a_config_builds_nothing(tmp_path: Path) -> None:
    body = 'pccs_url = "https://pccs.example"\nkds_url = "https://kds.example"\n'
    text = BASE + body + SINKS_CONFIG.format(audit=tmp_path / "audit.jsonl")
    loaded = _loaded_with_config(tmp_path, text, LOAD_PATH, NOT_AT_LOAD)
    assert loaded == "", f"imported by loading the config: {loaded}"
