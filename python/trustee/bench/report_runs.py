"""The runs a report compares: each results file read once, its series checked before plotting.

Members the table shows are read leniently (a missing or odd value shows as "—"), since files
from older or newer writers may lack some; the series the plots draw must be well formed, or the
file is refused with a one-line reason.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustee.bench.results import ResultsError, read_results

# A timeline longer than a day of seconds or a CDF of more points than this is not something a
# bench command writes; refusing it keeps a hostile file from making the plot take forever.
MAX_POINTS = 100_000


@dataclass(frozen=True)
class Run:
    path: str
    label: str
    kind: str
    data: dict[str, Any]
    timeline: list[tuple[float, float]]  # (seconds since the window began, ok flows that second)
    cdf: list[tuple[float, float]]  # (latency ms, fraction of ok flows at or below it)


def number(value: object) -> float | None:
    """`value` as a finite number, or None (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def member(data: object, *keys: str) -> object:
    """data[k1][k2]…, or None where a level is missing or not an object."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _timeline_point(entry: object) -> tuple[float, float] | None:
    t, ok = number(member(entry, "t")), number(member(entry, "ok"))
    return None if t is None or ok is None else (t, ok)


def _cdf_point(entry: object) -> tuple[float, float] | None:
    if not isinstance(entry, list) or len(entry) != 2:
        return None
    ms, fraction = number(entry[0]), number(entry[1])
    if ms is None or fraction is None or not 0 <= fraction <= 1:
        return None
    return ms, fraction


SERIES = {
    "timeline": (_timeline_point, "{t, ok} with numbers"),
    "latency_cdf": (_cdf_point, "[ms, fraction in 0..1]"),
}


def _series(path: str, data: dict[str, Any], name: str) -> list[tuple[float, float]]:
    """The points of series `name`: none when the run has none, ResultsError when malformed."""
    value = data.get(name)
    if value is None:
        return []
    point, shape = SERIES[name]
    if not isinstance(value, list) or len(value) > MAX_POINTS:
        raise ResultsError(f"{path}: {name} is not a list of at most {MAX_POINTS} entries")
    points = []
    for i, entry in enumerate(value):
        parsed = point(entry)
        if parsed is None:
            raise ResultsError(f"{path}: {name}[{i}] is not {shape}")
        points.append(parsed)
    return points


def load_run(path: str | os.PathLike[str]) -> Run:
    """The run in `path`; ResultsError naming the file for anything a report cannot use."""
    name = os.fspath(path)
    data = read_results(name)
    label = data.get("label")
    if not isinstance(label, str) or not label.strip():
        label = Path(name).name
    return Run(
        path=name,
        label=label,
        kind=str(data["kind"]),
        data=data,
        timeline=_series(name, data, "timeline"),
        cdf=_series(name, data, "latency_cdf"),
    )
