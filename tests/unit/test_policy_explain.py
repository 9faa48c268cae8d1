"""Policy explanations: which definition decided a rule, and where the others failed; and the
`trustee policy eval` command built on them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from trustee import _core
from trustee.attestation.policies import shipped_policy
from trustee.policy.engine import CompiledPolicy
from trustee.policy.explain import explain, reason_path
from trustee.policy_cli import policy_main

RESOURCE = """package policy

default allow := false
allow if {
    input.tdx.tcb_status == "UpToDate"
    data["resource-path"][0] == "default"
}
"""

DATA = {"plugin": "resource", "resource-path": ["default", "key", "1"], "query": {}}

SAMPLE_RVS: dict[str, Any] = {
    "svn": ["1"],
    "launch_digest": ["abcde"],
    "major_version": 1,
    "minimum_minor_version": 1,
}


def sample_input(**overrides: Any) -> dict[str, Any]:
    sample: dict[str, Any] = {
        "debug": False,
        "launch_digest": "abcde",
        "platform_version": {"major": 1, "minor": 4},
        "svn": "1",
    }
    sample.update(overrides)
    return {"report_data": "", "runtime_data_claims": {}, "sample": sample}


def rule(result: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(r for r in result["rules"] if r["rule"] == name)
    return found


def test_denied_resource_names_the_failing_expression() -> None:
    result = explain(RESOURCE, {"tdx": {"tcb_status": "OutOfDate"}}, DATA, ["data.policy.allow"])
    assert result["decision"] == {"data.policy.allow": False}
    allow = rule(result, "data.policy.allow")
    assert allow["because"] == [{"line": 3, "end_line": 3, "text": "default allow := false"}]
    assert allow["failed"] == [
        {
            "line": 5,
            "col": 5,
            "text": 'input.tdx.tcb_status == "UpToDate"',
            "definition": "allow",
            "definition_line": 4,
        }
    ]
    assert reason_path(result) == (
        "data.policy.allow = false: allow (line 4) failed at line 5: "
        'input.tdx.tcb_status == "UpToDate"'
    )


def test_denied_on_the_resource_path() -> None:
    data = {**DATA, "resource-path": ["other", "key", "1"]}
    result = explain(RESOURCE, {"tdx": {"tcb_status": "UpToDate"}}, data, ["data.policy.allow"])
    failed = rule(result, "data.policy.allow")["failed"]
    assert [(f["line"], f["text"]) for f in failed] == [
        (6, 'data["resource-path"][0] == "default"')
    ]


def test_allowed_resource_names_the_definition() -> None:
    compiled = CompiledPolicy(RESOURCE)
    result = explain(compiled, {"tdx": {"tcb_status": "UpToDate"}}, DATA, ["data.policy.allow"])
    allow = rule(result, "data.policy.allow")
    assert allow["value"] is True
    assert allow["because"] == [{"line": 4, "end_line": 7, "text": "allow"}]
    assert allow["failed"] == []
    assert reason_path(result) == "data.policy.allow = true: by allow (line 4)"


def test_attestation_policy_explained() -> None:
    rules = ["data.policy.executables", "data.policy.hardware", "data.policy.trust_claims"]
    rvs = {**SAMPLE_RVS, "svn": ["2"]}
    result = explain(shipped_policy("default_cpu"), sample_input(), None, rules, rvs)
    assert result["decision"]["data.policy.executables"] == 3
    assert result["decision"]["data.policy.hardware"] == 97
    assert result["decision"]["data.policy.trust_claims"]["hardware"] == 97
    hardware = rule(result, "data.policy.hardware")
    assert [b["text"] for b in hardware["because"]] == ["default hardware := 97"]
    executables = rule(result, "data.policy.executables")
    assert [b["text"] for b in executables["because"]] == ["executables := 3"]
    # The default applied, so the sample section's hardware definition says why it did not.
    assert any(
        f["text"] == 'input.sample.svn in query_reference_value("svn")' for f in hardware["failed"]
    )
    assert executables["failed"] == []
    line = reason_path(result)
    assert "data.policy.hardware = 97: by default hardware := 97 (line 13); " in line
    assert 'failed at line 47: input.sample.svn in query_reference_value("svn")' in line
    assert "\n" not in line


def test_undefined_rule_lists_each_definition() -> None:
    policy = """package policy
