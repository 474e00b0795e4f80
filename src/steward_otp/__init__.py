"""steward-otp: command and control over NATS, built as an OTP-style Trio supervision tree.

The public embedding API is re-exported from here.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("steward-otp")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
