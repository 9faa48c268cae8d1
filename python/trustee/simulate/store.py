"""Reading and writing a simulated PKI's files, so one process can sign with a PKI another made.

Every failure names the file and the check that failed, because the usual reader is a person
who pointed a test or benchmark at the wrong directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PKI_FILE = "pki.json"
FORMAT_VERSION = 1
MAX_FILE_SIZE = 1 << 20

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class SimulationError(Exception):
    """A saved simulated PKI (or a request to make one) cannot be used; one line, names the file."""


def _read(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_SIZE:
            raise SimulationError(f"{path}: {size} bytes, larger than the {MAX_FILE_SIZE} allowed")
        return path.read_bytes()
    except FileNotFoundError:
        raise SimulationError(f"{path}: missing from the saved PKI") from None
    except OSError as exc:
        raise SimulationError(f"{path}: cannot be read: {exc.strerror or exc}") from None


def write_private_key(path: Path, key: PrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Created 0600 from the start so the key is never readable by others, even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(data)


def write_certificate(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def write_json(path: Path, value: dict[str, Any]) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def read_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(_read(path))
    except ValueError as exc:
        raise SimulationError(f"{path}: not a PEM certificate: {exc}") from None


def _read_private_key(path: Path) -> object:
    try:
        return serialization.load_pem_private_key(_read(path), password=None)
    except (ValueError, TypeError) as exc:
        raise SimulationError(f"{path}: not an unencrypted PKCS#8 PEM key: {exc}") from None


def read_ec_key(
    path: Path, curve: type[ec.EllipticCurve], cert: x509.Certificate | None = None
) -> ec.EllipticCurvePrivateKey:
    key = _read_private_key(path)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, curve):
        raise SimulationError(f"{path}: expected an EC {curve.name} key, got {_describe(key)}")
    _check_pair(path, key, cert)
    return key


def read_rsa_key(path: Path, cert: x509.Certificate | None = None) -> rsa.RSAPrivateKey:
    key = _read_private_key(path)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SimulationError(f"{path}: expected an RSA key, got {_describe(key)}")
    _check_pair(path, key, cert)
    return key


def _check_pair(
    path: Path,
    key: PrivateKey,
    cert: x509.Certificate | None,
) -> None:
    # A key saved beside the wrong certificate would sign evidence no verifier accepts, and the
    # failure would surface far from its cause.
    if cert is not None and key.public_key() != cert.public_key():
        raise SimulationError(
            f"{path}: key does not match the certificate {cert.subject.rfc4514_string()!r}"
        )


def _describe(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"EC {key.curve.name}"
    if isinstance(key, rsa.RSAPrivateKey):
        return f"RSA-{key.key_size}"
    return type(key).__name__


class PkiDocument:
    """The parsed pki.json; accessors raise `SimulationError` naming the file and the field."""

    def __init__(self, directory: Path, kind: str) -> None:
        self.path = directory / PKI_FILE
        try:
            value = json.loads(_read(self.path))
        except (ValueError, UnicodeDecodeError) as exc:
            raise SimulationError(f"{self.path}: not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise SimulationError(
                f"{self.path}: expected a JSON object, got {type(value).__name__}"
            )
        self.data: dict[str, Any] = value
        found_kind = value.get("kind")
        if found_kind != kind:
            raise SimulationError(f"{self.path}: kind is {found_kind!r}, expected {kind!r}")
        version = value.get("format_version")
        if version != FORMAT_VERSION:
            raise SimulationError(
                f"{self.path}: format_version is {version!r}, this build reads {FORMAT_VERSION}"
            )

    def fail(self, key: str, why: str) -> SimulationError:
        return SimulationError(f"{self.path}: {key} {why}")

    def _get(self, key: str) -> Any:
        node: Any = self.data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise self.fail(key, "is missing")
            node = node[part]
        return node

    def bytes_(self, key: str, size: int | None = None) -> bytes:
        text = self._get(key)
        if not isinstance(text, str):
            raise self.fail(key, f"must be a hex string, got {type(text).__name__}")
        try:
            value = bytes.fromhex(text)
        except ValueError:
            raise self.fail(key, f"is not hex: {text[:40]!r}") from None
        if size is not None and len(value) != size:
            raise self.fail(key, f"must be {size} bytes, got {len(value)}")
        return value

    def int_(self, key: str, low: int = 0, high: int = 255) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(key, f"must be an integer in {low}..{high}, got {value!r}")
        return value

    def optional_int(self, key: str, low: int = 0, high: int = 255) -> int | None:
        return None if self._get(key) is None else self.int_(key, low, high)

    def bool_(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, got {value!r}")
        return value

    def str_(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, got {value!r}")
        return value

    def int_list(self, key: str, length: int) -> tuple[int, ...]:
        value = self._get(key)
        if (
            not isinstance(value, list)
            or len(value) != length
            or any(
                isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 255 for v in value
            )
        ):
            raise self.fail(key, f"must be a list of {length} integers in 0..255, got {value!r}")
        return tuple(value)


def header(kind: str) -> dict[str, Any]:
    return {"kind": kind, "format_version": FORMAT_VERSION}


def save_pki(
    directory: Path,
    document: dict[str, Any],
    files: Sequence[tuple[str, PrivateKey, x509.Certificate | None]],
) -> Path:
    """Write `STEM.key` (and `STEM.pem` when there is a certificate) per entry, then pki.json."""
    target = prepare_directory(directory)
    try:
        for stem, key, cert in files:
            write_private_key(target / f"{stem}.key", key)
            if cert is not None:
                write_certificate(target / f"{stem}.pem", cert)
        write_json(target / PKI_FILE, document)
    except OSError as exc:
        raise SimulationError(
            f"{exc.filename or target}: cannot write: {exc.strerror or exc}"
        ) from None
    return target


def prepare_directory(directory: Path) -> Path:
    # Private keys live here, so a directory we create is for the owner only.
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise SimulationError(
            f"{directory}: cannot create directory: {exc.strerror or exc}"
        ) from None
    return directory
