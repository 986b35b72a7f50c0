"""Errors a user can cause. The CLI turns each into one line on stderr and exit code 2 (no traceback)."""


class SleeptrainError(Exception):
    """Base class for every error caused by the user's config, data or model folder."""


class ConfigError(SleeptrainError, ValueError):
    """A config key, value or combination of values is not allowed. The message names the key."""


class DataError(SleeptrainError):
    """A data path is missing, empty or malformed. The message names the field or file."""


class PluginError(SleeptrainError):
    """A plugin module (entry point or $SLEEPTRAIN_PLUGINS) could not be imported."""
