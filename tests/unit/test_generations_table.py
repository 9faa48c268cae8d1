"""The server and the client read one table of protocol generations."""

from __future__ import annotations

import pytest

from trustee.client.kbs import GENERATIONS
from trustee.config.loader import SUPPORTED_PROTOCOL_VERSIONS
from trustee.protocol import jwe, rcar
from trustee.protocol.errors import KbsError
from trustee.protocol.generations import CURRENT, WIRE_GENERATIONS


def test_client_and_server_speak_the_same_generations() -> None:
    assert list(GENERATIONS) == list(WIRE_GENERATIONS) == list(SUPPORTED_PROTOCOL_VERSIONS)
    for version, generation in GENERATIONS.items():
        assert generation.wire is WIRE_GENERATIONS[version]
        assert jwe.FORM_BY_PROTOCOL[version] == generation.jwe_form


def test_init_data_belongs_to_the_composite_body_only() -> None:
    assert [g.version for g in WIRE_GENERATIONS.values() if g.init_data] == [CURRENT.version]
    assert not GENERATIONS["0.2.0"].supports_init_data


@pytest.mark.parametrize("version", ["0.1.1", "0.2.0"])
def test_a_flat_generation_refuses_a_key_type_only_the_current_one_knows(version: str) -> None:
    body = b'{"tee-pubkey": {"kty": "AKP", "alg": "ML-KEM-768", "pub": "AA"}, "tee-evidence": {}}'
    with pytest.raises(KbsError) as refused:
        rcar.parse_attestation(body, version)
    assert f"is not EC or RSA (protocol {version})" in (refused.value.reason or "")