deny contains "debug" if input.debug
deny contains "old" if {
    some v in input.versions
    v < 2
}
ok if {
    input.a == 1
} else if {
    input.b == 1
}
"""
    result = explain(policy, {"a": 0, "b": 0}, None, ["data.policy.ok", "data.policy.gone"])
    ok = rule(result, "data.policy.ok")
    assert ok["status"] == "undefined"
    assert [(f["line"], f["text"]) for f in ok["failed"]] == [
        (8, "input.a == 1"),
        (10, "input.b == 1"),
    ]
    assert rule(result, "data.policy.gone")["status"] == "absent"
    assert "data.policy.gone is not defined by the policy" in reason_path(result)


def test_reference_value_callback_failure_raises() -> None:
    def broken(_id: str) -> str | None:
        raise RuntimeError("RVPS unavailable")

    with pytest.raises(_core.PolicyEvalError) as info:
        explain(
            shipped_policy("default_cpu"), sample_input(), None, ["data.policy.hardware"], broken
        )
    assert isinstance(info.value.__cause__, RuntimeError)


# --- trustee policy eval -------------------------------------------------------------------


def write(tmp_path: Path, name: str, content: str) -> str:
    path = tmp_path / name
    path.write_text(content)
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = policy_main(["eval", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_resource_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys,
        "--policy",
        write(tmp_path, "p.rego", RESOURCE),
        "--input",
        write(tmp_path, "in.json", json.dumps({"tdx": {"tcb_status": "OutOfDate"}})),
        "--data",
        write(tmp_path, "data.json", json.dumps(DATA)),
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["decision"] == {"data.policy.allow": False}
    assert "failed at line 5" in err


def test_cli_attestation_policy_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys,
        "--policy",
        write(tmp_path, "p.rego", shipped_policy("default_cpu")),
        "--input",
        write(tmp_path, "in.json", json.dumps(sample_input())),
        "--reference-values",
        write(tmp_path, "rv.json", json.dumps(SAMPLE_RVS)),
    )
    assert code == 0, err
    result = json.loads(out)
    assert set(result["decision"]) == {"data.policy.trust_claims", "data.policy.extensions"}
    assert [r["rule"] for r in result["rules"]] == [
        "data.policy.trust_claims",
        "data.policy.extensions",
    ]
    assert result["decision"]["data.policy.trust_claims"]["executables"] == 3


def test_cli_explicit_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "--policy",
        write(tmp_path, "p.rego", shipped_policy("default_cpu")),
        "--input",
        write(tmp_path, "in.json", json.dumps(sample_input())),
        "--rule",
        "data.policy.executables",
        "--rule",
        "data.policy.configuration",
    )
    assert code == 0
    assert json.loads(out)["decision"] == {
        "data.policy.executables": 33,
        "data.policy.configuration": 2,
    }


def test_cli_compile_error_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys,
        "--policy",
        write(tmp_path, "p.rego", "package policy\nallow if {\n  input.x ==\n"),
        "--input",
        write(tmp_path, "in.json", "{}"),
    )
    assert code == 1
    assert out == ""
    assert err.startswith("trustee policy eval: policy ") and "does not compile" in err
    assert len(err.strip().splitlines()) < 12


def test_cli_unreadable_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys,
        "--policy",
        str(tmp_path / "missing.rego"),
        "--input",
        write(tmp_path, "in.json", "{}"),
    )
    assert code == 2
    assert "--policy" in err and "cannot read" in err


def test_cli_bad_json_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys,
        "--policy",
        write(tmp_path, "p.rego", RESOURCE),
        "--input",
        write(tmp_path, "in.json", "{not json"),
    )
    assert code == 2
    assert "--input" in err and "not JSON" in err


def test_cli_reference_values_must_be_an_object(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys,
        "--policy",
        write(tmp_path, "p.rego", RESOURCE),
        "--input",
        write(tmp_path, "in.json", "{}"),
        "--reference-values",
        write(tmp_path, "rv.json", "[1]"),
    )
    assert code == 2
    assert "expected a JSON object" in err


def test_cli_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert policy_main(["eval", "--input", "x.json"]) == 2
    assert policy_main([]) == 2


def test_cli_usage_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # argparse would print its usage block; a person needs the line that names what is missing.
    code, out, err = run(capsys, "--policy", "p.rego")
    assert code == 2 and out == ""
    assert err == "trustee policy eval: the following arguments are required: --input\n"
