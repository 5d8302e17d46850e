"""Reproduction of PDD / DEG diversified ensemble training (AAAI 2021)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pdd")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
