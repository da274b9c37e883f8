"""Configuration: typed values (`schema`) and the YAML loader that validates them (`loader`)."""

from conf.loader import ConfigError, load_config, parse_config
from conf.schema import Address, Config, LimitsConfig, LogConfig, UpstreamConfig

__all__ = [
    "Address",
    "Config",
    "ConfigError",
    "LimitsConfig",
    "LogConfig",
    "UpstreamConfig",
    "load_config",
    "parse_config",
]
