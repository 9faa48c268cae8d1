"""The native core (trustee._core) as Python sees it."""

from __future__ import annotations

import base64
import json
import threading

import pytest

from trustee import _core

RD = bytes(range(48))
INIT_HASH = b"\xab" * 32
NOW = 1_700_000_000
VERIFIERS = _core.Verifiers()


def verify(
    tee: str, evidence: bytes, report_data: bytes | None, init_data_hash: bytes | None
) -> list[tuple[str, str]]:
    """`Verifiers.verify` as `(claims JSON, tee class)` pairs."""
    claims = VERIFIERS.verify(tee, evidence, report_data, init_data_hash, NOW)
    return [(c.json, c.tee_class) for c in claims]


def pairs(outcomes: list[_core.RuleOutcome] | None) -> list[tuple[str, str]] | None:
    """Rule outcomes as `(kind, JSON text)` pairs."""
    return None if outcomes is None else [(o.kind, o.json) for o in outcomes]


def sample_evidence(report_data: bytes = RD, svn: str = "1") -> bytes:
    return json.dumps({"svn": svn, "report_data": base64.b64encode(report_data).decode()}).encode()


# --- evidence ----------------------------------------------------------------------------


def test_supported_tees_and_version() -> None:
    assert _core.supported_tees() == [
        "sample",
        "sampledevice",
        "tdx",
        "snp",
        "az-snp-vtpm",
        "az-tdx-vtpm",
        "sgx",
        "tpm",
    ]
    assert _core.version() == "0.1.0"


def test_the_core_names_the_hardware_tees() -> None:
    assert _core.Verifiers.hardware_tees() == ["tdx", "snp", "az-snp-vtpm", "az-tdx-vtpm", "sgx"]


def test_every_refusal_is_a_core_error() -> None:
    refusals = (
        _core.VerifierError,
        _core.UnsupportedTee,
        _core.PolicyCompileError,
        _core.PolicyEvalError,
        _core.PolicyLimitError,
        _core.CryptoError,
        _core.SessionCookieError,
    )
    assert all(issubclass(kind, _core.CoreError) for kind in refusals)


@pytest.mark.parametrize(
    ("owner", "call"),
    [
        (_core.Verifiers, "verify"),
        (_core.Policy, "evaluate"),
        (_core.Es256Signer, "sign_compact"),
        (_core, "seal_ecdh_es"),
    ],
)
def test_every_offloadable_call_has_a_submit_form_of_its_name(owner: object, call: str) -> None:
    assert callable(getattr(owner, call))
    assert callable(getattr(owner, f"submit_{call}"))


def test_sample_verify_ok_with_init_data() -> None:
    [(claims_json, tee_class)] = verify("sample", sample_evidence(), RD, INIT_HASH)
    assert tee_class == "cpu"
    assert json.loads(claims_json) == {
        "svn": "1",
        "report_data": base64.b64encode(RD).decode(),
        "launch_digest": "abcde",
        "platform_version": {"major": 1, "minor": 4},
        "debug": False,
        "init_data": base64.b64encode(INIT_HASH).decode(),
    }


def test_sample_verify_without_expectations() -> None:
    [(claims_json, _)] = verify("sample", b'{"svn":"7"}', None, None)
    claims = json.loads(claims_json)
    assert claims["report_data"] == ""
    assert "init_data" not in claims


def test_sampledevice_verify() -> None:
    [(claims_json, tee_class)] = verify("sampledevice", sample_evidence(svn="2"), RD, INIT_HASH)
    assert tee_class == "gpu"
    assert json.loads(claims_json) == {"svn": "2", "report_data": base64.b64encode(RD).decode()}


def test_report_data_mismatch_shows_both_values() -> None:
    with pytest.raises(_core.VerifierError, match="mismatch") as info:
        verify("sample", sample_evidence(b"\x01\x02"), b"\x01\x03", None)
    assert "0102" in str(info.value)
    assert "0103" in str(info.value)
    assert not isinstance(info.value, _core.UnsupportedTee)


@pytest.mark.parametrize(
    ("evidence", "fragment"),
    [
        (b"not json", "not valid JSON"),
        (b"[1]", "expected a JSON object"),
        (b"{}", "missing required field `svn`"),
        (b'{"svn": 1}', "`svn` must be a string"),
        (b'{"svn": "1", "report_data": 5}', "`report_data` must be a string"),
    ],
)
def test_malformed_evidence(evidence: bytes, fragment: str) -> None:
    with pytest.raises(_core.VerifierError, match=fragment):
        verify("sample", evidence, None, None)


def test_oversized_evidence_is_rejected() -> None:
    with pytest.raises(_core.VerifierError, match="too large"):
        verify("sample", b" " * (4 * 1024 * 1024 + 1), None, None)


def test_unsupported_and_unknown_tees() -> None:
    with pytest.raises(_core.UnsupportedTee, match="cca"):
        verify("cca", b"{}", None, None)
    with pytest.raises(_core.UnsupportedTee):
        verify("nvidia", b"{}", None, None)
    with pytest.raises(_core.VerifierError, match="unknown TEE") as info:
        verify("nope", b"{}", None, None)
    assert not isinstance(info.value, _core.UnsupportedTee)


# --- policy compilation ------------------------------------------------------------------


def allow_of(policy: _core.Policy, input_json: str = "{}") -> tuple[str, str]:
    [outcome] = policy.evaluate(input_json, None, ["data.policy.allow"])
    return outcome.kind, outcome.json


