"""The installed version of pairsim, from the package metadata (``pyproject.toml`` is its one source)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pairsim")
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"
