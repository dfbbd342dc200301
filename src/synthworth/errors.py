"""Errors a user can act on. The CLI prints their message on one line and exits with code 2."""


class SynthworthError(Exception):
    """Base of every error caused by the user's input (data, config, paths), not by a bug."""


class ConfigError(SynthworthError):
    """A configuration key is unknown, of the wrong type or out of range."""


class DataError(SynthworthError):
    """A data source or a Dataset folder is missing, malformed or incompatible."""
