"""A workspace made by the real ``npm install`` (offline: its only dependency is a member):
the member's name is never sent to the registry and the members' manifests add no
environments of their own."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx

from chainwatch.gate.check import Checker
from chainwatch.gate.environments import merge_projects
from chainwatch.gate.policy import Policy
from chainwatch.intel import BuiltinKnownBad
from chainwatch.inventory.walk import walk
from chainwatch.model import Environment
from chainwatch.registry import NpmConfig, RegistryClient
from tests.helpers import missing_part


def test_npm_workspace_member_is_never_looked_up(tmp_path: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        missing_part("npm not installed")
    root = tmp_path / "ws"
    for folder, doc in (("", {"name": "root", "private": True, "workspaces": ["packages/*"]}),
                        ("packages/a", {"name": "a", "version": "1.0.0"}),
                        ("packages/b", {"name": "b", "version": "1.0.0",
                                        "dependencies": {"a": "1.0.0"}})):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / "package.json").write_text(json.dumps(doc))
    subprocess.run([npm, "install", "--offline", "--ignore-scripts", "--no-audit", "--no-fund",
                    "--cache", str(tmp_path / "npm-cache")], cwd=root, check=True,
                   capture_output=True, timeout=120)
    envs = [e for e in walk([root]) if isinstance(e, Environment)]
    assert not [e for e in envs if e.source.endswith("packages/b/package.json")]
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return httpx.Response(404, json={})

    client = RegistryClient(NpmConfig(registry="https://registry.test.invalid/"),
                            tmp_path / "cache", backoff=0, transport=httpx.MockTransport(answer))
    placed = Checker(Policy(), client, BuiltinKnownBad()).check(merge_projects(envs))
    assert asked == [] and placed == []
