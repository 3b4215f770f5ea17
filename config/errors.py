"""The one root of every configuration error, so the CLI stops start-up on one type."""

from __future__ import annotations


class ConfigError(Exception):
    """A setting or a configuration file cannot work; the message names it."""
