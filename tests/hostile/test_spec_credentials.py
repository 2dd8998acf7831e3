"""Credentials in git and URL specs never reach any output.

Before: only ``scheme://userinfo@`` was redacted, and only by the lockfile graph; scp-like specs
(``tok@host:org/repo``) were shown whole everywhere, and a bare package.json showed its specs
(tokens included) as versions in every format. Now ``specs.redact_credentials`` is the one
function, applied to whatever the inventory walk yields and to remote-dependency reasons; this
test runs every command and format on lockfiles and manifests carrying secrets, and greps
stdout and stderr for them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chainwatch.specs import off_registry, redact_credentials

SECRETS = ("S3CRETsshpass", "S3CRETtokenhttps", "S3CRETscp", "S3CRETsshuser", "S3CRETyarn",
           "S3CRETpnpm", "S3CRETmanifest")


@pytest.mark.parametrize(("spec", "shown"), [
    ("git+ssh://user:S3CRET@host.example/org/r.git#v1", "git+ssh://***@host.example/org/r.git#v1"),
    ("ssh://user:S3CRET@host.example/r", "ssh://***@host.example/r"),
    ("https://S3CRET@host.example/r.tgz", "https://***@host.example/r.tgz"),
    ("git@github.com:org/repo.git", "***@github.com:org/repo.git"),
    ("tok:S3CRET@gitlab.example.com:g/r.git", "***@gitlab.example.com:g/r.git"),
    ("x@git@github.com:org/r", "x@***@github.com:org/r"),
    ("see 'S3CRET@192.0.2.7:org/r'", "see '***@192.0.2.7:org/r'"),
    ("https://h.example/x.tgz?token=S3CRET", "https://h.example/x.tgz?token=***"),
    ("https://h.example/a?x=1&access_token=S3CRET#f", "https://h.example/a?x=1&access_token=***#f"),
    ("git+https://u:p@h.example/x?auth=S3CRET", "git+https://***@h.example/x?auth=***"),
    ("https://b.example/r.tgz?X-Amz-Signature=S3CRET&e=1", "https://b.example/r.tgz?X-Amz-Signature=***&e=1"),
])
def test_each_shape_is_redacted(spec: str, shown: str) -> None:
    assert redact_credentials(spec) == shown


@pytest.mark.parametrize("text", ["debug@4.4.1", "@scope/name@^1.0.0", "a@npm:b@1",
                                  "debug@4.4.1: no such version", "x@registry.npmjs.org:443",
                                  "mail a@b.example: hi", "@types/node@20.1.0"])
def test_package_specs_are_left_alone(text: str) -> None:
    assert redact_credentials(text) == text


def test_remote_dependency_reasons_are_redacted() -> None:
    assert off_registry("git@github.com:org/S3CRET.git") == "***@github.com:org/S3CRET.git"
    where = off_registry("tok:S3CRET@gitlab.example.com:g/r.git") or ""
    assert "S3CRET" not in where and where.startswith("***@")


def _tree(root: Path) -> None:
    lock = root / "lock"
    lock.mkdir()
    (lock / "package-lock.json").write_text(json.dumps({
        "name": "app", "lockfileVersion": 3, "packages": {
            "": {"name": "app", "dependencies": {
                "a": "git+ssh://user:S3CRETsshpass@host.example/org/a.git",
                "b": "https://S3CRETtokenhttps@host.example/b.tgz",
                "c": "S3CRETscp@gitlab.example.com:org/c.git"}},
            "node_modules/a": {"version": "1.0.0",
                               "resolved": "git+ssh://user:S3CRETsshpass@host.example/org/a.git#0"},
            "node_modules/b": {"version": "1.0.0",
                               "resolved": "https://S3CRETtokenhttps@host.example/b.tgz"},
            "node_modules/c": {"version": "1.0.0",
                               "resolved": "git+ssh://S3CRETsshuser@gitlab.example.com/org/c.git"},
            "node_modules/debug": {"version": "4.4.2"}}}))
    yarn = root / "yarn"
    yarn.mkdir()
    (yarn / "yarn.lock").write_text(
        '"e@S3CRETyarn@gitlab.example.com:org/e.git":\n  version "1.0.0"\n'
        '  resolved "git+ssh://S3CRETyarn@gitlab.example.com/org/e.git#abc"\n\n'
        'debug@4.4.2:\n  version "4.4.2"\n')
    pnpm = root / "pnpm"
    pnpm.mkdir()
    (pnpm / "pnpm-lock.yaml").write_text(
        "lockfileVersion: '9.0'\nimporters:\n  .:\n    dependencies:\n      f:\n"
        "        specifier: git+https://S3CRETpnpm@host.example/f.git\n"
        "        version: git+https://S3CRETpnpm@host.example/f.git#abc\n"
        "packages:\n  f@git+https://S3CRETpnpm@host.example/f.git#abc:\n"
        "    resolution: {tarball: https://S3CRETpnpm@host.example/f.tgz}\n")
    manifest = root / "manifest"
    manifest.mkdir()
    (manifest / "package.json").write_text(json.dumps({"name": "m", "dependencies": {
        "g": "S3CRETmanifest@gitlab.example.com:org/g.git",
        "h": "git+ssh://user:S3CRETmanifest@host.example/h.git", "debug": "4.4.2"}}))


def _run(root: Path, *args: str) -> str:
    env = {**os.environ, "XDG_DATA_HOME": str(root / "data"), "XDG_CACHE_HOME": str(root / "c"),
           "CHAINWATCH_DATA_DIR": str(root / "data"), "CHAINWATCH_CACHE_DIR": str(root / "c"),
           "HOME": str(root), "PYTHONPATH": os.pathsep.join(sys.path), "NO_COLOR": "1"}
    done = subprocess.run([sys.executable, "-m", "chainwatch", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout + done.stderr


COMMANDS = [
    ("inventory", "table"), ("inventory", "json"), ("inventory", "cyclonedx"),
    ("exposure", "table"), ("exposure", "json"), ("exposure", "sarif"), ("exposure", "markdown"),
    ("check", "table"), ("check", "json"), ("check", "sarif"), ("check", "github"),
]


@pytest.mark.parametrize(("command", "fmt"), COMMANDS)
def test_no_output_shows_a_secret(tmp_path: Path, command: str, fmt: str) -> None:
    _tree(tmp_path)
    extra = ["--offline", "--no-scan", "--allow-unreadable"] if command == "check" else []
    out = _run(tmp_path, command, "lock", "yarn", "pnpm", "manifest", "--format", fmt, *extra)
    assert "debug" in out or fmt == "table" or command == "check"  # it did read the files
    leaked = [s for s in SECRETS if s in out]
    assert not leaked, out


def test_a_registry_url_with_credentials_is_redacted_in_errors_and_debug_logs(
        tmp_path: Path) -> None:
    """Before: the error line and httpcore's -vv lines quoted the --registry URL whole."""
    from tests.cli_runner import chainwatch, clean_env

    done = chainwatch("scan", "left-pad@1.3.0", "-vv", "--registry",
                      "http://user:S3CRETuser@127.0.0.1:9/?token=S3CRETquery",
                      env=clean_env(tmp_path), cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert "127.0.0.1:9" in done.stderr
    assert "S3CRET" not in done.stdout + done.stderr


@pytest.mark.parametrize("fmt", ["table", "json", "sarif", "github"])
def test_check_against_a_registry_url_with_credentials_never_prints_them(
        tmp_path: Path, fmt: str) -> None:
    """An attacker's review: `check --registry http://user:pass@…` printed the password in
    every decision that quoted the registry's error (table, json, sarif, github)."""
    from tests.cli_runner import chainwatch, clean_env

    (tmp_path / "package.json").write_text('{"name": "p", "dependencies": {"ms": "2.1.3"}}')
    (tmp_path / "package-lock.json").write_text(json.dumps({
        "name": "p", "lockfileVersion": 3, "packages": {
            "": {"name": "p", "dependencies": {"ms": "2.1.3"}},
            "node_modules/ms": {"version": "2.1.3"}}}))
    done = chainwatch("check", str(tmp_path), "--no-scan", "-f", fmt, "--registry",
                      "http://user:S3CRETcheck@127.0.0.1:9/", env=clean_env(tmp_path))
    assert "127.0.0.1:9" in done.stdout + done.stderr
    assert "S3CRET" not in done.stdout + done.stderr
