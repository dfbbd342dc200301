"""synthbench: can generated images stand in for real ones?"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("synthbench")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

from synthbench.errors import ConfigError, DataError, SynthbenchError  # noqa: E402

__all__ = ["__version__", "SynthbenchError", "ConfigError", "DataError"]
