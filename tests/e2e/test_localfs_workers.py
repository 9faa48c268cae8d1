"""Processes sharing one LocalFs directory serve as one KBS: a resource, resource policy,
attestation policy or reference value changed through one is applied by the others at their next
request, and a file changed directly on disk is served without a restart.

Two single-worker servers on their own ports let a test say which process serves what; one
server with two workers shows the same where the kernel picks the worker.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio

from tests.e2e.harness import DEV_CONFIG, RunningKbs, run_kbs
from tests.e2e.test_admin_auth import jwt_claims
from trustee.client.attesters import detect_attesters
from trustee.client.cli import ALLOW_ALL_POLICY, DENY_ALL_POLICY
from trustee.client.kbs import KbsClient, KbsClientError

T = TypeVar("T")

SECRET_PATH = "default/shared/secret"
STORED_NAME = "default\\x2Fshared\\x2Fsecret"
# Executables 4 (what no shipped policy says); hardware vouched for (2) only with a registered
# `svn` reference value, else 97.
MARKED_CPU_POLICY = """package policy
import rego.v1
default hardware := 97
hardware := 2 if input.sample.svn in query_reference_value("svn")
trust_claims := {"executables": 4, "hardware": hardware, "configuration": 2}
"""


def config(storage: Path, workers: int = 1) -> str:
    return DEV_CONFIG.replace(
        "insecure_http = true", f"insecure_http = true\nworker_count = {workers}"
    ) + (
        f'[storage_backend]\nstorage_type = "LocalFs"\n'
        f'[storage_backend.backends.local_fs]\ndir_path = "{storage}"\n'
    )


@asynccontextmanager
async def servers(tmp_path: Path, names: tuple[str, ...]) -> AsyncIterator[list[RunningKbs]]:
    text = config(tmp_path / "storage")
    async with run_kbs(text, tmp_path, name=names[0]) as first:
        if len(names) == 1:
            yield [first]
            return
        async with run_kbs(text, tmp_path, name=names[1]) as second:
            yield [first, second]


def guest(kbs: RunningKbs) -> KbsClient:
    return KbsClient(
        kbs.url,
        attesters=detect_attesters({}),
        retry_delay=0,
        handshake_attempts=1,
        resource_attempts=2,
    )


async def fetch(kbs: RunningKbs) -> bytes:
    async with guest(kbs) as client:
        return await client.get_resource(SECRET_PATH)


async def trust_vector(kbs: RunningKbs) -> dict[str, Any]:
    async with guest(kbs) as client:
        claims = jwt_claims(await client.attest())
    vector: dict[str, Any] = claims["submods"]["cpu0"]["ear.trustworthiness-vector"]
    return vector


async def test_changes_through_one_server_apply_on_the_other(tmp_path: Path) -> None:
    async with servers(tmp_path, ("a", "b")) as (a, b), KbsClient(a.url) as admin:
        await admin.set_resource(SECRET_PATH, b"one")
        await admin.set_resource_policy(ALLOW_ALL_POLICY)
        assert await fetch(b) == b"one"

        await admin.set_resource(SECRET_PATH, b"two")
        assert await fetch(b) == b"two"

        await admin.set_resource_policy(DENY_ALL_POLICY)
        with pytest.raises(KbsClientError, match="request unauthorized"):
            await fetch(b)
        await admin.set_resource_policy(ALLOW_ALL_POLICY)
        assert await fetch(b) == b"two"

        assert (await trust_vector(b))["executables"] != 4  # the shipped default_cpu
        await admin.set_attestation_policy(MARKED_CPU_POLICY, policy_id="default_cpu")
        assert await trust_vector(b) == {"executables": 4, "hardware": 97, "configuration": 2}
        await admin.set_sample_reference_value("svn", ["1"])
        assert (await trust_vector(b))["hardware"] == 2
        await admin.set_sample_reference_value("svn", ["9"])
        assert (await trust_vector(b))["hardware"] == 97

        await admin.delete_resource(SECRET_PATH)
        with pytest.raises(KbsClientError, match="Plugin internal error"):
            await fetch(b)
        assert a.alive and b.alive


async def test_files_changed_on_disk_are_served(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    stored = storage / "repository" / STORED_NAME
    async with servers(tmp_path, ("kbs",)) as (kbs,), KbsClient(kbs.url) as admin:
        await admin.set_resource_policy(ALLOW_ALL_POLICY)
        # An operator drops a file in (written aside, renamed into place).
        stored.parent.mkdir(parents=True, exist_ok=True)
        (storage / "incoming").write_bytes(b"first")
        os.replace(storage / "incoming", stored)
        assert await fetch(kbs) == b"first"

        # Once the file is old enough to be served from memory, an edit in place (same size,
        # same inode) is still seen.
        await trio.sleep(1.2)
        assert await fetch(kbs) == b"first"
        with stored.open("r+b") as fh:
            fh.write(b"again")
        assert await fetch(kbs) == b"again"

        # The resource policy file replaced behind the server's back.
        (storage / "incoming").write_text(DENY_ALL_POLICY)
        os.replace(storage / "incoming", storage / "kbs" / "resource-policy.rego")
        with pytest.raises(KbsClientError, match="request unauthorized"):
            await fetch(kbs)

        stored.unlink()
        (storage / "kbs" / "resource-policy.rego").write_text(ALLOW_ALL_POLICY)
        with pytest.raises(KbsClientError, match="Plugin internal error"):
            await fetch(kbs)


async def fetch_or_refusal(kbs: RunningKbs) -> bytes | str:
    try:
        return await fetch(kbs)
    except KbsClientError as exc:
        return "unauthorized" if "request unauthorized" in str(exc) else str(exc)


async def on_any_worker(
    kbs: RunningKbs, probe: Callable[[RunningKbs], Awaitable[T]], count: int = 12
) -> list[T]:
    """What `count` concurrent guests get, each on connections of its own (so on any worker)."""
    seen: list[T] = []

    async def one() -> None:
        seen.append(await probe(kbs))

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)
    return seen


async def test_every_worker_applies_a_change_at_once(tmp_path: Path) -> None:
    async with run_kbs(config(tmp_path / "storage", workers=2), tmp_path) as kbs:
        assert "Starting 2 workers" in kbs.log_text()
        async with KbsClient(kbs.url) as admin:
            await admin.set_resource(SECRET_PATH, b"one")
            await admin.set_resource_policy(DENY_ALL_POLICY)
            assert set(await on_any_worker(kbs, fetch_or_refusal)) == {"unauthorized"}
            await admin.set_resource_policy(ALLOW_ALL_POLICY)
            assert set(await on_any_worker(kbs, fetch_or_refusal)) == {b"one"}
            await admin.set_resource(SECRET_PATH, b"two")
            assert set(await on_any_worker(kbs, fetch_or_refusal)) == {b"two"}

            await admin.set_attestation_policy(MARKED_CPU_POLICY, policy_id="default_cpu")
            vectors = await on_any_worker(kbs, trust_vector)
            assert {(v["executables"], v["hardware"]) for v in vectors} == {(4, 97)}
            await admin.set_sample_reference_value("svn", ["1"])
            vectors = await on_any_worker(kbs, trust_vector)
            assert {(v["executables"], v["hardware"]) for v in vectors} == {(4, 2)}
