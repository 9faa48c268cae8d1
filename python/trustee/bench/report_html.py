"""The report as one self-contained HTML page: inline CSS, the figure as a data URI, no links out,
so it can be mailed or attached to an issue and still show everything."""

from __future__ import annotations

import base64
from html import escape

from trustee.bench.report_plots import colour
from trustee.bench.report_runs import Run
from trustee.bench.report_table import Table, details, warnings_of

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; }
td:first-child, td:nth-child(2) { text-align: left; }
img { max-width: 100%; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dt { font-weight: bold; }
dd { margin: 0; font-family: ui-monospace, monospace; overflow-wrap: anywhere; }
.warning { color: #a04000; }
.swatch { display: inline-block; width: 1em; height: 0.6em; margin-right: 0.4em; }
"""


def _table(table: Table) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in table.rows
    )
    return (
        f"<h2>{escape(table.kind)} runs</h2>\n"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def _run_section(run: Run, colour: str) -> str:
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in details(run))
    warnings = warnings_of(run)
    listed = "".join(f'<li class="warning">{escape(w)}</li>' for w in warnings)
    swatch = f'<span class="swatch" style="background:{escape(colour)}"></span>'
    return (
        f"<section><h3>{swatch}{escape(run.label)}</h3><dl>{rows}</dl>"
        + (f"<p>Warnings:</p><ul>{listed}</ul>" if warnings else "<p>No warnings.</p>")
        + "</section>"
    )


def render_html(runs: list[Run], tables: list[Table], png: bytes, title: str) -> str:
    image = base64.b64encode(png).decode("ascii")
    alt = "ok flows per second over time, and the latency CDF, one line per run"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p>Baseline (“vs first”): {escape(runs[0].label)}.</p>",
        *(_table(t) for t in tables),
        f'<img src="data:image/png;base64,{image}" alt="{escape(alt)}">',
        "<h2>Runs</h2>",
        *(_run_section(run, colour(i)) for i, run in enumerate(runs)),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
