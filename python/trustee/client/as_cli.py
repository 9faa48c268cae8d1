"""`trustee-client as attest`: fresh evidence to a standalone Attestation Service, the token
(or its verified claims) back."""

from __future__ import annotations

import argparse
import json
import os

from trustee.client.as_client import AsClient, Binding, attester_for, evidence_request
from trustee.client.errors import KbsClientError
from trustee.crypto.b64 import Base64Error, b64url_decode, b64url_encode
from trustee.protocol import limits
from trustee.protocol.limits import InputLimitError


def _binding(args: argparse.Namespace) -> Binding:
    raw = None
    structured = None
    if args.runtime_data_raw is not None:
        try:
            raw = b64url_decode(args.runtime_data_raw)
        except Base64Error as exc:
            raise KbsClientError(f"--runtime-data-raw: {exc}") from exc
    elif args.runtime_data is not None:
        try:
            structured = limits.loads(args.runtime_data, "--runtime-data")
        except (ValueError, InputLimitError) as exc:
            raise KbsClientError(f"--runtime-data is not JSON: {exc}") from exc
    else:
        structured = {"nonce": b64url_encode(os.urandom(32))}
    toml = None
    if args.init_data is not None:
        try:
            with open(args.init_data, encoding="utf-8") as fh:
                toml = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise KbsClientError(f"--init-data {args.init_data}: {exc}") from exc
    elif args.init_data_digest:
        raise KbsClientError("--init-data-digest needs --init-data FILE")
    return Binding(
        runtime_data=structured,
        raw_runtime_data=raw,
        hash_algorithm=args.hash_algorithm,
        init_data_toml=toml,
        send_init_data_digest=args.init_data_digest,
    )


async def as_command(args: argparse.Namespace) -> str:
    """What `as attest` prints: the token, or with --claims its verified claims."""
    request = evidence_request(attester_for(args.tee), _binding(args))
    async with AsClient(args.as_url or args.url, cacert=args.cacert) as client:
        token = await client.attest([request], args.policy_ids)
        if not args.claims:
            return token
        return json.dumps(await client.verified_claims(token), indent=2)
