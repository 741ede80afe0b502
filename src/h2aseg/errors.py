"""Errors that h2aseg reports to users as one line (file or case named, and what to do)."""

from __future__ import annotations


class H2ASegError(Exception):
    """Base class for errors caused by input, not by a bug; the CLI prints them as one line."""


class DataError(H2ASegError):
    """A case or file that cannot be used: missing, unreadable, wrong geometry, NaN, bad labels."""


class ConfigError(H2ASegError):
    """Settings that cannot work together (e.g. a patch the MCSA windows cannot tile)."""
