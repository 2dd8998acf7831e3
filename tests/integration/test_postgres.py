"""The known-bad store and fleet memory on a real PostgreSQL server, started by the test.

A throwaway cluster (initdb) in a private temporary folder, listening on 127.0.0.1 only, is
started for the module and stopped afterwards. Skipped when PostgreSQL's server programs or the
psycopg driver are not installed (.ci/run installs both).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chainwatch.fleet import Fleet
from chainwatch.intel.store import KnownBadStore, parse_osv
from chainwatch.model import Environment, InstalledPackage
from tests.helpers import missing_part


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb refuses to run as root: run the server programs as the postgres user then."""
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            missing_part("running as root without runuser")
        return [runuser, "-u", "postgres", "--", *cmd]
    return cmd


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    pytest.importorskip("psycopg")
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if not initdb or not pg_ctl:
        missing_part("PostgreSQL server programs not installed")
    tmp = Path(tempfile.mkdtemp(prefix="chainwatch-pg-"))
    data = tmp / "data"
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(_as_postgres([initdb, "-D", str(data), "-U", "postgres", "--auth=trust"]),
                   check=True, capture_output=True, timeout=120)
    subprocess.run(_as_postgres([pg_ctl, "-D", str(data), "-l", str(tmp / "log"), "-w", "-o",
                                 f"-c listen_addresses=127.0.0.1 -c port={port} "
                                 f"-c unix_socket_directories={tmp}", "start"]),
                   check=True, capture_output=True, timeout=120)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True, timeout=60, check=False)
        time.sleep(0.2)
        shutil.rmtree(tmp, ignore_errors=True)


def test_known_bad_store_on_postgres(postgres_url: str) -> None:
    store = KnownBadStore(postgres_url)
    record = parse_osv({"id": "MAL-2099-9", "summary": "bad", "affected": [
        {"package": {"ecosystem": "npm", "name": "@evil/pkg"},
         "ranges": [{"type": "SEMVER", "events": [{"introduced": "1.0.0"}, {"fixed": "1.2.0"}]}]}]},
        "osv")
    assert record is not None
    store.import_records([record])
    before = store.count()
    store.import_records([record])  # re-import replaces
    assert store.count() == before
    assert [a.id for a in store.lookup("@evil/pkg", "1.1.9")] == ["MAL-2099-9"]
    assert store.lookup("@evil/pkg", "1.2.0") == []


def test_fleet_memory_on_postgres(postgres_url: str) -> None:
    fleet = Fleet(postgres_url)
    env = Environment("svc/package-lock.json", "package-lock", "svc/package-lock.json",
                      (InstalledPackage("chalk", "5.6.1", paths=(("svc", "chalk"),)),))
    fleet.record("svc@abc", [env])
    assert [s.label for s in fleet.query("chalk@^5.6.0")] == ["svc@abc"]
