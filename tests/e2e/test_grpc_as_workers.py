"""The gRPC Attestation Service with `--workers 2`: both processes serve one port, their tokens
verify against one key, a worker that dies is replaced and SIGTERM stops them all."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric import ec

from tests.e2e.grpc_harness import RunningGrpc, as_argv, run_grpc
from tests.e2e.test_grpc_as import SAMPLE_OK, evaluate
from trustee.crypto.b64 import b64url_decode
from trustee.crypto.jws import split_compact, verify_signature
from trustee.grpc_api import attestation_pb2 as pb

pytestmark = pytest.mark.e2e

# Each evaluation goes through a channel (a connection) of its own: the kernel picks a worker
# per connection, so at this many both are chosen but with odds of 2**-39.
CONNECTIONS = 40


def workers_of(supervisor: int) -> set[int]:
    """The supervisor's worker processes (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    found = set()
    for pid in map(int, children):
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(pid)
        except OSError:
            continue
    return found


def header_key(token: str) -> tuple[str, ec.EllipticCurvePublicKey]:
    """The token's header JWK (as JSON, to compare) and the key it names, its signature
    checked."""
    parsed = split_compact(token)
    header = json.loads(b64url_decode(token.split(".")[0]))
    jwk = header["jwk"]
    x, y = (int.from_bytes(b64url_decode(jwk[c]), "big") for c in ("x", "y"))
    key = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    verify_signature("ES256", key, parsed.signing_input, parsed.signature)
    return json.dumps(jwk, sort_keys=True), key


def issued(audit: Path) -> int:
    if not audit.exists():
        return 0
    return sum('"org.trustee-py.token.issued"' in line for line in audit.read_text().splitlines())


async def evaluations(server: RunningGrpc, count: int) -> list[str]:
    item = pb.IndividualAttestationRequest(tee="sample", evidence=SAMPLE_OK)
    return [await evaluate(server, item) for _ in range(count)]


async def test_two_workers_share_the_port_the_key_and_are_supervised(tmp_path: Path) -> None:
    config = tmp_path / "as.json"
    doc = {
        "work_dir": str(tmp_path / "work"),
        "audit": {"sinks": [{"type": "file", "path": str(tmp_path / "audit.jsonl")}]},
    }
    config.write_text(json.dumps(doc))
    audits = [tmp_path / f"audit.worker{i}.jsonl" for i in (0, 1)]
    argv = as_argv(config, "--workers", "2")
    async with run_grpc(argv, tmp_path / "as.log") as server:
        supervisor = server.process.pid
        tokens = await evaluations(server, CONNECTIONS)
        keys = {header_key(token)[0] for token in tokens}
        assert len(keys) == 1, "the workers signed with different keys"
        assert all(issued(audit) > 0 for audit in audits), "one worker served every connection"

        before = workers_of(supervisor)
        assert len(before) == 2
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        with trio.fail_after(30):
            while len(after := workers_of(supervisor)) != 2 or victim in after:
                await trio.sleep(0.1)
        assert "died (signal SIGKILL); starting a new one" in server.log_text()
        counts = [issued(audit) for audit in audits]
        with trio.fail_after(60):
            while not all(issued(a) > n for a, n in zip(audits, counts, strict=True)):
                tokens = await evaluations(server, 10)
        assert {header_key(token)[0] for token in tokens} == keys

        server.process.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            await server.process.wait()
        assert server.process.returncode == 0
        for pid in after:
            assert not Path(f"/proc/{pid}").exists() or b"Z" in _state(pid)


def _state(pid: int) -> bytes:
    """A worker reaped by nobody yet shows as a zombie; one that still runs does not."""
    return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
