"""`trustee bench report A.json [B.json …] --out report.html|.md|.png [--title T]`.

Compares runs side by side: the first file is the baseline. The output's extension picks the
format: .md (the table and how each run was made), .png (the figure), .html (all of it on one
self-contained page).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trustee.bench.report_runs import Run, load_run
from trustee.bench.results import ResultsError
from trustee.usage import OneLineParser, UsageError

PROG = "trustee bench report"
FORMATS = (".html", ".md", ".png")
DEFAULT_TITLE = "trustee bench report"


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG,
        description="Side-by-side table and plots of trustee bench results files.",
    )
    parser.add_argument("files", nargs="*", metavar="RESULTS.json", help="first one = baseline")
    parser.add_argument("--out", required=True, help="report.html, report.md or report.png")
    parser.add_argument("--title", default=DEFAULT_TITLE)
    return parser


def render(runs: list[Run], suffix: str, title: str) -> bytes:
    """The report in the format `suffix` names (one of FORMATS)."""
    from trustee.bench.report_table import tables

    if suffix == ".md":
        from trustee.bench.report_markdown import render_markdown

        return render_markdown(runs, tables(runs), title).encode()
    from trustee.bench.report_plots import render_png

    png = render_png(runs, title)
    if suffix == ".png":
        return png
    from trustee.bench.report_html import render_html

    return render_html(runs, tables(runs), png, title).encode()


def _run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if not args.files:
        raise UsageError("no results file given")
    out = Path(args.out)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"--out {args.out}: the extension must be one of {', '.join(FORMATS)}")
    runs = [load_run(path) for path in args.files]
    content = render(runs, suffix, args.title)
    try:
        out.write_bytes(content)
    except OSError as exc:
        sys.stderr.write(f"{PROG}: {out}: cannot write ({exc.strerror or exc})\n")
        return 1
    print(f"{out}: {len(runs)} runs, baseline {runs[0].label}")
    return 0


def main(argv: list[str]) -> int:
    try:
        return _run(argv)
    except (UsageError, ResultsError) as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 2
