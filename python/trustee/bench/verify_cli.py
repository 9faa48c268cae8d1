"""`trustee bench verify` (being built)."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    sys.stderr.write("trustee bench verify: not available in this build\n")
    return 2
