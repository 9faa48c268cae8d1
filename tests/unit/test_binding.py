from __future__ import annotations

import base64
from typing import Any

import pytest

from trustee.protocol import binding

# The P-256 generator point (private scalar 1): a test-only key with a published digest.
GEN_KEY = {
    "kty": "EC",
    "crv": "P-256",
    "alg": "ECDH-ES+A256KW",
    "x": "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY",
    "y": "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU",
}
NONCE = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


def test_upstream_jcs_sha384_vector() -> None:
    digest = binding.runtime_data_digest({"b": 1, "a": "test", "c": {"d": "e"}}, "sha384")
    assert digest.hex() == (
        "e71ce8e70d814ba6639c3612ebee0ff1f76f650f8dbb5e47157e0f3f525cd22c"
        "4597480a186427c813ca941da78870c3"
    )


def test_primary_runtime_data_canonical_form_and_digest() -> None:
    rd = binding.primary_runtime_data(GEN_KEY, NONCE, "")
    assert binding.canonical_json(rd) == (
        b'{"additional-evidence":"","nonce":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",'
        b'"tee-pubkey":{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC",'
        b'"x":"axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY",'
        b'"y":"T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU"}}'
    )
    digest = binding.runtime_data_digest(rd)
    assert digest.hex() == (
        "9edc01b09e997f6578d6bd8f7fc2b28dfaaf4e5417793667b7ece025d50c7cf5"
        "b9b0f7d2bbbcebe25d2f53bd33807ce3"
    )
    assert base64.b64encode(digest).decode() == (
        "ntwBsJ6Zf2V41r2Pf8KyjfqvTlQXeTZnt+zgJdUMfPW5sPfSu7zr4l0vU70zgHzj"
    )


def test_device_runtime_data_has_no_additional_evidence() -> None:
    assert binding.device_runtime_data(GEN_KEY, NONCE) == {"tee-pubkey": GEN_KEY, "nonce": NONCE}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, "sha384"),
        ("", "sha384"),
        ({"selected-hash-algorithm": "sha256"}, "sha256"),
        ({"selected-hash-algorithm": "SHA512"}, "sha512"),
    ],
)
def test_hash_selection(extra: object, expected: str) -> None:
    assert binding.select_hash_algorithm(extra) == expected


@pytest.mark.parametrize(
    "extra", ["foo", {"selected-hash-algorithm": 1}, {"selected-hash-algorithm": "md5"}, [1], 3]
)
def test_hash_selection_rejects(extra: object) -> None:
    with pytest.raises(binding.BindingError):
        binding.select_hash_algorithm(extra)


def test_fast_canonical_form_equals_rfc8785() -> None:
    """The json.dumps fast path must be byte-identical to a full JCS implementation."""
    import random
    import string

    import rfc8785

    rnd = random.Random(8785)
    alphabet = string.printable + '\x00\x01\x1f\u2028\u00e9\u4e2d"\\\x7f\ud7ff\U0001f600'

    def text() -> str:
        return "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 12)))

    def value(depth: int = 0) -> Any:
        pick = rnd.random()
        if depth > 3 or pick < 0.4:
            return rnd.choice([text(), rnd.randint(-(10**15), 10**15), True, False, None])
        if pick < 0.7:
            return [value(depth + 1) for _ in range(rnd.randint(0, 4))]
        keys = string.ascii_letters + "-_"
        return {
            "".join(rnd.choice(keys) for _ in range(rnd.randint(0, 6))): value(depth + 1)
            for _ in range(rnd.randint(0, 4))
        }

    for _ in range(5000):
        doc = value()
        assert binding.canonical_json(doc) == rfc8785.dumps(doc), doc
    # Outside the fast path (non-ASCII keys sort by UTF-16 units, floats) JCS still rules.
    odd = {"\U0001f600": 1, "\uff61": 2, "f": 1.5}
    assert binding.canonical_json(odd) == rfc8785.dumps(odd)
