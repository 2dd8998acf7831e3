"""npm-shrinkwrap.json beside package-lock.json: npm installs from the shrinkwrap only (issue 12 A 6).

Before: both were read, so a package-lock.json an attacker left next to a shrinkwrap (or a stale
one) reported packages npm never installs, and hid nothing it does: two environments, one of
them fiction. Now the package-lock.json is reported as ignored and contributes no package.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from chainwatch.inventory.walk import FileError, walk
from chainwatch.model import Environment


def _lock(name: str, version: str) -> str:
    return json.dumps({"name": "app", "lockfileVersion": 3, "packages": {
        "": {"name": "app", "dependencies": {name: version}},
        f"node_modules/{name}": {"version": version,
                                 "resolved": f"https://registry.example.invalid/{name}.tgz"}}})


def _project(tmp_path: Path) -> Path:
    (tmp_path / "package-lock.json").write_text(_lock("debug", "4.4.2"))
    (tmp_path / "npm-shrinkwrap.json").write_text(_lock("ms", "2.1.3"))
    return tmp_path


def test_only_the_shrinkwrap_is_inventoried(tmp_path: Path) -> None:
    found = list(walk([_project(tmp_path)]))
    envs = [e for e in found if isinstance(e, Environment)]
    assert not [e for e in found if isinstance(e, FileError)]
    packages = {(p.name, p.version) for e in envs for p in e.packages}
    assert packages == {("ms", "2.1.3")}
    ignored = [e for e in envs if e.kind == "ignored"]
    assert [Path(e.source).name for e in ignored] == ["package-lock.json"]
    assert "npm-shrinkwrap.json" in ignored[0].errors[0]


def test_a_package_lock_alone_is_still_read(tmp_path: Path) -> None:
    (tmp_path / "package-lock.json").write_text(_lock("debug", "4.3.4"))
    envs = [e for e in walk([tmp_path]) if isinstance(e, Environment)]
    assert [(p.name, p.version) for e in envs for p in e.packages] == [("debug", "4.3.4")]


def test_the_package_lock_named_on_the_command_line_is_ignored_too(tmp_path: Path) -> None:
    root = _project(tmp_path)
    r = subprocess.run([sys.executable, "-m", "chainwatch", "inventory",
                        str(root / "package-lock.json"), "--format", "json"],
                       capture_output=True, text=True, timeout=120,
                       env={"HOME": str(tmp_path), "PATH": "/usr/bin"}, check=False)
    assert r.returncode == 0 and "Traceback" not in r.stderr
    doc = json.loads(r.stdout)
    assert [e["kind"] for e in doc["environments"]] == ["ignored"]
    assert doc["environments"][0]["packages"] == []
