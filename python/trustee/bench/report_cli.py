"""`trustee bench report` (being built)."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    sys.stderr.write("trustee bench report: not available in this build\n")
    return 2
