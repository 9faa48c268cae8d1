"""The bounded JSON and TOML readers: depth counted exactly, strings and comments skipped,
hostile input refused quickly, serde's refusals (NaN, Infinity, non-UTF-8) reproduced."""

from __future__ import annotations

import base64
import json
import time
import tomllib

import pytest

from trustee.attestation.initdata import parse_init_data
from trustee.attestation.rvps import ReferenceValueStore, RvpsError
from trustee.protocol import limits
from trustee.protocol.errors import KbsError
from trustee.protocol.limits import MAX_JSON_DEPTH, MAX_TOML_DEPTH, InputLimitError
from trustee.storage.memory import MemoryStore


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH])
def test_json_within_the_depth_limit_parses(depth: int) -> None:
    value = limits.loads(nested(depth))
    for _ in range(depth - 1):
        value = value[0]
    assert value == []
    assert limits.loads(('{"a":' * depth) + "1" + "}" * depth) is not None


@pytest.mark.parametrize(
    "text",
    [
        nested(MAX_JSON_DEPTH + 1),
        "[" * 100_000,
        '{"a":' * 5000,
        "[" * 70 + "}",  # mismatched, yet the parser would have descended first
        '["ok", ' + nested(200) + "]",
        '"\\ud800", ' + "[" * 100,  # a lone surrogate escape does not hide what follows
    ],
)
def test_json_beyond_the_depth_limit_is_refused(text: str) -> None:
    with pytest.raises(InputLimitError) as info:
        limits.loads(text.encode(), "the body")
    assert info.value.status == 400 and info.value.variant == "InputLimitExceeded"
    assert info.value.reason == f"the body nests deeper than {MAX_JSON_DEPTH} levels"
    assert isinstance(info.value, KbsError) and not isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "text",
    [
        json.dumps({"s": "[" * 10_000}),  # brackets inside strings are text
        json.dumps({"s": '\\"[[[[' * 1000, "t": "{" * 1000}),
        json.dumps([[i, {"k": [i]}] for i in range(20_000)]),  # wide, shallow
    ],
)
def test_brackets_inside_strings_and_wide_documents_pass(text: str) -> None:
    assert limits.loads(text) == json.loads(text)


@pytest.mark.parametrize(
    "text",
    [
        "NaN",
        '{"a": Infinity}',
        "[-Infinity]",
        "1e999",
        "-1e400",
        '"\xff"'.encode("latin-1"),
        # Lone UTF-16 surrogates: nothing downstream can encode them (a 500 before).
        '{"crv": "\\ud800"}',
        '{"\\udc00": 1}',
        '["ok", ["\\ude00\\ud83d"]]',
    ],
)
def test_what_serde_refuses_is_malformed(text: str | bytes) -> None:
    with pytest.raises(ValueError):
        limits.loads(text)


def test_surrogate_pairs_and_escaped_backslashes_still_parse() -> None:
    assert limits.loads('{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}
    assert limits.loads('{"a": "\\\\ud800"}') == {"a": "\\ud800"}


def test_malformed_json_stays_a_value_error() -> None:
    for text in (b"{", b'{"a": [1, 2', b'"unterminated \\" [[[', b"\xef\xbb\xbf{}", b"[}"):
        with pytest.raises(ValueError):
            limits.loads(text)


def test_hostile_scans_stay_linear() -> None:
    start = time.monotonic()
    for text in (
        '"' + '\\"' * 500_000,  # no closing quote, an escaped quote every other character
        "[" * 1_000_000,
        "[}" + "[]," * 300_000,
        "[" + "[]," * 300_000 + "[]]",
    ):
        with pytest.raises((ValueError, InputLimitError)):
            limits.loads(text, max_depth=1)
    assert time.monotonic() - start < 5


@pytest.mark.parametrize(
    "text",
    [
        "a = " + nested(MAX_TOML_DEPTH + 1),
        "a = " + "{b = " * (MAX_TOML_DEPTH + 1) + "1" + "}" * (MAX_TOML_DEPTH + 1),
        "a = " + "[" * 900,
        "a" + ".a" * (MAX_TOML_DEPTH + 1) + " = 1",  # dotted keys nest without brackets
        "[" + ".".join(["t"] * (MAX_TOML_DEPTH + 1)) + "]\nx = 1",
        'a = """x""""' + ", " + nested(200),  # a multi-line string's extra closing quotes
    ],
)
def test_toml_beyond_the_depth_limit_is_refused(text: str) -> None:
    with pytest.raises(InputLimitError, match=f"deeper than {MAX_TOML_DEPTH} levels"):
        limits.toml_loads(text)


def test_toml_strings_and_comments_hide_no_structure() -> None:
    text = (
        'a = "[[[[" # [[[[[[[[\n'
        "b = '{{{{{{'\n"
        'c = """\n[[[[[[\n"""""\n'
        "d = '''\n{{{{{{{{\n'''\n"
        "e = " + nested(MAX_TOML_DEPTH) + "\n"
        "[t]\n[[u]]\nz = {a = {b = [1]}}\n"
    )
    assert limits.toml_loads(text, max_depth=MAX_TOML_DEPTH) == tomllib.loads(text)


def _init_data(extra: str) -> str:
    return f'version = "0.1.0"\nalgorithm = "sha384"\n[data]\n{extra}\n'


def test_init_data_depth_is_bounded_in_the_document_and_what_it_carries() -> None:
    parse_init_data(_init_data('"aa.toml" = "x = 1"'))
    for extra in (
        "deep = " + "[" * 900,
        '"cdh.toml" = "a = ' + nested(200) + '"',
        '"policy.rego" = "policy_data := {\\"a\\": ' + "[" * 300 + '"',
    ):
        with pytest.raises(InputLimitError):
            parse_init_data(_init_data(extra))


async def test_reference_value_messages_are_bounded() -> None:
    store = ReferenceValueStore(MemoryStore())
    with pytest.raises(InputLimitError):
        await store.register(b"[" * 50_000)
    payload = base64.b64encode(('{"svn": ' + nested(500) + "}").encode()).decode()
    message = {"version": "0.1.0", "type": "sample", "payload": payload}
    with pytest.raises(InputLimitError):
        await store.register(json.dumps(message).encode())
    with pytest.raises(RvpsError):
        await store.register(b'{"version": "0.1.0", "type": "sample", "payload": NaN}')
    assert await store.query("svn") is None
