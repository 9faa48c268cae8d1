"""Configuration errors name the file and the key so an operator can fix them in one go."""

from __future__ import annotations


class ConfigError(Exception):
    def __init__(self, key: str, message: str, source: str | None = None) -> None:
        self.key = key
        self.message = message
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {message}" if key else f"{where}{message}")

    def with_source(self, source: str | None) -> ConfigError:
        """This error, naming `source` as the file unless it names one already."""
        if self.source is not None or source is None:
            return self
        return ConfigError(self.key, self.message, source)
