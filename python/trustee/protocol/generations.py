"""The KBS protocol generations, as one frozen table both the server and the client read.

`/auth`'s `version` picks a generation; everything that differs between them afterwards is a
field here, so a rule is never a comparison with a version string somewhere else.

Two shapes of `/attest` body exist:
- "composite" (0.4.0): `{init-data, runtime-data{nonce, tee-pubkey}, tee-evidence{primary_evidence,
  additional_evidence}}`, the nonce inside the body, device evidence alongside the primary one.
- "flat" (0.1.0, 0.1.1, 0.2.0): `{tee-pubkey, tee-evidence}` at the top level; the nonce is
  only inside the evidence's binding, and there is neither init-data nor device evidence.

Not to be confused with the v0.11 *configuration* dialect (`config.model.Dialect`), which is
about the server's config file and policies and says nothing about what a client speaks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from trustee.protocol.jwe import JweForm

AttestBody = Literal["composite", "flat"]


@dataclass(frozen=True)
class WireGeneration:
    version: str
    attest_body: AttestBody
    # The JWE form that generation's client can decrypt (see protocol/jwe.py).
    jwe_form: JweForm
    # Key types its kbs-types parsed in `tee-pubkey`. None: 0.1.0's plain {kty, alg, n, e}
    # struct, which took whatever `kty` said and read the RSA members.
    tee_key_types: tuple[str, ...] | None
    # 0.1.0 typed `extra-params` (in /auth and the challenge) as a string, later ones as an object.
    extra_params_text: bool = False
    # 0.1.0 carried the attester's evidence as a JSON string, later ones as the object.
    evidence_text: bool = False
    # The policy id that era's kbs-client uploads `set-attestation-policy` to without `--id`
    # (its AS named the CPU policy `default`, the token's submod `cpu`).
    default_attestation_policy_id: str = "default_cpu"

    @property
    def init_data(self) -> bool:
        return self.attest_body == "composite"


# Each older generation written as what it changed from the next one.
V0_4_0 = WireGeneration(
    version="0.4.0",
    attest_body="composite",
    jwe_form="rfc7516",
    tee_key_types=("EC", "RSA", "AKP"),
)
V0_2_0 = replace(
    V0_4_0,
    version="0.2.0",
    attest_body="flat",
    jwe_form="rfc7516-p256",
    tee_key_types=("EC", "RSA"),
    default_attestation_policy_id="default",
)
V0_1_1 = replace(V0_2_0, version="0.1.1", jwe_form="v0.1")
V0_1_0 = replace(
    V0_1_1, version="0.1.0", tee_key_types=None, extra_params_text=True, evidence_text=True
)
CURRENT = V0_4_0

WIRE_GENERATIONS: dict[str, WireGeneration] = {
    g.version: g for g in (V0_1_0, V0_1_1, V0_2_0, V0_4_0)
}


def wire_generation(version: str) -> WireGeneration:
    """The generation a session speaks; KeyError for a version no generation has."""
    return WIRE_GENERATIONS[version]
