"""A simulated TPM 2.0: PCR banks, the attestation key (AK) and quotes in TPM wire format.

Quotes are what `TPM2_Quote` returns for the SHA-256 bank of PCRs 0-23: a marshalled
TPMS_ATTEST (`message`) signed RSASSA-PKCS1-v1_5/SHA-256 by an RSA-2048 AK. The Azure guests
and the plain TPM guest share it; they differ only in how the AK is vouched for.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from trustee.simulate import store

TPM_GENERATED_VALUE = 0xFF544347
TPM_ST_ATTEST_QUOTE = 0x8018
TPM_ALG_RSA = 0x0001
TPM_ALG_SHA256 = 0x000B
TPM_ALG_NULL = 0x0010
TPM_ALG_RSASSA = 0x0014
PCR_COUNT = 24
PCR_SIZE = 32
# The PCR a guest extends with the init-data digest (upstream attesters and verifiers agree).
INIT_DATA_PCR = 8
# TPM2B_DATA holds at most a TPMT_HA's worth of bytes (SHA-512 digest).
MAX_EXTRA_DATA = 64
# fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | restricted | sign
AK_ATTRIBUTES = 0x00050072
FIRMWARE_VERSION = 0x2020031200120003


class TpmFormatError(ValueError):
    """Bytes that are not the TPM structure they claim to be; says which field and why."""


def extend(pcr: bytes, digest: bytes) -> bytes:
    """TPM2_PCR_Extend in the SHA-256 bank."""
    return hashlib.sha256(pcr + digest).digest()


def init_data_pcr(init_data_digest: bytes) -> bytes:
    """PCR8 after the guest extends it once, from zero, with the init-data digest."""
    if len(init_data_digest) != PCR_SIZE:
        # The guest's extend takes a SHA-256 digest only; upstream attesters refuse the same.
        raise ValueError(
            f"init-data digest is {len(init_data_digest)} bytes; a PCR extend takes 32 "
            "(init-data algorithm sha256)"
        )
    return extend(bytes(PCR_SIZE), init_data_digest)


def default_pcrs() -> list[bytes]:
    """Boot PCRs 0-7 hold fixed digests (so policies can name them), the others are zero."""
    boot = [hashlib.sha256(f"trustee simulated boot PCR{i}".encode()).digest() for i in range(8)]
    return boot + [bytes(PCR_SIZE)] * (PCR_COUNT - 8)


def pcr_bank(pcrs: Mapping[int, bytes], init_data_digest: bytes | None) -> list[bytes]:
    """The 24 SHA-256 PCRs: defaults, then `pcrs` overrides, then PCR8 from init-data."""
    bank = default_pcrs()
    for index, value in pcrs.items():
        if not 0 <= index < PCR_COUNT or index == INIT_DATA_PCR:
            raise ValueError(f"PCR{index} cannot be set: 0-23 except 8 (init-data) are")
        if len(value) != PCR_SIZE:
            raise ValueError(f"PCR{index} must be 32 bytes, got {len(value)}")
        bank[index] = value
    if init_data_digest is not None:
        bank[INIT_DATA_PCR] = init_data_pcr(init_data_digest)
    return bank


def pcr_digest(pcrs: Sequence[bytes]) -> bytes:
    """The quote's pcrDigest: SHA-256 over the selected PCR values in index order."""
    return hashlib.sha256(b"".join(pcrs)).digest()


def _tpm2b(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def _all_pcrs_selection() -> bytes:
    # TPML_PCR_SELECTION: one TPMS_PCR_SELECTION, SHA-256 bank, 3-byte bitmap of PCRs 0-23.
    return struct.pack(">IHB", 1, TPM_ALG_SHA256, 3) + b"\xff\xff\xff"


def quote_message(
    nonce: bytes, pcrs: Sequence[bytes], signer_name: bytes, *, clock: int | None = None
) -> bytes:
    """A marshalled TPMS_ATTEST of type quote: `nonce` is extraData, PCRs 0-23 selected."""
    if len(nonce) > MAX_EXTRA_DATA:
        raise ValueError(f"TPM quote nonce is {len(nonce)} bytes, at most {MAX_EXTRA_DATA} fit")
    if len(pcrs) != PCR_COUNT:
        raise ValueError(f"a quote covers {PCR_COUNT} PCRs, got {len(pcrs)}")
    clock_ms = int(time.time() * 1000) if clock is None else clock
    clock_info = struct.pack(">QIIB", clock_ms, 1, 0, 1)
    return (
        struct.pack(">IH", TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE)
        + _tpm2b(signer_name)
        + _tpm2b(nonce)
        + clock_info
        + struct.pack(">Q", FIRMWARE_VERSION)
        + _all_pcrs_selection()
        + _tpm2b(pcr_digest(pcrs))
    )


@dataclass(frozen=True)
class PcrSelection:
    hash_alg: int
    pcrs: tuple[int, ...]


@dataclass(frozen=True)
class Attest:
    """The fields of a TPMS_ATTEST quote a verifier reads."""

    magic: int
    type: int
    qualified_signer: bytes
    extra_data: bytes
    clock: int
    firmware_version: int
    selections: tuple[PcrSelection, ...]
    pcr_digest: bytes


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, size: int, field: str) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise TpmFormatError(f"{field}: needs {size} bytes at {self.offset}, message ends")
        out = self.data[self.offset : end]
        self.offset = end
        return out

    def uint(self, size: int, field: str) -> int:
        return int.from_bytes(self.take(size, field), "big")

    def tpm2b(self, field: str, limit: int) -> bytes:
        size = self.uint(2, f"{field} size")
        if size > limit:
            raise TpmFormatError(f"{field}: {size} bytes, at most {limit} allowed")
        return self.take(size, field)


