"""Init-data TOML: digest over the raw text and the claims given to policies."""

from __future__ import annotations

import hashlib
import json

import pytest

from trustee.attestation.initdata import InitDataError, parse_init_data

CDH_TOML = """\
socket = 'unix:///run/confidential-containers/cdh.sock'

[kbc]
name = 'cc_kbc'
url = 'http://1.2.3.4:8080'
kbs_cert = ""

[image]
extra_root_certificates = ["-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n"]
image_security_policy_uri = 'kbs:///default/security-policy/test'
"""

AA_TOML = """\
[token_configs]
[token_configs.coco_as]
url = 'http://127.0.0.1:8080'

[token_configs.kbs]
url = 'http://127.0.0.1:8080'
cert = "abc"
"""

AGENT_POLICY = {
    "containers": [
        {
            "OCI": {
                "Annotations": {"io.kubernetes.cri.image-name": "pause"},
                "Process": {"Args": ["/pause"], "User": {"UID": 65535, "GID": 65535}},
            }
        },
        {
            "OCI": {
                "Annotations": {"io.kubernetes.cri.image-name": "bitnami/nginx:latest"},
                "Process": {
                    "Args": ["/opt/bitnami/scripts/nginx/entrypoint.sh"],
                    "User": {"UID": 1001, "GID": 0},
                },
            }
        },
    ],
    "common": {"cpath": "/run/kata-containers/shared/containers"},
}

POLICY_REGO = (
    "package agent_policy\n\n"
    "import future.keywords.in\n\n"
    "default CreateContainerRequest := false\n\n"
    "policy_data := " + json.dumps(AGENT_POLICY, indent=2) + "\n"
)


def _toml_literal(text: str) -> str:
    assert "'''" not in text
    return "'''\n" + text + "'''"


def initdata(algorithm: str = "sha384", **data: str) -> str:
    lines = ['version = "0.1.0"', f'algorithm = "{algorithm}"', "", "[data]"]
    for name, value in data.items():
        lines.append(f'"{name}" = {_toml_literal(value)}')
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("algorithm", ["sha256", "sha384", "sha512"])
def test_digest_is_over_the_raw_text(algorithm: str) -> None:
    # Comments, odd spacing and key order must all count: no re-serialisation.
    text = (
        "# init data\n"
        f"algorithm   =   '{algorithm}'\n"
        'version = "0.1.0"\r\n'
        "\n[data]\n"
        '"x.txt" = "héllo"   # trailing comment\n'
    )
    parsed = parse_init_data(text)
    assert parsed.digest == hashlib.new(algorithm, text.encode("utf-8")).digest()
    assert len(parsed.digest) == hashlib.new(algorithm).digest_size
    assert parsed.claims == {"x.txt": "héllo"}
    # a semantically identical document with different bytes has a different digest
    assert parse_init_data(text.replace("   =   ", " = ")).digest != parsed.digest


def test_no_data_table_gives_empty_claims() -> None:
    parsed = parse_init_data('version = "0.1.0"\nalgorithm = "sha256"\n')
    assert parsed.claims == {}


def test_cdh_and_aa_toml_become_json() -> None:
    parsed = parse_init_data(
        initdata(**{"cdh.toml": CDH_TOML, "aa.toml": AA_TOML, "other.toml": "a = 1\n"})
    )
    cdh = parsed.claims["cdh.toml"]
    assert cdh["socket"] == "unix:///run/confidential-containers/cdh.sock"
    assert cdh["kbc"] == {"name": "cc_kbc", "url": "http://1.2.3.4:8080", "kbs_cert": ""}
    assert cdh["image"]["extra_root_certificates"][0].startswith("-----BEGIN CERTIFICATE-----\n")
    assert parsed.claims["aa.toml"] == {
        "token_configs": {
            "coco_as": {"url": "http://127.0.0.1:8080"},
            "kbs": {"url": "http://127.0.0.1:8080", "cert": "abc"},
        }
    }
    # only cdh.toml and aa.toml are converted
    assert parsed.claims["other.toml"] == "a = 1\n"
    # the result is plain JSON
    json.dumps(parsed.claims)


