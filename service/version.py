"""The service's version: the installed distribution's (pyproject.toml ``version``), stated once."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_version() -> str:
    """The installed ``atnl`` distribution's version; ``0+unknown`` in a source tree never installed."""
    try:
        return version("atnl")
    except PackageNotFoundError:
        return "0+unknown"
