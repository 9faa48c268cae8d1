"""Resource sealing on the request path: the JWE of `trustee.protocol.jwe`, with the EC case
(every current guest) sealed by the native core on an offload thread."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trustee import _core, offload
from trustee.protocol import jwe


async def seal(
    plaintext: bytes, tee_pubkey: Mapping[str, Any], *, form: jwe.JweForm = jwe.FORM_RFC7516
) -> dict[str, str]:
    """`jwe.encrypt` with fresh random values; errors are its errors, word for word."""
    recipient = jwe.ec_recipient(tee_pubkey, form)
    if recipient is None:
        return jwe.encrypt(plaintext, tee_pubkey, form=form)
    crv, x, y = recipient
    try:
        sealed = await offload.DEFAULT.call(
            lambda job_id: _core.submit_seal_ecdh_es(job_id, crv, x, y, plaintext),
            lambda: _core.seal_ecdh_es(crv, x, y, plaintext),
        )
    except _core.CryptoError as exc:
        raise jwe.JweError(str(exc)) from exc
    return sealed.members()