def test_non_toml_cdh_toml_is_kept_as_string() -> None:
    value = "this is [not toml\n"
    parsed = parse_init_data(initdata(**{"cdh.toml": value, "aa.toml": "= broken\n"}))
    assert parsed.claims["cdh.toml"] == value
    assert parsed.claims["aa.toml"] == "= broken\n"


def test_policy_rego_becomes_agent_policy_claims() -> None:
    parsed = parse_init_data(initdata(**{"policy.rego": POLICY_REGO, "cdh.toml": CDH_TOML}))
    assert "policy.rego" not in parsed.claims
    claims = parsed.claims["agent_policy_claims"]
    assert claims == AGENT_POLICY
    assert claims["containers"][1]["OCI"]["Process"]["Args"][0] == (
        "/opt/bitnami/scripts/nginx/entrypoint.sh"
    )
    assert isinstance(parsed.claims["cdh.toml"], dict)


def test_policy_data_uses_the_first_marker() -> None:
    # From the first `policy_data := {` to the end must be one JSON object; a later marker
    # (here: a valid object at the end) is not searched for.
    rego = 'package p\n# policy_data := {"old": true} was here\npolicy_data := {"a": 1}\n'
    parsed = parse_init_data(initdata(**{"policy.rego": rego}))
    assert parsed.claims == {"policy.rego": rego}


@pytest.mark.parametrize(
    "rego",
    [
        "package agent_policy\n\ndefault AllowRequestsFailingPolicy := true\n",
        'package p\npolicy_data := {"a": 1}\n\nfoo := true\n',
        "package p\npolicy_data := {not json}\n",
        'package p\npolicy_data := ["a"]\n',
        'package p\npolicy_data = {"a": 1}\n',
    ],
)
def test_unextractable_policy_rego_is_kept(rego: str) -> None:
    parsed = parse_init_data(initdata(**{"policy.rego": rego}))
    assert parsed.claims == {"policy.rego": rego}


def test_policy_data_with_trailing_whitespace_is_extracted() -> None:
    rego = 'package p\npolicy_data := {"containers": []}\n\n   \n'
    parsed = parse_init_data(initdata(**{"policy.rego": rego}))
    assert parsed.claims == {"agent_policy_claims": {"containers": []}}


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "SHA256", "sha3-256", ""])
def test_bad_algorithm(algorithm: str) -> None:
    with pytest.raises(InitDataError):
        parse_init_data(initdata(algorithm=algorithm))


def test_missing_algorithm() -> None:
    with pytest.raises(InitDataError):
        parse_init_data('version = "0.1.0"\n[data]\n"a" = "b"\n')


@pytest.mark.parametrize(
    "data_line",
    ['"a" = 1', '"a" = true', '"a" = ["x"]', '"a" = { b = "c" }', "[data.a]\nb = 'c'"],
)
def test_data_values_must_be_strings(data_line: str) -> None:
    with pytest.raises(InitDataError):
        parse_init_data(f'version = "0.1.0"\nalgorithm = "sha256"\n[data]\n{data_line}\n')


def test_data_must_be_a_table() -> None:
    with pytest.raises(InitDataError):
        parse_init_data('version = "0.1.0"\nalgorithm = "sha256"\ndata = "x"\n')


@pytest.mark.parametrize("version_line", ["", "version = 1", 'version = ["0.1.0"]'])
def test_version_required_as_string(version_line: str) -> None:
    with pytest.raises(InitDataError):
        parse_init_data(f'{version_line}\nalgorithm = "sha256"\n[data]\n"a" = "b"\n')


@pytest.mark.parametrize(
    "text",
    [
        'version = "0.1.0"\nalgorithm = "sha256"\n[data\n',
        "version = \n",
        '{"version": "0.1.0", "algorithm": "sha256", "data": {}}',
        'version = "0.1.0"\nversion = "0.2.0"\nalgorithm = "sha256"\n',
    ],
)
def test_invalid_toml(text: str) -> None:
    with pytest.raises(InitDataError):
        parse_init_data(text)


def test_init_data_error_is_a_value_error() -> None:
    assert issubclass(InitDataError, ValueError)