def test_compile_error_message_has_position() -> None:
    with pytest.raises(_core.PolicyCompileError) as info:
        _core.Policy("package policy\nallow if {\n  input.x ==\n}")
    assert "policy.rego:4:1" in str(info.value)


def test_v1_policy() -> None:
    policy = _core.Policy(
        "package policy\nimport rego.v1\ndefault allow := false\nallow if input.x in [1, 2]\n"
    )
    assert policy.syntax == "v1"
    assert allow_of(policy, '{"x": 2}') == ("value", "true")
    assert allow_of(policy, '{"x": 3}') == ("value", "false")


def test_v0_policy() -> None:
    policy = _core.Policy("package policy\ndefault allow = false\nallow { input.x == 1 }")
    assert policy.syntax == "v0"
    assert allow_of(policy, '{"x": 1}') == ("value", "true")
    assert allow_of(policy, '{"x": 2}') == ("value", "false")


def test_one_line_folded_policy() -> None:
    policy = _core.Policy("package policy default allow = true")
    assert allow_of(policy) == ("value", "true")


@pytest.mark.parametrize(
    "text", ["package policy\nallow if { false }", "package policy\nallow if { 1 == 2 }"]
)
def test_if_without_import_does_not_allow_everything(text: str) -> None:
    policy = _core.Policy(text)
    assert policy.syntax == "v1"
    assert allow_of(policy) == ("undefined", "")


def test_mixed_syntax_is_rejected_not_misread() -> None:
    with pytest.raises(_core.PolicyCompileError, match="`if` keyword is required"):
        _core.Policy("package policy\ndefault allow = false\nallow { false }\nallow if { false }")


# --- policy evaluation -------------------------------------------------------------------

KINDS_POLICY = """package policy
import rego.v1

x := {"a": [1, "s", null]}
y := 1 if input.never
"""


def test_outcome_kinds() -> None:
    policy = _core.Policy(KINDS_POLICY)
    out = pairs(policy.evaluate("{}", None, ["data.policy.x", "data.policy.y", "data.policy.z"]))
    assert out is not None
    assert out[0][0] == "value"
    assert json.loads(out[0][1]) == {"a": [1, "s", None]}
    assert out[1:] == [("undefined", ""), ("absent", "")]


def test_data_document() -> None:
    policy = _core.Policy(
        'package policy\nimport rego.v1\ndefault allow := false\nallow if data.plugin == "resource"'
    )
    assert pairs(policy.evaluate("{}", '{"plugin": "resource"}', ["data.policy.allow"])) == [
        ("value", "true")
    ]
    assert pairs(policy.evaluate("{}", None, ["data.policy.allow"])) == [("value", "false")]


def test_conflicting_rules_raise() -> None:
    policy = _core.Policy("package policy\nimport rego.v1\nr := 1 if true\nr := 2 if true")
    with pytest.raises(_core.PolicyEvalError, match="conflict"):
        policy.evaluate("{}", None, ["data.policy.r"])


def test_bad_input_json_raises() -> None:
    policy = _core.Policy("package policy default allow = true")
    with pytest.raises(_core.PolicyEvalError):
        policy.evaluate("{", None, ["data.policy.allow"])


RV_POLICY = """package policy
import rego.v1

v := query_reference_value(input.id)
"""


def test_reference_values_callback() -> None:
    policy = _core.Policy(RV_POLICY)
    store = {"svn": ["1", "2"], "major": 1}
    seen: list[str] = []

    def lookup(rv_id: str) -> str | None:
        seen.append(rv_id)
        return json.dumps(store[rv_id]) if rv_id in store else None

    assert pairs(policy.evaluate('{"id": "svn"}', None, ["data.policy.v"], lookup)) == [
        ("value", '["1","2"]')
    ]
    assert pairs(policy.evaluate('{"id": "nope"}', None, ["data.policy.v"], lookup)) == [
        ("value", "null")
    ]
    assert seen == ["svn", "nope"]


def test_reference_values_default_to_null() -> None:
    policy = _core.Policy(RV_POLICY)
    assert pairs(policy.evaluate('{"id": "svn"}', None, ["data.policy.v"])) == [("value", "null")]


def test_reference_values_callback_exception_aborts() -> None:
    policy = _core.Policy(RV_POLICY)

    def broken(rv_id: str) -> str | None:
        raise TimeoutError(f"RVPS timed out on {rv_id}")

    with pytest.raises(_core.PolicyEvalError, match="RVPS timed out on svn") as info:
        policy.evaluate('{"id": "svn"}', None, ["data.policy.v"], broken)
    assert isinstance(info.value.__cause__, TimeoutError)


def test_reference_values_callback_must_return_json_text() -> None:
    policy = _core.Policy(RV_POLICY)
    with pytest.raises(_core.PolicyEvalError, match="not valid JSON"):
        policy.evaluate('{"id": "svn"}', None, ["data.policy.v"], lambda _: "{nope")


def test_reference_value_id_must_be_a_string() -> None:
    policy = _core.Policy(RV_POLICY)
    with pytest.raises(_core.PolicyEvalError, match="must be a string"):
        policy.evaluate('{"id": 3}', None, ["data.policy.v"], lambda _: None)


def test_one_policy_from_many_threads() -> None:
    policy = _core.Policy(RV_POLICY)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(200):
                rv_id = f"id-{n}-{i}"
                out = pairs(
                    policy.evaluate(
                        json.dumps({"id": rv_id}), None, ["data.policy.v"], lambda s: json.dumps(s)
                    )
                )
                assert out == [("value", json.dumps(rv_id))]
        except BaseException as exc:  # collected for the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
