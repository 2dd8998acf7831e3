"""What a Dask worker runs: one target in, its verdict (or a failure record) out.

Only plain, picklable data crosses to a worker: the target spec, the baseline spec, the
registry configuration the client resolved, a database URL *string* (never a connection),
rule folders, the packument of ``--packument``. Each worker process builds one ``Scanner``
per distinct set of options and keeps it (rules compiled once, per-file result cache, the
registry client's connection pool), so a worker that scans a thousand releases pays for the
rules once.

A ``ChainwatchError`` (no such version, an unreadable tarball, the registry failing) is the
target's answer, not a fault of the worker: it comes back as a ``Failed`` record at once,
without a retry. Any other exception leaves the task, so Dask retries it (``retries=`` on
the submit) and, when it still fails, the client reports it as a failed target.
"""

from __future__ import annotations

import os
import pickle
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainwatch.errors import ChainwatchError, UsageError, describe_failure
from chainwatch.output.jsonout import Failed
from chainwatch.specs import redact_credentials

if TYPE_CHECKING:
    from chainwatch.intel.base import KnownBadSource
    from chainwatch.model import Verdict
    from chainwatch.registry import NpmConfig
    from chainwatch.scan import Scanner

#: Scanners kept per worker process (one per distinct option set; the oldest is closed).
MAX_SCANNERS = 4


@dataclass(frozen=True)
class ScanOptions:
    """What every task of a run shares. ``db`` is the URL of the known-bad store the client
    would read (``None``: the built-in list only); a worker opens it itself, read only."""

    config: NpmConfig
    cache_dir: str | None = None
    offline: bool = False
    db: str | None = None
    rule_dirs: tuple[str, ...] = ()
    sandbox: bool = False


@dataclass(frozen=True)
class TaskResult:
    """A task's answer: the verdict or the failure, and the notes a local run would have
    printed on stderr while scanning (which version a range resolved to, …)."""

    outcome: Verdict | Failed
    notices: tuple[str, ...] = ()


_lock = threading.Lock()
_scanners: dict[bytes, Scanner] = {}
_notices = threading.local()


def _known_bad(db: str | None) -> KnownBadSource:
    from chainwatch.intel import BuiltinKnownBad

    if db is None:
        return BuiltinKnownBad()
    from sqlalchemy.engine import make_url

    from chainwatch.intel.store import CombinedKnownBad, KnownBadStore

    parsed = make_url(db)
    if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(
            parsed.database).is_file():
        # an empty database made here would silently drop the client's known-bad records:
        # the target fails instead (fail closed)
        raise UsageError(f"the known-bad database {redact_credentials(db)} is not reachable "
                         f"from the Dask worker on {os.uname().nodename}; share it (PostgreSQL) "
                         "or run the workers where the file is")
    return CombinedKnownBad(KnownBadStore(db), BuiltinKnownBad())


def _scanner(options: ScanOptions) -> Scanner:
    from chainwatch.analysis.rules import load_rules
    from chainwatch.registry import RegistryClient
    from chainwatch.scan import Scanner

    key = pickle.dumps(options)
    with _lock:
        scanner = _scanners.get(key)
        if scanner is None:
            client = RegistryClient(options.config,
                                    Path(options.cache_dir) if options.cache_dir else None,
                                    offline=options.offline)
            # one thread per worker process: the cluster's workers are the parallelism, so a
            # scanner never starts a process pool of its own inside a worker
            scanner = Scanner(client, load_rules([Path(d) for d in options.rule_dirs]),
                              workers=1, known_bad=_known_bad(options.db),
                              sandbox=options.sandbox, notice=_notice)
            while len(_scanners) >= MAX_SCANNERS:
                old = _scanners.pop(next(iter(_scanners)))
                old.close()
                if old.client is not None:
                    old.client.close()
            _scanners[key] = scanner
        return scanner


def _notice(message: str) -> None:
    said: list[str] | None = getattr(_notices, "said", None)
    if said is not None and len(said) < 20:
        said.append(message)


def scan_target(spec: str, against: str | None, options: ScanOptions,
                packument: dict[str, Any] | None = None) -> TaskResult:
    """Scan one target on this worker. Pure in what matters: the same arguments give the
    same verdict as ``Scanner.scan`` in the client would."""
    _notices.said = []
    try:
        try:
            scanner = _scanner(options)
            verdict = scanner.scan(spec, against, packument)
        except ChainwatchError as exc:  # the target's own answer: not retried
            message, code = describe_failure(exc)
            return TaskResult(Failed(redact_credentials(spec), message, code),
                              tuple(_notices.said))
        return TaskResult(verdict, tuple(_notices.said))
    finally:
        _notices.said = None
