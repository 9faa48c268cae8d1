"""The report as GitHub Markdown: the tables, then how each run was made."""

from __future__ import annotations

from trustee.bench.report_runs import Run
from trustee.bench.report_table import Table, details, markdown_table, warnings_of


def _run_section(run: Run) -> list[str]:
    lines = [f"### {run.label}", ""]
    for key, value in details(run):
        shown = f"`{value}`" if key in ("command", "file") and "`" not in value else value
        lines.append(f"- {key}: {shown}")
    lines += [f"- warning: {w}" for w in warnings_of(run)]
    return [*lines, ""]


def render_markdown(runs: list[Run], tables: list[Table], title: str) -> str:
    lines = [f"# {title}", "", f"Baseline (“vs first”): {runs[0].label}.", ""]
    for table in tables:
        lines += [f"## {table.kind} runs", "", markdown_table(table), ""]
    lines += ["## Runs", ""]
    for run in runs:
        lines += _run_section(run)
    return "\n".join(lines).rstrip("\n") + "\n"
