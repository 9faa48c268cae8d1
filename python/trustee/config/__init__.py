from trustee.config.errors import ConfigError
from trustee.config.loader import load_embedded_default, load_file, parse
from trustee.config.model import Config

__all__ = ["Config", "ConfigError", "load_embedded_default", "load_file", "parse"]
