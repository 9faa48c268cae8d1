"""`trustee bench kbs` (being built)."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    sys.stderr.write("trustee bench kbs: not available in this build\n")
    return 2
