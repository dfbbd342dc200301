"""synthworth: can generated images stand in for real ones?"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("synthworth")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

from synthworth.errors import ConfigError, DataError, SynthworthError  # noqa: E402

__all__ = ["__version__", "SynthworthError", "ConfigError", "DataError"]
