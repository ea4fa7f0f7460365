"""t2: Transformer-Squared as a command-line toolkit (SVF experts, composition, two-pass inference)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("t2cli")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+local"
