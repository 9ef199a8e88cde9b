"""Domain exceptions. Every user-facing error is one line naming the field, the value and the fix."""


class AirtuneError(Exception):
    """Base class of every error airtune raises on purpose (the CLI prints it on one line, exit 2)."""


class ConfigError(AirtuneError):
    """A configuration value is invalid (names the field, the value and the fix)."""


class DataError(AirtuneError):
    """Data could not be found or parsed (names the file, the line and the fix)."""


class RegistryError(AirtuneError):
    """An unknown name was looked up in a registry (lists the available names)."""


class ResumeError(AirtuneError):
    """A run directory cannot be resumed (missing checkpoint, different config)."""