def parse_attest(message: bytes) -> Attest:
    """Parse a quote TPMS_ATTEST; raises `TpmFormatError` naming the bad field."""
    r = _Reader(message)
    magic = r.uint(4, "magic")
    if magic != TPM_GENERATED_VALUE:
        raise TpmFormatError(f"magic: {magic:#x}, expected {TPM_GENERATED_VALUE:#x}")
    kind = r.uint(2, "type")
    if kind != TPM_ST_ATTEST_QUOTE:
        raise TpmFormatError(f"type: {kind:#x}, expected quote {TPM_ST_ATTEST_QUOTE:#x}")
    signer = r.tpm2b("qualifiedSigner", 2 + 64)
    extra = r.tpm2b("extraData", MAX_EXTRA_DATA)
    clock = r.uint(8, "clock")
    r.take(9, "clockInfo")
    firmware = r.uint(8, "firmwareVersion")
    count = r.uint(4, "pcrSelect count")
    if count > 16:
        raise TpmFormatError(f"pcrSelect count: {count}, at most 16 banks allowed")
    selections = []
    for _ in range(count):
        alg = r.uint(2, "pcrSelect hash")
        bitmap = r.take(r.uint(1, "sizeofSelect"), "pcrSelect bitmap")
        chosen = tuple(i for i in range(len(bitmap) * 8) if bitmap[i // 8] >> (i % 8) & 1)
        selections.append(PcrSelection(alg, chosen))
    digest = r.tpm2b("pcrDigest", 64)
    if r.offset != len(message):
        raise TpmFormatError(f"{len(message) - r.offset} bytes after pcrDigest")
    return Attest(magic, kind, signer, extra, clock, firmware, tuple(selections), digest)


def tpmt_signature(signature: bytes) -> bytes:
    """The marshalled TPMT_SIGNATURE of an RSASSA/SHA-256 signature."""
    return struct.pack(">HH", TPM_ALG_RSASSA, TPM_ALG_SHA256) + _tpm2b(signature)


def parse_tpmt_signature(data: bytes) -> tuple[int, int, bytes]:
    """(sigAlg, hashAlg, signature) of a marshalled RSASSA TPMT_SIGNATURE."""
    r = _Reader(data)
    alg, hash_alg = r.uint(2, "sigAlg"), r.uint(2, "hash")
    if alg != TPM_ALG_RSASSA:
        raise TpmFormatError(f"sigAlg: {alg:#x}, expected RSASSA {TPM_ALG_RSASSA:#x}")
    signature = r.tpm2b("signature", 512)
    if r.offset != len(data):
        raise TpmFormatError(f"{len(data) - r.offset} bytes after the signature")
    return alg, hash_alg, signature


def _b64url(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class AttestationKey:
    """An RSA-2048 TPM key: the AK, which signs quotes (and, for Azure, the EK beside it)."""

    key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls) -> AttestationKey:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def load(cls, path: Path) -> AttestationKey:
        key = store.read_rsa_key(path)
        if key.key_size != 2048:
            raise store.SimulationError(f"{path}: expected an RSA-2048 key, got RSA-{key.key_size}")
        return cls(key)

    def save(self, path: Path) -> None:
        try:
            store.write_private_key(path, self.key)
        except OSError as exc:
            raise store.SimulationError(f"{path}: cannot write: {exc.strerror or exc}") from None

    @property
    def spki_der(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def spki_b64(self) -> str:
        """Standard base64 of the DER SubjectPublicKeyInfo: the `ak_public` a verifier reports."""
        return base64.b64encode(self.spki_der).decode("ascii")

    def jwk(self, kid: str, key_ops: str = "sign") -> dict[str, object]:
        numbers = self.key.public_key().public_numbers()
        return {
            "kid": kid,
            "key_ops": [key_ops],
            "kty": "RSA",
            "e": _b64url(numbers.e),
            "n": _b64url(numbers.n),
        }

    @property
    def name(self) -> bytes:
        """The TPM name: nameAlg then SHA-256 of the marshalled TPMT_PUBLIC."""
        modulus = self.key.public_key().public_numbers().n.to_bytes(256, "big")
        public = (
            struct.pack(">HHI", TPM_ALG_RSA, TPM_ALG_SHA256, AK_ATTRIBUTES)
            + _tpm2b(b"")
            + struct.pack(">HHHHI", TPM_ALG_NULL, TPM_ALG_RSASSA, TPM_ALG_SHA256, 2048, 0)
            + _tpm2b(modulus)
        )
        return struct.pack(">H", TPM_ALG_SHA256) + hashlib.sha256(public).digest()

    def quote(self, nonce: bytes, pcrs: Sequence[bytes]) -> tuple[bytes, bytes]:
        """(TPMS_ATTEST message, raw RSASSA signature over it)."""
        message = quote_message(nonce, pcrs, self.name)
        signature = self.key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        return message, signature
