"""Policy limits at the Python boundary: distinct exceptions, configured limits reach the engine,
and a slow evaluation never holds the event loop, with or without offload threads."""

from __future__ import annotations

import itertools
import time

import pytest
import trio

from trustee import _core
from trustee.policy.engine import (
    PolicyCache,
    PolicyCompileError,
    PolicyEvalError,
    PolicyLimitError,
    PolicyLimits,
)

SLOW = (
    "package policy\nimport rego.v1\n"
    "allow if count([x | some x in numbers.range(1, 4000); some y in numbers.range(1, 4000);"
    " x == y]) > 0\n"
)
QUICK = "package policy\nimport rego.v1\nallow if input.x == 1\n"


def test_limit_error_is_an_eval_error() -> None:
    assert issubclass(PolicyLimitError, PolicyEvalError)
    assert issubclass(PolicyEvalError, Exception)


def test_recursion_is_a_compile_error() -> None:
    with pytest.raises(PolicyCompileError, match=r"recursion is not allowed.*f \(line 2\)"):
        PolicyCache().compile("package policy\nf(x) { f(x) }\nallow { f(1) }\n")


def test_configured_limits_reach_the_engine() -> None:
    cache = PolicyCache(limits=PolicyLimits(timeout_ms=200, memory_mib=8))
    policy = cache.compile(SLOW)
    assert policy._policy.limits == (200, 8)
    started = time.monotonic()
    with pytest.raises(PolicyLimitError, match="time limit of 200 ms"):
        policy.evaluate({}, None, ["data.policy.allow"])
    assert time.monotonic() - started < 1.0
    big = cache.compile(
        "package policy\nimport rego.v1\nallow if count(numbers.range(1, 1000000)) > 0\n"
    )
    with pytest.raises(PolicyLimitError, match="memory limit of 8 MiB"):
        big.evaluate({}, None, ["data.policy.allow"])


def test_panicking_builtin_is_an_error() -> None:
    policy = _core.Policy("package policy\nimport rego.v1\nallow if numbers.range_step(1, 10, 0)\n")
    with pytest.raises(PolicyEvalError):
        policy.evaluate("{}", None, ["data.policy.allow"])


def test_a_slice_gives_none_when_it_runs_out() -> None:
    policy = _core.Policy(SLOW, 2000, 64)
    started = time.monotonic()
    assert policy.evaluate_slice("{}", None, ["data.policy.allow"], 10) is None
    # Without the slice the evaluation would run to its 2000 ms limit.
    assert time.monotonic() - started < 1.0
    quick = _core.Policy(QUICK)
    outcomes = quick.evaluate_slice('{"x": 1}', None, ["data.policy.allow"], 10)
    assert outcomes is not None
    assert [(o.kind, o.json) for o in outcomes] == [("value", "true")]


async def test_slow_evaluation_leaves_the_loop_free_without_offload_threads() -> None:
    # The offload reader is not running here: the slice runs inline, the rest on a trio thread.
    policy = PolicyCache(limits=PolicyLimits(timeout_ms=1500)).compile(SLOW)
    ticks: list[float] = []
    done = trio.Event()

    async def ticker() -> None:
        while not done.is_set():
            ticks.append(time.monotonic())
            await trio.sleep(0.01)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        with pytest.raises(PolicyLimitError, match="time limit of 1500 ms"):
            await policy.evaluate_offloaded({}, None, ["data.policy.allow"])
        done.set()
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert len(ticks) > 20
    # A loop held by the evaluation would show one gap of about 1.5 s; a busy machine adds tens
    # of milliseconds to a free one.
    assert max(gaps) < 0.5, max(gaps)


async def test_quick_evaluation_still_runs_inline() -> None:
    policy = PolicyCache().compile(QUICK)
    (outcome,) = await policy.evaluate_offloaded({"x": 1}, None, ["data.policy.allow"])
    assert outcome.value is True
