"""The side-by-side table of a report: one row per run, one table per kind of run.

The first file given is the baseline: "vs first" is a run's flows/s over the baseline's (kbs;
above 1 is faster) or its µs per call over the baseline's (verify; below 1 is faster). A table
whose kind differs from the baseline's has no ratio to show ("—").
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from trustee.bench.report_runs import Run, member, number

NONE = "—"
TOP_ERROR_CLASSES = 3

KBS_COLUMNS = [
    "label",
    "target",
    "load",
    "flows/s",
    "ok",
    "errors",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "p99.9 ms",
    "max ms",
    "generator cores",
    "server cores / RSS",
    "warnings",
    "vs first",
]
VERIFY_COLUMNS = ["label", "tee", "µs/call ours", "µs/call dcap-qvl", "ours/dcap-qvl", "vs first"]


@dataclass(frozen=True)
class Table:
    kind: str
    columns: list[str]
    rows: list[list[str]]


def _fixed(value: object, digits: int = 2) -> str:
    n = number(value)
    return NONE if n is None else f"{n:,.{digits}f}"


def _count(value: object) -> str:
    n = number(value)
    return NONE if n is None else f"{n:,.0f}"


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or base is None or base == 0:
        return NONE
    return f"{value / base:.2f}×"


def _target(run: Run) -> str:
    url, protocol, tee = (member(run.data, "target", k) for k in ("url", "protocol", "tee"))
    details = ", ".join(str(v) for v in (protocol, tee) if isinstance(v, str) and v)
    where = url if isinstance(url, str) and url else NONE
    return f"{where} ({details})" if details else where


def _load(run: Run) -> str:
    mode = member(run.data, "load", "mode")
    if mode == "closed":
        text = f"closed {_count(member(run.data, 'load', 'clients'))} clients"
    elif mode == "open":
        text = f"open {_fixed(member(run.data, 'load', 'rate'), 0)}/s"
    else:
        return NONE
    procs = number(member(run.data, "load", "procs"))
    return f"{text}, {procs:.0f} procs" if procs is not None and procs > 1 else text


def _errors(run: Run) -> str:
    total = _count(member(run.data, "totals", "errors"))
    classes = member(run.data, "errors")
    if not isinstance(classes, dict):
        return total
    counted = [(c, n) for c, v in classes.items() if (n := number(v)) is not None and n > 0]
    counted.sort(key=lambda item: (-item[1], item[0]))
    top = ", ".join(f"{c}: {n:,.0f}" for c, n in counted[:TOP_ERROR_CLASSES])
    more = ", …" if len(counted) > TOP_ERROR_CLASSES else ""
    return f"{total} ({top}{more})" if top else total


def _server(run: Run) -> str:
    server = member(run.data, "cpu", "server")
    if not isinstance(server, dict):
        return NONE
    cores, rss = number(server.get("cores")), number(server.get("rss_mib_max"))
    parts = [f"{cores:.2f}" if cores is not None else NONE]
    parts.append(f"{rss:,.0f} MiB" if rss is not None else NONE)
    return " / ".join(parts)


def warnings_of(run: Run) -> list[str]:
    warnings = run.data.get("warnings")
    return [w for w in warnings if isinstance(w, str)] if isinstance(warnings, list) else []


def _kbs_row(run: Run, baseline: Run) -> list[str]:
    latency = [
        _fixed(member(run.data, "latency_ms", p)) for p in ("p50", "p90", "p99", "p99_9", "max")
    ]
    return [
        run.label,
        _target(run),
        _load(run),
        _fixed(member(run.data, "totals", "flows_per_s"), 1),
        _count(member(run.data, "totals", "ok")),
        _errors(run),
        *latency,
        _fixed(member(run.data, "cpu", "generator", "cores")),
        _server(run),
        str(len(warnings_of(run))),
        _ratio(
            number(member(run.data, "totals", "flows_per_s")),
            number(member(baseline.data, "totals", "flows_per_s")),
        ),
    ]


def _verify_row(run: Run, baseline: Run) -> list[str]:
    ours = number(member(run.data, "per_call_us", "ours"))
    return [
        run.label,
        str(member(run.data, "target", "tee") or NONE),
        _fixed(ours, 1),
        _fixed(member(run.data, "per_call_us", "dcap_qvl"), 1),
        # Computed, not read from the file's `ratio`: the column's direction is then certain.
        _ratio(ours, number(member(run.data, "per_call_us", "dcap_qvl"))).rstrip("×"),
        _ratio(ours, number(member(baseline.data, "per_call_us", "ours"))),
    ]


def tables(runs: list[Run]) -> list[Table]:
    """One table per kind present, kbs first, rows in the order the files were given."""
    baseline = runs[0]
    out = []
    for kind, columns in (("kbs", KBS_COLUMNS), ("verify", VERIFY_COLUMNS)):
        same = [run for run in runs if run.kind == kind]
        if not same:
            continue
        row = _kbs_row if kind == "kbs" else _verify_row
        rows = [row(run, baseline) for run in same]
        if baseline.kind != kind:
            rows = [[*r[:-1], NONE] for r in rows]
        out.append(Table(kind, list(columns), rows))
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(table: Table) -> str:
    lines = ["| " + " | ".join(_cell(c) for c in table.columns) + " |"]
    lines.append("|" + "---|" * len(table.columns))
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def _machine(run: Run) -> str:
    machine = run.data.get("machine")
    if not isinstance(machine, dict):
        return NONE
    cpus, memory = number(machine.get("cpus")), number(machine.get("memory_bytes"))
    parts = [
        machine.get("hostname"),
        f"{cpus:.0f} CPUs" if cpus is not None else None,
        machine.get("cpu_model"),
        f"{memory / 2**30:.1f} GiB" if memory is not None else None,
        machine.get("os"),
        f"Python {machine['python']}" if machine.get("python") else None,
    ]
    return ", ".join(str(p) for p in parts if p) or NONE


def _seconds(value: object) -> str:
    n = number(value)
    return NONE if n is None else f"{n:,.0f} s"


def _versions(run: Run) -> str:
    versions = run.data.get("versions")
    if not isinstance(versions, dict) or not versions:
        return NONE
    return ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))


def _command(run: Run) -> str:
    command = run.data.get("command")
    if isinstance(command, list) and all(isinstance(w, str) for w in command):
        return shlex.join(command)
    return NONE


def details(run: Run) -> list[tuple[str, str]]:
    """What a reader needs to reproduce or discount a run: when, where, with what, how."""
    return [
        ("file", run.path),
        ("started", str(run.data.get("started") or NONE)),
        ("duration", _seconds(run.data.get("duration_s"))),
        ("machine", _machine(run)),
        ("versions", _versions(run)),
        ("command", _command(run)),
    ]
