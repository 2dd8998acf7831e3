"""Errors that map to the command-line exit codes of DESIGN.md."""

from __future__ import annotations


class ChainwatchError(Exception):
    """Base class; ``exit_code`` is what the CLI returns for it. Its text never carries a
    credential: URLs it quotes (a registry given as ``https://user:token@host/``) are
    redacted when it is made, so every output that repeats it (check's decisions, SARIF,
    GitHub annotations, logs) is safe."""

    exit_code = 2

    def __init__(self, *args: object) -> None:
        from chainwatch.specs import redact_credentials

        super().__init__(*(redact_credentials(a) if isinstance(a, str) else a for a in args))


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


class RegistryServerError(RegistryError):
    """The registry answered 5xx (after the client's retries): it cannot be asked now."""


class OfflineMissError(RegistryError):
    """``--offline`` and the cache does not hold what was asked for."""


def one_line(exc: BaseException) -> str:
    """An exception's text on one line, without a library's "background" links, and with
    credentials in the URLs it quotes replaced by ``***``."""
    from chainwatch.specs import redact_credentials

    text = redact_credentials(" ".join(str(exc).split()).split(" (Background on this error")[0])
    if len(text) > 500:
        text = text[:499] + "…"
    return text or type(exc).__name__


def describe_failure(exc: BaseException) -> tuple[str, int]:
    """One line and an exit code for an exception no command handled.

    Input we cannot read is exit 2, the network exit 3; anything else is a bug in chainwatch,
    reported as such, and never exit 0 or 1, so a gate that hits one fails closed.
    """
    if isinstance(exc, ChainwatchError):
        return one_line(exc), exc.exit_code
    kind = type(exc).__name__
    module = type(exc).__module__.split(".")[0]
    text = one_line(exc)
    if module in ("httpx", "httpcore", "ssl") or isinstance(exc, (ConnectionError, TimeoutError)):
        return f"network failure: {text}", RegistryError.exit_code
    if module == "sqlalchemy":
        return f"database error: {text}", 2
    if isinstance(exc, ImportError):
        return f"a module chainwatch needs here is not installed ({text}); for a database URL, "\
            "install its driver (PostgreSQL: pip install 'chainwatch[postgres]')", 2
    if isinstance(exc, RecursionError):
        return "input nested too deeply to read", 2
    if isinstance(exc, MemoryError):
        return "input too large to read", 2
    if isinstance(exc, (OSError, UnicodeError)):
        return text, 2
    return (f"internal error ({kind}: {text}); this is a bug in chainwatch, please report it "
            "(CHAINWATCH_DEBUG=1 shows the traceback)", 2)
