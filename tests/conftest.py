"""Shared test configuration."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import pytest
from _pytest.outcomes import OutcomeException

ROOT = Path(__file__).resolve().parent.parent
E2E = Path(__file__).resolve().parent / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every test under tests/e2e starts real processes: `-m "not e2e"` runs the rest alone.
    for item in items:
        if item.path.is_relative_to(E2E):
            item.add_marker(pytest.mark.e2e)


def _single_outcome(error: BaseException) -> OutcomeException | None:
    """The one skip/xfail/fail inside the exception groups trio wraps it in, if it is alone."""
    leaves: list[BaseException] = []
    queue = [error]
    while queue:
        current = queue.pop()
        if isinstance(current, BaseExceptionGroup):
            queue.extend(current.exceptions)
        else:
            leaves.append(current)
    if len(leaves) == 1 and isinstance(leaves[0], OutcomeException):
        return leaves[0]
    return None


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    # pytest-trio re-raises a skip or xfail from inside trio.run without its message (a bare
    # `pytest.skip()` whose context is the group); raise the original so the reason is reported.
    try:
        return (yield)
    except OutcomeException as outcome:
        context = outcome.__context__
        if isinstance(context, BaseExceptionGroup):
            original = _single_outcome(context)
            if original is not None:
                raise original from None
        raise
    except BaseExceptionGroup as group:
        original = _single_outcome(group)
        if original is not None:
            raise original from None
        raise
