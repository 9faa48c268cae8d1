"""grpcio and trio, both ways: handler threads run their work on the trio loop without blocking
it (bounded in time, counted for the offload), and trio tasks make gRPC calls that a cancel
scope or a deadline ends."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
import trio

from trustee.grpc_api import reference_pb2, reference_pb2_grpc
from trustee.grpc_api.bridge import TrioPortal, unary


class Counter:
    requests = 0


async def test_a_portal_runs_on_the_loop_while_the_loop_keeps_going() -> None:
    counter = Counter()
    portal = TrioPortal(trio.lowlevel.current_trio_token(), 5, counter)
    release = trio.Event()
    seen: list[int] = []

    async def work(x: int) -> int:
        seen.append(counter.requests)
        await release.wait()
        return x * 2

    async with trio.open_nursery() as nursery:
        await nursery.start(portal.serve)
        results: list[int] = []

        async def caller(x: int) -> None:
            results.append(await trio.to_thread.run_sync(portal.run, work, x))

        for x in (1, 2, 3):
            nursery.start_soon(caller, x)
        # The threads wait for `work`; the loop is free meanwhile, for this task too.
        with trio.fail_after(5):
            while len(seen) < 3:
                await trio.sleep(0.01)
        assert sorted(seen) == [1, 2, 3] and results == [] and counter.requests == 3
        release.set()
        with trio.fail_after(5):
            while len(results) < 3:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert sorted(results) == [2, 4, 6] and counter.requests == 0


async def test_a_portal_call_is_bounded_and_errors_reach_the_thread() -> None:
    portal = TrioPortal(trio.lowlevel.current_trio_token(), 0.05)

    async def forever() -> None:
        await trio.sleep_forever()

    async def fails() -> None:
        raise ValueError("from the loop")

    async with trio.open_nursery() as nursery:
        await nursery.start(portal.serve)
        with pytest.raises(trio.TooSlowError):
            await trio.to_thread.run_sync(portal.run, forever)
        with pytest.raises(ValueError, match="from the loop"):
            await trio.to_thread.run_sync(portal.run, fails)
        nursery.cancel_scope.cancel()


async def test_calls_end_with_run_finished_when_the_portal_stops() -> None:
    portal = TrioPortal(trio.lowlevel.current_trio_token(), 60)
    started = trio.Event()

    async def forever() -> None:
        started.set()
        await trio.sleep_forever()

    outcomes: list[BaseException] = []

    async def caller() -> None:
        try:
            await trio.to_thread.run_sync(portal.run, forever)
        except trio.RunFinishedError as exc:
            outcomes.append(exc)

    async with trio.open_nursery() as outer:
        outer.start_soon(caller)
        async with trio.open_nursery() as nursery:
            await nursery.start(portal.serve)
            await started.wait()
            nursery.cancel_scope.cancel()  # a call in progress
    assert len(outcomes) == 1
    with pytest.raises(trio.RunFinishedError):  # and one after
        await trio.to_thread.run_sync(portal.run, forever)


class SlowRvps(reference_pb2_grpc.ReferenceValueProviderServiceServicer):
    """Answers after `gate` is set (a thread event: handlers run on grpcio's threads)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.cancelled = threading.Event()

    def QueryReferenceValue(
        self, request: reference_pb2.ReferenceValueQueryRequest, context: grpc.ServicerContext
    ) -> reference_pb2.ReferenceValueQueryResponse:
        context.add_callback(self.cancelled.set)
        self.gate.wait(10)
        return reference_pb2.ReferenceValueQueryResponse(reference_value_results='"v"')

    def RegisterReferenceValue(
        self, request: reference_pb2.ReferenceValueRegisterRequest, context: grpc.ServicerContext
    ) -> reference_pb2.ReferenceValueRegisterResponse:
        return reference_pb2.ReferenceValueRegisterResponse()


@pytest.fixture
async def slow_server() -> AsyncIterator[tuple[SlowRvps, str]]:
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    servicer = SlowRvps()
    reference_pb2_grpc.add_ReferenceValueProviderServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        servicer.gate.set()
        server.stop(0).wait()


QUERY = reference_pb2.ReferenceValueQueryRequest(reference_value_id="x")


async def test_unary_answers_without_holding_the_loop(slow_server: tuple[SlowRvps, str]) -> None:
    servicer, address = slow_server
    with grpc.insecure_channel(address) as channel:
        stub = reference_pb2_grpc.ReferenceValueProviderServiceStub(channel)
        ticks = 0
        async with trio.open_nursery() as nursery:

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await trio.sleep(0.01)

            nursery.start_soon(ticker)
            await trio.sleep(0.05)
            before = ticks
            with trio.move_on_after(0.3):
                await unary(stub.QueryReferenceValue, QUERY, 5)
            assert ticks > before  # the loop ran while the call waited
            servicer.gate.set()
            reply = await unary(stub.QueryReferenceValue, QUERY, 5)
            nursery.cancel_scope.cancel()
    assert reply.reference_value_results == '"v"'


async def test_cancelling_the_task_cancels_the_call(slow_server: tuple[SlowRvps, str]) -> None:
    servicer, address = slow_server
    with grpc.insecure_channel(address) as channel:
        stub = reference_pb2_grpc.ReferenceValueProviderServiceStub(channel)
        with trio.move_on_after(0.2) as scope:
            await unary(stub.QueryReferenceValue, QUERY, 30)
        assert scope.cancelled_caught
        # The server sees the call end: the RPC did not go on behind the task's back.
        assert await trio.to_thread.run_sync(servicer.cancelled.wait, 10)


async def test_a_deadline_ends_the_call(slow_server: tuple[SlowRvps, str]) -> None:
    _, address = slow_server
    with grpc.insecure_channel(address) as channel:
        stub = reference_pb2_grpc.ReferenceValueProviderServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            await unary(stub.QueryReferenceValue, QUERY, 0.2)
    error = caught.value
    assert isinstance(error, grpc.Call)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
