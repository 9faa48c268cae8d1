"""`trustee audit verify FILE [FILE ...]`: check the hash chain of a JSON Lines audit log,
or of a rotated one given oldest file first (`audit.jsonl.2 audit.jsonl.1 audit.jsonl`).

Exit codes: 0 the chain is intact (the event count on stdout), 1 the chain is broken (the first
broken line and why on stdout), 2 usage errors (no such file, not an audit log at all).
"""

from __future__ import annotations

import argparse
import sys

from trustee.audit.chain import GENESIS, verify_lines
from trustee.usage import OneLineParser, UsageError, report

EXIT_OK = 0
EXIT_BROKEN = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="trustee audit", description="Audit log tools.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    verify = sub.add_parser(
        "verify",
        help="check the hash chain of a JSON Lines audit log",
        description=(
            "Check that every line's prevhash is the SHA-256 of the line before it (exit 0), "
            "or report the first line where the chain breaks (exit 1)."
        ),
    )
    verify.add_argument(
        "files",
        metavar="FILE",
        nargs="+",
        help="the log; for a rotated log, its files oldest first (each continues the last)",
    )
    verify.add_argument(
        "--start",
        metavar="HEX",
        default=GENESIS,
        help="prevhash the first line must carry, for a log that continues another "
        "(default: 64 zeros)",
    )
    return parser


def _verify(paths: list[str], start: str) -> int:
    if len(start) != 64 or any(c not in "0123456789abcdef" for c in start):
        print(f"trustee audit verify: --start {start!r} is not 64 lowercase hex", file=sys.stderr)
        return EXIT_USAGE
    expected = start
    total = 0
    for index, path in enumerate(paths):
        try:
            with open(path, "rb") as handle:
                report = verify_lines(handle, start=expected)
        except OSError as exc:
            print(
                f"trustee audit verify: cannot read {path}: {exc.strerror or exc}",
                file=sys.stderr,
            )
            return EXIT_USAGE
        if report.first_break is not None and report.records_seen == 0:
            print(
                f"trustee audit verify: {path} is not a JSON Lines audit log "
                f"(line {report.first_break.line}: {report.first_break.reason})",
                file=sys.stderr,
            )
            return EXIT_USAGE
        if report.first_break is not None:
            broken = report.first_break
            hint = ""
            if broken.line == 1 and index == 0 and start == GENESIS:
                hint = (
                    " (a file of a rotated log continues the one before it: give the older "
                    "files first, or --start)"
                )
            elif broken.line == 1:
                hint = f" (it does not continue {paths[index - 1]})" if index else ""
            print(f"{path}: chain broken at line {broken.line}: {broken.reason}{hint}")
            return EXIT_BROKEN
        total += report.lines
        expected = report.last_digest
    which = paths[0] if len(paths) == 1 else f"{len(paths)} files ({paths[0]} … {paths[-1]})"
    print(f"{which}: chain intact, {total} event(s)")
    return EXIT_OK


def audit_main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except UsageError as exc:
        return report(exc, "trustee audit")
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    if args.command == "verify":
        return _verify(args.files, args.start)
    return EXIT_USAGE
