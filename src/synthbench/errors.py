"""Errors a user can act on. The CLI prints their message on one line and exits with code 2."""


class SynthbenchError(Exception):
    """Base of every error caused by the user's input (data, config, paths), not by a bug."""


class ConfigError(SynthbenchError):
    """A configuration key is unknown, of the wrong type or out of range."""


class DataError(SynthbenchError):
    """A data source or a Dataset folder is missing, malformed or incompatible."""
