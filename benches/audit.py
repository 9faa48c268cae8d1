#!/usr/bin/env python3
"""What audit costs a guest: full flows with a slow webhook sink against the same flows with none.

Run from the repository root with the project's venv:

    .venv/bin/python benches/audit.py [--flows 10000] [--clients 8] [--repeats 3] [--delay 0.05]

A webhook receiver runs in this process and answers every POST after `--delay` seconds (a
`trio.sleep`, not a busy loop). For each repeat, two runs alternate against a fresh server
(the same one `benches/flow.py` starts): one with no audit sink, one with
`[[audit.sinks]] type = "webhook"` pointing at the receiver, with a queue sized for the whole
run. Each run performs `--flows` full sample-TEE flows (auth → attest → resource) spread over
`--clients` keep-alive connections and records every flow's latency. After the sink run the
server is stopped (which flushes the sink) and the receiver must hold every flow's four events
(session created, attestation verified, token issued, resource released), each id once.

stdout: one JSON object per repeat, then a last line with the medians over repeats:
`p50_ms_sink`, `p50_ms_none`, `ratio` = p50_ms_sink / p50_ms_none. Target: ratio ≤ 1.2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import h11
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flow import Guest, Server, log, percentile, running_server, seed

FLOW_TYPES = (
    "org.trustee-py.session.created",
    "org.trustee-py.attestation.verified",
    "org.trustee-py.token.issued",
    "org.trustee-py.resource.released",
)


class SlowReceiver:
    """Accepts CloudEvents batches over HTTP/1.1 and answers each after a fixed delay."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.port = 0
        self.ids: dict[str, str] = {}
        self.duplicates = 0

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._serve, listeners)

    async def _serve(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        body = bytearray()
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    conn.receive_data(data)
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    self._record(bytes(body))
                    body.clear()
                    await trio.sleep(self.delay)
                    headers = [("content-length", "0")]
                    await stream.send_all(conn.send(h11.Response(status_code=200, headers=headers)))
                    await stream.send_all(conn.send(h11.EndOfMessage()))
                    conn.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    return
        except (trio.BrokenResourceError, h11.RemoteProtocolError):
            return

    def _record(self, body: bytes) -> None:
        parsed = json.loads(body)
        for event in parsed if isinstance(parsed, list) else [parsed]:
            if event["id"] in self.ids:
                self.duplicates += 1
            self.ids[event["id"]] = event["type"]


async def run_flows(server: Server, flows: int, clients: int) -> list[float]:
    await seed(server, None)
    guests = [Guest(server.port) for _ in range(clients)]
    latencies: list[float] = []
    remaining = flows

    async def loop(guest: Guest) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            await guest.flow()
            latencies.append(time.perf_counter() - start)
        await guest.conn.aclose()

    async with trio.open_nursery() as nursery:
        for guest in guests:
            nursery.start_soon(loop, guest)
    return latencies


def one_run(extra: str, flows: int, clients: int) -> float:
    with (
        tempfile.TemporaryDirectory(prefix="trustee-audit-bench-") as tmp,
        running_server(Path(tmp), None, extra) as server,
    ):
        latencies = trio.run(run_flows, server, flows, clients)
    return percentile(sorted(latencies), 50) * 1000


async def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    receiver = SlowReceiver(args.delay)
    results: list[dict[str, Any]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(receiver.run)
        sink = (
            "\n[[audit.sinks]]\n"
            'type = "webhook"\n'
            f'url = "http://127.0.0.1:{receiver.port}/events"\n'
            f"queue_size = {len(FLOW_TYPES) * args.flows + 1000}\n"
            "batch_size = 500\n"
        )
        for repeat in range(args.repeats):
            none = await trio.to_thread.run_sync(one_run, "", args.flows, args.clients)
            before = len(receiver.ids)
            with_sink = await trio.to_thread.run_sync(one_run, sink, args.flows, args.clients)
            types = list(receiver.ids.values())[before:]
            counts = {t: types.count(t) for t in FLOW_TYPES}
            complete = all(n == args.flows for n in counts.values())
            log(
                f"repeat {repeat + 1}: p50 {none:.2f} ms without a sink, {with_sink:.2f} ms with "
                f"the webhook; events delivered {counts}, duplicates {receiver.duplicates}"
            )
            if not complete:
                raise SystemExit(f"events lost in repeat {repeat + 1}: {counts}")
            line = {
                "repeat": repeat + 1,
                "p50_ms_sink": round(with_sink, 3),
                "p50_ms_none": round(none, 3),
                "events_delivered": sum(counts.values()),
            }
            print(json.dumps(line), flush=True)
            results.append(line)
        nursery.cancel_scope.cancel()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--flows", type=int, default=10000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--delay", type=float, default=0.05, help="receiver answer delay, s")
    args = parser.parse_args(argv)
    results = trio.run(bench, args)
    sink = statistics.median(r["p50_ms_sink"] for r in results)
    none = statistics.median(r["p50_ms_none"] for r in results)
    summary = {"p50_ms_sink": round(sink, 3), "p50_ms_none": round(none, 3)}
    summary["ratio"] = round(sink / none, 3)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
