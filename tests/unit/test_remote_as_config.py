"""`[attestation_service]` for an Attestation Service in another process: upstream's
`coco_as_grpc` keys, our `coco_as_restful`, the per-call `timeout_ms`, and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.e2e.pki import make_cert, pem_cert
from tests.support.docs import DOCS, production_files, relocate, section_blocks
from trustee.config import ConfigError, as_file, parse
from trustee.config.model import RemoteAsConfig

DOCS_SECTION = "An Attestation Service in another process"
BASE = "[http_server]\ninsecure_http = true\n[admin]\n[attestation_service]\n"


def remote(table: str) -> RemoteAsConfig:
    config = parse(BASE + table, "kbs.toml")
    assert config.attestation_service is not None
    assert config.attestation_service.remote is not None
    return config.attestation_service.remote


def refusal(table: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(BASE + table, "kbs.toml")
    return str(info.value)


def test_upstreams_grpc_table_loads_with_its_defaults() -> None:
    config = parse(BASE + 'type = "coco_as_grpc"\ntimeout = 7\n')
    assert config.attestation_service is not None
    assert config.attestation_service.type == "coco_as_grpc"
    # Upstream's `timeout` stays the session lifetime in minutes; the call timeout is ours.
    assert config.attestation_service.timeout == 7
    assert config.attestation_service.remote == RemoteAsConfig(
        type="coco_as_grpc",
        address="http://127.0.0.1:50004",
        pool_size=100,
        timeout_ms=5000,
        ca_cert=None,
    )


def test_upstreams_grpc_example_and_aliases() -> None:
    got = remote('type = "CoCoASGrpc"\nas_addr = "http://as.svc:50004/"\npool_size = 200\n')
    assert (got.type, got.address, got.pool_size) == ("coco_as_grpc", "http://as.svc:50004", 200)
    assert remote('type = "coco_as_restful"\nurl = "http://as:8080"\n').type == "coco_as_restful"
    assert remote('type = "CoCoASRestful"\nurl = "http://as:8080"\n').type == "coco_as_restful"


def test_restful_takes_a_url_timeout_and_ca(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pem_cert(make_cert("as-root", ec.generate_private_key(ec.SECP256R1()), ca=True)))
    got = remote(
        f'type = "coco_as_restful"\nurl = "https://as.example:8443"\ntimeout_ms = 250\n'
        f'ca_cert = "{ca}"\n'
    )
    assert got == RemoteAsConfig(
        type="coco_as_restful",
        address="https://as.example:8443",
        pool_size=100,
        timeout_ms=250,
        ca_cert=str(ca),
    )


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            'type = "coco_as_restful"\n',
            "kbs.toml: attestation_service.url: missing required key",
        ),
        (
            'type = "coco_as_restful"\nurl = "as:8080"\n',
            "kbs.toml: attestation_service.url: 'as:8080' is not an http:// or https:// URL "
            "with a host",
        ),
        (
            'type = "coco_as_grpc"\nas_addr = "grpc://as:50004"\n',
            "kbs.toml: attestation_service.as_addr: 'grpc://as:50004' is not an http:// or "
            "https:// URL with a host",
        ),
        (
            'type = "coco_as_grpc"\nas_addr = "http://as:99999"\n',
            "kbs.toml: attestation_service.as_addr: 'http://as:99999': Port out of range 0-65535",
        ),
        (
            'type = "coco_as_restful"\nurl = "http://as/?x=1"\n',
            "kbs.toml: attestation_service.url: 'http://as/?x=1' has a query or fragment; give "
            "the AS's base URL",
        ),
        (
            'type = "coco_as_grpc"\ntimeout_ms = 10\n',
            "kbs.toml: attestation_service.timeout_ms: 10 is outside 100..600000",
        ),
        (
            'type = "coco_as_grpc"\ntimeout_ms = "5s"\n',
            "kbs.toml: attestation_service.timeout_ms: expected an integer, got '5s'",
        ),
        (
            'type = "coco_as_grpc"\npool_size = 0\n',
            "kbs.toml: attestation_service.pool_size: 0 is outside 1..10000",
        ),
        (
            'type = "coco_as_restful"\nurl = "http://as"\nca_cert = "/ca.pem"\n',
            "kbs.toml: attestation_service.ca_cert: is for an https:// url; 'http://as' is "
            "plain HTTP",
        ),
        (
            'type = "coco_as_grpc"\ntimeout = 0\n',
            "kbs.toml: attestation_service.timeout: must be a positive number of minutes",
        ),
        (
            'type = "intel_ta"\n',
            "kbs.toml: attestation_service.type: attestation service type 'intel_ta' is not "
            "supported; use coco_as_builtin, coco_as_grpc or coco_as_restful",
        ),
    ],
)
def test_bad_values_name_the_file_and_key(table: str, message: str) -> None:
    assert refusal(table) == message


def test_an_unreadable_ca_names_the_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    for path in (junk, tmp_path / "missing.pem"):
        message = refusal(f'type = "coco_as_restful"\nurl = "https://as"\nca_cert = "{path}"\n')
        assert message.startswith(
            f"kbs.toml: attestation_service.ca_cert: {path}: not a readable PEM certificate file"
        )


def test_built_in_keys_in_a_remote_table_are_ignored_and_said() -> None:
    config = parse(
        BASE
        + 'type = "coco_as_grpc"\nwork_dir = "/var/as"\n'
        + "[attestation_service.attestation_token_broker]\nduration_min = 3\n"
    )
    assert config.dialect == "head"  # work_dir marks the v0.11 dialect only for a built-in AS
    ignored = [k for k in config.ignored_keys if k.startswith("attestation_service.")]
    keys = "type, timeout, as_addr, pool_size, timeout_ms, ca_cert"
    assert ignored == [
        f"attestation_service.attestation_token_broker (a coco_as_grpc table reads only {keys})",
        f"attestation_service.work_dir (a coco_as_grpc table reads only {keys})",
    ]


def test_a_standalone_as_config_cannot_name_a_remote_as() -> None:
    with pytest.raises(ConfigError) as info:
        as_file.parse('{"type": "coco_as_grpc"}', "as.json")
    assert str(info.value) == (
        "as.json: type: a standalone Attestation Service runs the built-in service"
    )


def test_the_examples_of_the_docs_load(tmp_path: Path) -> None:
    ca = pem_cert(make_cert("as-root", ec.generate_private_key(ec.SECP256R1()), ca=True))
    blocks = section_blocks(DOCS / "configuration.md", DOCS_SECTION, "toml")
    kinds = []
    for block in blocks:
        for path in production_files(block.text):
            target = Path(f"{tmp_path}{path}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(ca)
        text = "[http_server]\ninsecure_http = true\n[admin]\n" + relocate(block.text, tmp_path)
        config = parse(text, f"docs/configuration.md:{block.line}")
        assert not config.ignored_keys
        assert config.attestation_service is not None
        assert config.attestation_service.remote is not None
        kinds.append(config.attestation_service.remote.type)
    assert kinds == ["coco_as_grpc", "coco_as_restful"]
