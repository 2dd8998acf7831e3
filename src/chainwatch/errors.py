"""Errors that map to the command-line exit codes of DESIGN.md."""

from __future__ import annotations


class ChainwatchError(Exception):
    """Base class; ``exit_code`` is what the CLI returns for it."""

    exit_code = 2


class UsageError(ChainwatchError):
    """Bad usage or unreadable input (exit 2)."""

    exit_code = 2


class NotFoundError(UsageError):
    """No such package or version in the registry (exit 2)."""


class UnsafeArchiveError(UsageError):
    """A tarball that cannot be read within the safety limits (exit 2)."""


class RegistryError(ChainwatchError):
    """The registry or the network failed (exit 3)."""

    exit_code = 3


class OfflineMissError(RegistryError):
    """``--offline`` and the cache does not hold what was asked for."""
