"""kbs-config.toml → one typed, validated Config.

Names load their module on first use: the section readers next to their packages
(trustee.audit.settings, trustee.collateral.settings) use this package's reader, and the
loader uses them, so importing the package must not start with the loader.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trustee.lazy_names import lazy_names

if TYPE_CHECKING:
    from trustee.config.errors import ConfigError
    from trustee.config.loader import load_embedded_default, load_file, parse
    from trustee.config.model import Config

_MODULES = {
    "Config": "model",
    "ConfigError": "errors",
    "load_embedded_default": "loader",
    "load_file": "loader",
    "parse": "loader",
}

__all__ = ["Config", "ConfigError", "load_embedded_default", "load_file", "parse"]


__getattr__ = lazy_names(__name__, _MODULES)
