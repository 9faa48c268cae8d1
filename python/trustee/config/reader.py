"""Typed access to a parsed TOML table that reports the full dotted key on every error."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from trustee.config.errors import ConfigError

T = TypeVar("T")

_TYPE_NAMES = {bool: "a boolean", int: "an integer", str: "a string", float: "a number"}


class Table:
    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(path, f"expected a table, got {type(data).__name__}")
        self.data: dict[str, Any] = data
        self.path = path

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, message: str) -> ConfigError:
        """A ConfigError naming this table's key `name`, for checks beyond a value's type."""
        return ConfigError(self.key(name), message)

    def has(self, name: str) -> bool:
        return name in self.data

    def get(self, name: str, kind: type[T], default: T) -> T:
        if name not in self.data:
            return default
        return self.req(name, kind)

    def opt(self, name: str, kind: type[T]) -> T | None:
        if name not in self.data or self.data[name] is None:
            return None
        return self.req(name, kind)

    def req(self, name: str, kind: type[T]) -> T:
        if name not in self.data:
            raise ConfigError(self.key(name), "missing required key")
        value = self.data[name]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)  # type: ignore[return-value]
        if not ok:
            raise ConfigError(
                self.key(name), f"expected {_TYPE_NAMES.get(kind, kind.__name__)}, got {value!r}"
            )
        return value  # type: ignore[no-any-return]

    def str_list(self, name: str, default: list[str] | None = None) -> list[str]:
        if name not in self.data:
            return list(default or [])
        value = self.data[name]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(self.key(name), f"expected a list of strings, got {value!r}")
        return list(value)

    def table(self, name: str) -> Table | None:
        if name not in self.data:
            return None
        return Table(self.data[name], self.key(name))

    def tables(self, name: str) -> list[Table]:
        value = self.data.get(name, [])
        if not isinstance(value, list):
            raise ConfigError(self.key(name), "expected an array of tables")
        return [Table(v, f"{self.key(name)}[{i}]") for i, v in enumerate(value)]

    def deny_unknown(self, allowed: Iterable[str]) -> None:
        extra = sorted(set(self.data) - set(allowed))
        if extra:
            raise ConfigError(self.key(extra[0]), "unknown key")

    def choice(self, name: str, choices: Mapping[str, T], default: str | None = None) -> T:
        """A string enum; keys of `choices` are compared case-insensitively, `_`/`-` ignored."""
        raw = self.get(name, str, default) if default is not None else self.req(name, str)
        norm = raw.replace("_", "").replace("-", "").lower()
        for label, value in choices.items():
            if label.replace("_", "").replace("-", "").lower() == norm:
                return value
        raise ConfigError(
            self.key(name), f"unknown value {raw!r}; expected one of {', '.join(choices)}"
        )
