"""`trustee bench kbs|verify|report`: each subcommand owns its command line and its module."""

from __future__ import annotations

import sys
from collections.abc import Callable

PROG = "trustee bench"
USAGE = f"""usage: {PROG} {{kbs,verify,report}} ...

  kbs      load a KBS with full guest flows (closed or open loop) and check every answer
  verify   offline verification rate of the native core (dcap-qvl beside it when installed)
  report   side-by-side table and plots of result files (.html, .md or .png)

`{PROG} COMMAND --help` says more."""


def _command(name: str) -> Callable[[list[str]], int] | None:
    # Imported on use: `trustee bench report` needs matplotlib, not the load generator.
    if name == "kbs":
        from trustee.bench.kbs_cli import main

        return main
    if name == "verify":
        from trustee.bench.verify_cli import main

        return main
    if name == "report":
        from trustee.bench.report_cli import main

        return main
    return None


def bench_main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command = _command(argv[0])
    if command is None:
        sys.stderr.write(f"{PROG}: unknown command {argv[0]!r} (kbs, verify or report)\n")
        return 2
    return command(argv[1:])
