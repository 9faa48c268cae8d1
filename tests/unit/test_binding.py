from __future__ import annotations

import base64

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
