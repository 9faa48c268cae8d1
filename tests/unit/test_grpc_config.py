"""`rvps_config.type = "GrpcRemote"` in the KBS's and the AS's files, the RVPS's own file in
both of upstream's forms, and the command lines of the gRPC servers: each bad input one line
naming the file, key or flag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trustee import cli
from trustee.as_server import grpc_cli
from trustee.config import ConfigError, as_file, parse, rvps_file

KBS = """
[http_server]
insecure_http = true
[admin]
authorization_mode = "InsecureAllowAll"
[attestation_service]
type = "coco_as_builtin"
[attestation_service.rvps_config]
"""


@pytest.mark.parametrize(
    ("table", "address"),
    [
        ('type = "GrpcRemote"\naddress = "http://rvps:50003"\n', "http://rvps:50003"),
        ('type = "GrpcRemote"\naddress = "10.0.0.2:7000"\n', "10.0.0.2:7000"),
        ('type = "GrpcRemote"\n', "127.0.0.1:50003"),  # upstream's default
    ],
)
def test_a_kbs_config_names_a_remote_rvps(table: str, address: str) -> None:
    as_cfg = parse(KBS + table).attestation_service
    assert as_cfg is not None
    assert (as_cfg.rvps.type, as_cfg.rvps.address) == ("GrpcRemote", address)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            'type = "GrpcRemote"\naddress = "rvps"\n',
            "rvps_config.address: 'rvps' is not host:port (http:// or https:// allowed)",
        ),
        (
            'type = "Sled"\n',
            "rvps_config.type: RVPS type 'Sled' is not supported; BuiltIn or GrpcRemote",
        ),
    ],
)
def test_bad_remote_rvps_settings_name_the_key(table: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(KBS + table, "kbs-config.toml")
    assert str(caught.value) == f"kbs-config.toml: attestation_service.{message}"


def test_upstreams_compose_as_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "as-config.json"
    path.write_text(
        json.dumps({"rvps_config": {"type": "GrpcRemote", "address": "http://rvps:50003"}})
    )
    cfg = as_file.load_file(path)
    assert (cfg.service.rvps.type, cfg.service.rvps.address) == ("GrpcRemote", "http://rvps:50003")


def test_the_rvps_file_in_both_forms(tmp_path: Path) -> None:
    compose = tmp_path / "rvps.json"  # upstream's docker-compose rvps.json
    compose.write_text(json.dumps({"storage": {"type": "LocalFs", "file_path": "/rv"}}))
    cfg = rvps_file.load_file(str(compose))
    assert (cfg.storage.storage_type, cfg.storage.local_fs_dir) == ("LocalFs", "/rv")
    records = {"storage": {"type": "LocalJson", "file_path": "/rv.json"}, "extractors": {}}
    compose.write_text(json.dumps(records))
    cfg = rvps_file.load_file(str(compose))
    assert cfg.records_file == "/rv.json" and cfg.ignored_keys
    today = {"storage_type": "LocalJson", "backends": {"local_json": {"file_dir_path": "/j"}}}
    compose.write_text(json.dumps({"storage": today}))
    cfg = rvps_file.load_file(str(compose))
    assert (cfg.storage.storage_type, cfg.storage.local_json_dir) == ("LocalJson", "/j")
    compose.write_text(json.dumps({"storage": {"type": "Sled", "file_path": "/x"}}))
    with pytest.raises(ConfigError, match=r"rvps.json: storage.type: 'Sled' is not one of"):
        rvps_file.load_file(str(compose))


def test_without_a_file_the_rvps_keeps_values_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rvps_file, "DEFAULT_PATH", str(tmp_path / "absent.json"))
    assert rvps_file.load_file(None).storage.storage_type == "Memory"


@pytest.mark.parametrize(
    ("main", "argv", "line"),
    [
        (
            grpc_cli.grpc_as_main,
            ["-s", "localhost"],
            "grpc-as: --socket: 'localhost' is not an ip:port address",
        ),
        (
            grpc_cli.grpc_as_main,
            ["-t", "/cert.pem"],
            "grpc-as: HTTPS public key cert and private key must be provided to enable HTTPS.",
        ),
        (
            grpc_cli.grpc_as_main,
            ["-t", "/absent/cert.pem", "-k", "/absent/key.pem"],
            "grpc-as: failed to read HTTPS public key cert: /absent/cert.pem: "
            "No such file or directory",
        ),
        (
            grpc_cli.grpc_as_main,
            ["-t", __file__, "-k", __file__],
            f"grpc-as: HTTPS public key cert {__file__}: not a PEM certificate",
        ),
        (
            grpc_cli.grpc_as_main,
            ["-c", "/absent/as.json"],
            "grpc-as: /absent/as.json: cannot read config file: No such file or directory",
        ),
        (
            grpc_cli.rvps_main,
            ["-c", "/absent/rvps.json"],
            "rvps: /absent/rvps.json: cannot read config file: No such file or directory",
        ),
        (grpc_cli.rvps_main, ["-a", "1.2.3.4"], "rvps: --address: '1.2.3.4' is not an ip:port"),
        (
            cli.main,
            ["as", "serve", "--grpc", "-s", "x"],
            "trustee as serve: --socket: 'x' is not an ip:port address",
        ),
        (
            cli.main,
            ["rvps", "serve", "--address", "x"],
            "trustee rvps serve: --address: 'x' is not an ip:port address",
        ),
    ],
)
def test_start_up_failures_are_one_line(
    main: object, argv: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert callable(main)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith(line), err


def test_grpc_as_refuses_worker_counts_as_the_rest_as_does(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Memory storage is one process's: more than one worker is refused before anything
    binds, with the REST AS's words; so is a count below one."""
    from trustee.as_server.grpc_cli import grpc_as_main

    assert grpc_as_main(["--socket", "127.0.0.1:1", "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grpc-as: --workers: 2 workers cannot share") and "Memory" in err
    assert err.count("\n") == 1
    assert grpc_as_main(["--socket", "127.0.0.1:1", "--workers", "0"]) == 2
    assert capsys.readouterr().err == "grpc-as: --workers: must be at least 1\n"
