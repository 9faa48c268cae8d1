"""Command lines that cannot run, reported as one line: `<command>: <why>`, exit status 2.

argparse prints its whole usage block and exits the interpreter on a bad command line; a
parser here raises UsageError instead, naming the (sub)command the user typed, and the command
reports it the same way as its own checks of the arguments' values."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn, TextIO

EXIT_USAGE = 2


class UsageError(Exception):
    """A command line that cannot run. `command` is the (sub)command a parser knew it as;
    without one, the reporter names its own."""

    def __init__(self, message: str, command: str | None = None) -> None:
        super().__init__(message)
        self.command = command

    def line(self, prog: str) -> str:
        return f"{self.command or prog}: {self}"


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.prog)


def report(exc: UsageError, prog: str, stream: TextIO | None = None) -> int:
    """Print the one line; the exit status for it."""
    (stream or sys.stderr).write(exc.line(prog) + "\n")
    return EXIT_USAGE
