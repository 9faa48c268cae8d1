"""Collateral bundles: every TDX collateral and SNP endorsement key a cluster needs, in one tar.

A bundle is made where Intel PCS / AMD KDS are reachable (``trustee collateral fetch``) and
read where they are not (``collateral_bundle`` in the verifier configuration). Layout::

    manifest.json
    tdx/<FMSPC>-<ca>.json, sgx/<FMSPC>-<ca>.json dcap-qvl form collateral (trustee.collateral.tdx)
    snp/<Product>/vcek/<hw_id>/<tcb>_vcek.der   a VCEK (file name as the offline KDS store's)
    snp/<Product>/ask.der, ark.der, asvk.der    AMD's CA certificates for the product

``manifest.json`` holds ``format``, ``version``, ``created`` and one entry per member:
``path``, ``sha256``, ``size``, ``kind``, ``key`` and ``valid_from`` / ``valid_until`` (the
earliest nextUpdate or notAfter of what the member holds).

The manifest guards against a damaged or partly replaced bundle; it is not signed. What makes
the content trustworthy is the vendors' signatures, checked when the bundle is verified or
loaded (trustee.collateral.bundle_check) and again by every appraisal.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FORMAT = "trustee-collateral-bundle"
VERSION = 1
MANIFEST = "manifest.json"
# DCAP collateral (TDX or SGX: the same form, each TEE's own documents) and AMD certificates.
DCAP_KINDS = {"tdx-collateral": "tdx", "sgx-collateral": "sgx"}
KINDS = (*DCAP_KINDS, "snp-vcek", "snp-ask", "snp-ark", "snp-asvk")

# Hostile or mistaken input stays small: real members are a few KiB each.
MAX_MEMBER_SIZE = 1 << 20
MAX_MEMBERS = 4096
MAX_TOTAL_SIZE = 256 << 20


class BundleError(ValueError):
    """The bundle is damaged or its content does not hold; the message names the member."""


class NotABundle(BundleError):
    """The file is not a collateral bundle at all (not a tar, or no manifest of ours)."""


@dataclass(frozen=True)
class Member:
    path: str
    kind: str
    key: Mapping[str, Any]
    data: bytes = field(repr=False)
    valid_from: str | None = None
    valid_until: str | None = None

    def entry(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "sha256": hashlib.sha256(self.data).hexdigest(),
            "size": len(self.data),
            "kind": self.kind,
            "key": dict(self.key),
            "valid_from": self.valid_from,
            "valid_until": self.valid_until,
        }


@dataclass(frozen=True)
class Bundle:
    path: str
    created: str
    members: tuple[Member, ...]

    def of_kind(self, kind: str) -> list[Member]:
        return [m for m in self.members if m.kind == kind]


def iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_bundle(path: str | Path, members: Sequence[Member], created: float) -> None:
    """Write the tar (manifest first); member times are `created` so equal input gives equal
    bytes."""
    seen: set[str] = set()
    for member in members:
        if member.path in seen or member.path == MANIFEST:
            raise BundleError(f"bundle member {member.path} would be written twice")
        seen.add(member.path)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "created": iso(created),
        "members": [m.entry() for m in members],
    }
    text = json.dumps(manifest, indent=2).encode() + b"\n"
    target = Path(path)
    # Written aside and renamed: an interrupted fetch never leaves a half bundle under the name.
    partial = target.with_name(f".{target.name}.partial")
    try:
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            for name, data in [(MANIFEST, text), *((m.path, m.data) for m in members)]:
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), int(created), 0o644
                tar.addfile(info, io.BytesIO(data))
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


def read_bundle(path: str | Path) -> Bundle:
    """The bundle at `path` with every member's hash and size checked against the manifest.

    Raises NotABundle for a file that is no bundle of ours, BundleError naming the member for
    a missing, extra, altered or oversized one.
    """
    where = str(path)
    files = _tar_files(path)
    if MANIFEST not in files:
        raise NotABundle(f"{where}: not a collateral bundle (no {MANIFEST})")
    manifest = _manifest(files.pop(MANIFEST), where)
    members: list[Member] = []
    for index, entry in enumerate(manifest["members"]):
        member, expected = _entry(entry, index, where)
        data = files.pop(member.path, None)
        if data is None:
            raise BundleError(f"{where}: member {member.path} is listed but missing")
        size, sha256 = expected
        if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
            raise BundleError(
                f"{where}: member {member.path} does not match the manifest "
                f"({len(data)} bytes, SHA-256 {hashlib.sha256(data).hexdigest()[:16]}…; "
                f"listed {size} bytes, {sha256[:16]}…)"
            )
        members.append(Member(member.path, member.kind, member.key, data, *member_window(entry)))
    if files:
        raise BundleError(f"{where}: member {sorted(files)[0]} is not listed in the manifest")
    return Bundle(where, str(manifest["created"]), tuple(members))


def member_window(entry: Mapping[str, Any]) -> tuple[str | None, str | None]:
    start, end = entry.get("valid_from"), entry.get("valid_until")
    return (start if isinstance(start, str) else None, end if isinstance(end, str) else None)


def _tar_files(path: str | Path) -> dict[str, bytes]:
    where = str(path)
    try:
        tar = tarfile.open(path, "r:")  # noqa: SIM115 - closed by the `with` below
    except FileNotFoundError:
        raise NotABundle(f"{where}: no such file") from None
    except (OSError, tarfile.TarError) as exc:
        raise NotABundle(f"{where}: not a collateral bundle (not a tar file: {exc})") from None
    files: dict[str, bytes] = {}
    total = 0
    with tar:
        try:
            for count, info in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    raise BundleError(f"{where}: more than {MAX_MEMBERS} members")
                if not info.isfile():
                    raise BundleError(f"{where}: member {info.name} is not a regular file")
                if info.size > MAX_MEMBER_SIZE:
                    raise BundleError(
                        f"{where}: member {info.name} is {info.size} bytes, over the "
                        f"{MAX_MEMBER_SIZE} byte limit"
                    )
                total += info.size
                if total > MAX_TOTAL_SIZE:
                    raise BundleError(f"{where}: members exceed {MAX_TOTAL_SIZE} bytes in all")
                if info.name in files:
                    raise BundleError(f"{where}: member {info.name} appears twice")
                handle = tar.extractfile(info)
                files[info.name] = handle.read() if handle is not None else b""
        except (OSError, tarfile.TarError) as exc:
            raise BundleError(f"{where}: damaged tar file: {exc}") from None
    return files


def _manifest(data: bytes, where: str) -> dict[str, Any]:
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        raise NotABundle(f"{where}: {MANIFEST} is not JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise NotABundle(f"{where}: {MANIFEST} is not a {FORMAT} manifest")
    if manifest.get("version") != VERSION:
        raise BundleError(
            f"{where}: {MANIFEST} has format version {manifest.get('version')!r}; this "
            f"release reads version {VERSION}"
        )
    if not isinstance(manifest.get("members"), list) or not isinstance(
        manifest.get("created"), str
    ):
        raise BundleError(f"{where}: {MANIFEST} lacks 'members' (a list) or 'created'")
    return manifest


def _entry(entry: Any, index: int, where: str) -> tuple[Member, tuple[int, str]]:
    label = f"{where}: {MANIFEST} members[{index}]"
    if not isinstance(entry, dict):
        raise BundleError(f"{label} is not an object")
    path, kind, key = entry.get("path"), entry.get("kind"), entry.get("key")
    size, sha256 = entry.get("size"), entry.get("sha256")
    if not isinstance(path, str) or not path:
        raise BundleError(f"{label} has no 'path'")
    if kind not in KINDS:
        raise BundleError(f"{label} ({path}): kind {kind!r} is not one of {', '.join(KINDS)}")
    if not isinstance(key, dict):
        raise BundleError(f"{label} ({path}): 'key' is not an object")
    if isinstance(size, bool) or not isinstance(size, int) or not isinstance(sha256, str):
        raise BundleError(f"{label} ({path}): 'size' or 'sha256' is missing")
    return Member(path, kind, key, b""), (size, sha256.lower())
