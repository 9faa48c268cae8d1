"""The simulated Intel DCAP certificate chain, shaped like Intel's: a self-signed root, a PCK
Platform CA, a PCK leaf carrying the SGX extension, and a TCB signing certificate for TCB info
and QE identity. A verifier trusts it only when the test root is configured explicitly."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from trustee.simulate import certs, store
from trustee.simulate.tdx_platform import SGX_EXTENSION_OID, TdxPlatform, sgx_extension

# Never resolvable (RFC 2606), so nothing fetches a real CRL for the test PKI.
ROOT_CRL_URL = "https://pcs.trustee-test.invalid/sgx/certification/v4/rootcacrl"
PCK_CRL_URL = (
    "https://pcs.trustee-test.invalid/sgx/certification/v4/pckcrl?ca=platform&encoding=der"
)

CERT_LIFETIME = datetime.timedelta(days=3650)

KeyPair = tuple[ec.EllipticCurvePrivateKey, x509.Certificate]


class TdxChain(NamedTuple):
    """Keys and certificates of the chain, in the order of `FILE_STEMS`."""

    root: KeyPair
    pck_ca: KeyPair
    pck: KeyPair
    tcb_signing: KeyPair


# The saved PKI's file names (STEM.key, STEM.pem), one per `TdxChain` field.
FILE_STEMS = ("root", "pck-ca", "pck", "tcb-signing")


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def issue_chain(platform: TdxPlatform, start: datetime.datetime) -> TdxChain:
    """Fresh keys and certificates valid from `start` for `CERT_LIFETIME`."""
    root_key, pck_ca_key, pck_key, tcb_key = (new_key() for _ in range(4))
    validity = (start, start + CERT_LIFETIME)
    root = certs.Signer(certs.intel_name("Intel SGX Root CA"), root_key)
    pck_ca = certs.Signer(certs.intel_name("Intel SGX PCK Platform CA"), pck_ca_key)

    def pair(
        name: x509.Name,
        key: ec.EllipticCurvePrivateKey,
        signer: certs.Signer,
        extensions: list[tuple[x509.ExtensionType, bool]],
    ) -> KeyPair:
        return key, certs.issue(name, key.public_key(), signer, validity, extensions)

    sgx = x509.UnrecognizedExtension(
        x509.ObjectIdentifier(SGX_EXTENSION_OID), sgx_extension(platform)
    )
    return TdxChain(
        root=pair(root.name, root_key, root, _extensions(root_key, root_key, path_length=1)),
        pck_ca=pair(
            pck_ca.name, pck_ca_key, root, _extensions(root_key, pck_ca_key, path_length=0)
        ),
        pck=pair(
            certs.intel_name("Intel SGX PCK Certificate"),
            pck_key,
            pck_ca,
            [*_extensions(pck_ca_key, pck_key, crl_url=PCK_CRL_URL), (sgx, False)],
        ),
        tcb_signing=pair(
            certs.intel_name("Intel SGX TCB Signing"), tcb_key, root, _extensions(root_key, tcb_key)
        ),
    )


def _extensions(
    issuer_key: ec.EllipticCurvePrivateKey,
    subject_key: ec.EllipticCurvePrivateKey,
    *,
    path_length: int | None = None,
    crl_url: str = ROOT_CRL_URL,
) -> list[tuple[x509.ExtensionType, bool]]:
    # Intel's order for every certificate of the chain; a path length makes a CA.
    ca = path_length is not None
    usage = certs.key_usage(cert_sign=True, crl_sign=True) if ca else certs.key_usage(sign=True)
    return [
        (x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False),
        (certs.crl_distribution_point(crl_url), False),
        (x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), False),
        (usage, True),
        (x509.BasicConstraints(ca=ca, path_length=path_length), True),
    ]


def read_chain(directory: Path) -> TdxChain:
    """The chain a saved PKI holds; raises `SimulationError` naming the first bad file."""

    def pair(stem: str) -> KeyPair:
        cert = store.read_certificate(directory / f"{stem}.pem")
        return store.read_ec_key(directory / f"{stem}.key", ec.SECP256R1, cert), cert

    return TdxChain(*(pair(stem) for stem in FILE_STEMS))
