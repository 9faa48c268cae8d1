"""Keep hypercorn's asyncio server out of a trio process.

Quart imports ``hypercorn.asyncio.serve`` when it is imported, for ``Quart.run_task``; QuartTrio
replaces that method with hypercorn's trio server, so a trio process never calls it, yet would
load the asyncio server (and ``multiprocessing.synchronize``) at every start. Importing this
module first puts a stand-in under that name: its ``serve``, or any other attribute, loads the
real module and hands over to it, so whatever does use the asyncio server still gets it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

NAME = "hypercorn.asyncio"


class _StandIn(types.ModuleType):
    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            # Tools that walk sys.modules (inspect, pickle) ask every module for dunders.
            raise AttributeError(attr)
        return getattr(_real(), attr)


def _real() -> types.ModuleType:
    module = sys.modules.get(NAME)
    if isinstance(module, _StandIn):
        del sys.modules[NAME]
        module = importlib.import_module(NAME)
    assert module is not None
    return module


def serve(*args: Any, **kwargs: Any) -> Any:
    """What ``Quart.run_task`` calls: hypercorn's asyncio ``serve``, loaded now."""
    return _real().serve(*args, **kwargs)


def install() -> None:
    if NAME in sys.modules:
        return
    spec = importlib.util.find_spec(NAME)
    if spec is None:
        return
    stand_in = _StandIn(NAME, __doc__)
    # The package's own spec and path: submodules (`hypercorn.asyncio.run`) still import, and
    # `from hypercorn.asyncio import serve` finds `serve` here without asking for more.
    stand_in.__spec__ = spec
    stand_in.__path__ = list(spec.submodule_search_locations or [])
    stand_in.serve = serve  # type: ignore[attr-defined]
    sys.modules[NAME] = stand_in


install()
