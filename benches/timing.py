"""Timing helper shared by the micro-benchmarks (imported from the scripts' own directory)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def per_call_us(fn: Callable[[], object], iterations: int, rounds: int) -> float:
    """Median over `rounds` of the mean time of one call, in µs, after a warm-up."""
    for _ in range(max(5, iterations // 10)):
        fn()
    means = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        means.append((time.perf_counter() - start) / iterations * 1e6)
    return statistics.median(means)
