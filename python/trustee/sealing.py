"""Resource sealing on the request path: the JWE of `trustee.protocol.jwe`, with the EC case
(every current guest) done natively on an offload thread."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trustee import _core, offload
from trustee.protocol import jwe


async def seal(
    plaintext: bytes, tee_pubkey: Mapping[str, Any], *, form: jwe.JweForm = jwe.FORM_RFC7516
) -> dict[str, str]:
    """`encrypt` with fresh random values; for an EC guest key the sealing runs natively on
    an offload thread. Errors are `encrypt`'s, word for word."""
    if (
        form in (jwe.FORM_RFC7516, jwe.FORM_RFC7516_P256)
        and isinstance(tee_pubkey, Mapping)
        and tee_pubkey.get("alg") == jwe.ALG_ECDH_ES_A256KW
        and tee_pubkey.get("kty") == "EC"
        and tee_pubkey.get("crv") in jwe.ec_curves(form)
        and isinstance(x := tee_pubkey.get("x"), str)
        and isinstance(y := tee_pubkey.get("y"), str)
        # Anything else is not base64url; the reference path words that error.
        and x.isascii()
        and y.isascii()
    ):
        crv: str = tee_pubkey["crv"]
        try:
            protected, encrypted_key, iv, ciphertext, tag = await offload.DEFAULT.call(
                lambda job_id: _core.submit_seal_ecdh_es(job_id, crv, x, y, plaintext),
                lambda: _core.seal_ecdh_es(crv, x, y, plaintext),
            )
        except _core.CryptoError:
            # Only a bad key gets here; the reference path words the error.
            return jwe.encrypt(plaintext, tee_pubkey, form=form)
        return {
            "protected": protected,
            "encrypted_key": encrypted_key,
            "iv": iv,
            "ciphertext": ciphertext,
            "tag": tag,
        }
    return jwe.encrypt(plaintext, tee_pubkey, form=form)
