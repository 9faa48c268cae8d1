"""Latency histograms (HdrHistogram, microseconds) that travel between processes as bytes."""

from __future__ import annotations

from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 10 * 60 * 1_000_000  # ten minutes: longer than any flow a run waits for
SIGNIFICANT_FIGURES = 3
CDF_POINTS = 200


def new() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


def record(histogram: HdrHistogram, seconds: float) -> None:
    histogram.record_value(min(HIGHEST_US, max(LOWEST_US, round(seconds * 1_000_000))))


def encode(histogram: HdrHistogram) -> bytes:
    return bytes(histogram.encode())


def merge(encoded: list[bytes]) -> HdrHistogram:
    total = new()
    for blob in encoded:
        if blob:
            total.add(HdrHistogram.decode(blob))
    return total


def _ms(us: float) -> float:
    return round(us / 1000, 3)


def summary(histogram: HdrHistogram) -> dict[str, Any]:
    """The `latency_ms` member of the results (zeros when nothing was recorded)."""
    count = histogram.get_total_count()
    if count == 0:
        return {k: 0.0 for k in ("mean", "p50", "p90", "p99", "p99_9", "max")} | {"count": 0}
    return {
        "count": count,
        "mean": _ms(histogram.get_mean_value()),
        "p50": _ms(histogram.get_value_at_percentile(50)),
        "p90": _ms(histogram.get_value_at_percentile(90)),
        "p99": _ms(histogram.get_value_at_percentile(99)),
        "p99_9": _ms(histogram.get_value_at_percentile(99.9)),
        "max": _ms(histogram.get_max_value()),
    }


def cdf(histogram: HdrHistogram) -> list[list[float]]:
    """[[ms, fraction ≤ ms], …] ascending, thinned to at most ~CDF_POINTS points."""
    total = histogram.get_total_count()
    if total == 0:
        return []
    points: list[list[float]] = []
    seen = 0
    for item in histogram.get_recorded_iterator():
        seen += item.count_at_value_iterated_to
        points.append([_ms(item.value_iterated_to), round(seen / total, 6)])
    if len(points) <= CDF_POINTS:
        return points
    step = len(points) / CDF_POINTS
    thinned = [points[int(i * step)] for i in range(CDF_POINTS)]
    return [*thinned, points[-1]]
