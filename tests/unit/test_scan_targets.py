"""scan targets: dist-tags and ranges resolved as npm does, known-bad versions the registry no
longer serves, and malformed names (issue 12 C). A fake registry transport, recorded packuments."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from chainwatch.errors import NotFoundError, RegistryError, UsageError
from chainwatch.model import Level
from chainwatch.names import name_problem, split_spec
from chainwatch.packument import pick_version
from chainwatch.registry import NpmConfig, RegistryClient
from chainwatch.scan import Scanner
from tests.helpers import FIXTURES, make_tgz, manifest

TARGETS = FIXTURES / "packuments" / "targets"
EXPECTED = json.loads((TARGETS / "expected.json").read_text())
REG = "https://registry.test.invalid/"


def recorded(name: str) -> dict[str, Any]:
    return json.loads((TARGETS / name).read_text())


def ours(doc: dict[str, Any], spec: str) -> str:
    try:
        return pick_version(doc, spec).version
    except (NotFoundError, UsageError):
        return "ERR"


def cases() -> list[tuple[str, str, str]]:
    return [(file, spec, answer) for file, answers in sorted(EXPECTED["answers"].items())
            for spec, answer in sorted(answers.items())]


@pytest.mark.parametrize(("file", "spec", "npm"), cases())
def test_resolution_matches_npm_pick_manifest(file: str, spec: str, npm: str) -> None:
    """Differential, against npm-pick-manifest's answers recorded on the same packuments."""
    got = ours(recorded(file), spec)
    assert got == ("ERR" if npm.startswith("ERR") else npm), (file, spec)


def _npm_root() -> Path | None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        return None
    root = Path(subprocess.run(["npm", "root", "-g"], capture_output=True, text=True,
                               check=False, timeout=60).stdout.strip())
    return root if (root / "npm" / "node_modules" / "npm-pick-manifest").is_dir() else None


EXTRA_SPECS = ["^0", "~4.17", "<=1.0.0", ">1.0.0 <4.0.0-0", "1 - 3", "^4.x", "4.x.x", "*.*",
               ">=2.0.0-beta.0", "2.0.0-beta.1 - 2.0.0-rc.2", "~2.0.0-rc.1", "^0.0.1",
               "legacy", "<0.0.1-0", "=v2.0.0-rc.2"]


def test_resolution_matches_live_npm_pick_manifest() -> None:
    """The same, asking npm's own resolver now (more specs than were recorded)."""
    root = _npm_root()
    if root is None:
        pytest.skip("node/npm with npm-pick-manifest not installed")
    oracle = Path(__file__).with_name("npm_pick_oracle.js")
    specs = [*EXPECTED["specs"], *EXTRA_SPECS]
    wrong = []
    for path in sorted(TARGETS.glob("*.json")):
        if path.name == "expected.json":
            continue
        done = subprocess.run(["node", str(oracle), str(root), str(path), *specs],
                              capture_output=True, text=True, check=True, timeout=120)
        doc = recorded(path.name)
        for spec, npm in json.loads(done.stdout).items():
            want = "ERR" if npm.startswith("ERR") else npm
            if ours(doc, spec) != want:
                wrong.append((path.name, spec, npm, ours(doc, spec)))
    assert wrong == []


def test_latest_preferred_when_it_satisfies_else_highest() -> None:
    doc = recorded("tagged-demo.json")
    assert pick_version(doc, "^1").version == "1.4.0"  # latest, though 1.10.0 is higher
    picked = pick_version(doc, ">=1.5")
    assert picked.version == "4.0.0"  # 5.1.0 and 3.1.0 are deprecated; "" is not
    assert "latest is 1.4.0" in picked.how
    assert pick_version(doc, "^5").version == "5.1.0"  # all deprecated: the highest


def test_prereleases_only_when_the_range_asks() -> None:
    doc = recorded("tagged-demo.json")
    with pytest.raises(NotFoundError, match="satisfies"):
        pick_version(doc, "^2")
    assert pick_version(doc, "^2.0.0-rc.1").version == "2.0.0-rc.2"
    assert pick_version(doc, "next").version == "2.0.0-rc.2"


def test_hostile_dist_tags_fail_closed() -> None:
    doc = recorded("tagged-demo.json")
    with pytest.raises(NotFoundError, match="does not serve"):
        pick_version(doc, "gone")  # a tag pointing at nothing
    with pytest.raises(NotFoundError, match="no dist-tag 'weird'"):
        pick_version(doc, "weird")  # a tag whose value is not a string
    with pytest.raises(UsageError, match="not a version, range or dist-tag"):
        pick_version(doc, "npm:evil@1")
    with pytest.raises(UsageError):
        pick_version(doc, "1" * 300)  # longer than node-semver accepts
    assert pick_version({"name": "x", "dist-tags": [], "versions": {"1.0.0": {}}}, "*").version \
        == "1.0.0"


@pytest.mark.parametrize(("name", "why"), [
    ("@", "scoped"), ("@scope", "scoped"), ("@scope/", "scoped"), ("@/x", "scoped"),
    ("", "empty"), (".hidden", "period"), ("_under", "underscore"), (" pad", "spaces"),
    ("a b", "URL-safe"), ("node_modules", "reserved"), ("x" * 215, "longer"),
    ("a/b/c", "URL-safe"), ("@a/b/c", "scoped"), ("caf\u00e9", "URL-safe"), ("x\x1b[2J", "URL-safe"),
])
def test_invalid_names_say_why(name: str, why: str) -> None:
    problem = name_problem(name)
    assert problem is not None and why in problem


@pytest.mark.parametrize("name", ["express", "@babel/core", "JSONStream", "lodash.merge", "a~b",
                                  "@types/babel__core"])
def test_valid_names_pass(name: str) -> None:
    assert name_problem(name) is None


def test_spec_splits_at_the_first_at_after_the_start() -> None:
    assert split_spec("@scope/name@^1.2") == ("@scope/name", "^1.2")
    assert split_spec("lodash@4") == ("lodash", "4")
    assert split_spec("alias@npm:real@1") == ("alias", "npm:real@1")
    assert split_spec("express") == ("express", None)


# -- the scanner, against a fake registry ------------------------------------------------------

def _sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


class Registry:
    """Packuments with real tarballs; records every URL asked for."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.blobs: dict[str, bytes] = {}
        self.seen: list[str] = []

    def publish(self, name: str, versions: list[str], tags: dict[str, str]) -> None:
        doc = self.docs.setdefault(name, {"name": name, "dist-tags": {}, "versions": {},
                                          "time": {}})
        for v in versions:
            blob = make_tgz({"package.json": manifest(name, v), "index.js": f"module.exports='{v}';\n"})
            url = f"{REG}{name}/-/{name.rsplit('/', 1)[-1]}-{v}.tgz"
            self.blobs[url] = blob
            doc["versions"][v] = {"name": name, "version": v,
                                  "dist": {"tarball": url, "integrity": _sri(blob)}}
        doc["dist-tags"].update(tags)

    def handler(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        self.seen.append(url)
        if url in self.blobs:
            return httpx.Response(200, content=self.blobs[url])
        name = request.url.raw_path.decode()[1:].replace("%2f", "/").replace("%2F", "/")
        if name in self.docs:
            return httpx.Response(200, json=self.docs[name])
        return httpx.Response(404, json={"error": "not found"})


def scanner(tmp_path: Path, registry: Registry,
            notice: Callable[[str], None] | None = None) -> Scanner:
    client = RegistryClient(NpmConfig(registry=REG), tmp_path, backoff=0.0,
                            transport=httpx.MockTransport(registry.handler))
    return Scanner(client, workers=1, notice=notice)


@pytest.mark.parametrize(("spec", "version", "baseline"), [
    ("demo@latest", "4.2.0", "4.1.0"), ("demo@^3", "3.9.0", "3.1.0"), ("demo@3", "3.9.0", "3.1.0"),
    ("demo@next", "5.0.0-rc.1", "4.2.0"), ("demo", "4.2.0", "4.1.0"), ("demo@*", "4.2.0", "4.1.0"),
    ("@scope/demo@^1.2", "1.3.0", "1.2.0"),
])
def test_range_and_tag_targets_resolve_and_diff_against_the_previous(
        tmp_path: Path, spec: str, version: str, baseline: str) -> None:
    reg = Registry()
    reg.publish("demo", ["3.1.0", "3.9.0", "4.1.0", "4.2.0", "5.0.0-rc.1"],
                {"latest": "4.2.0", "next": "5.0.0-rc.1"})
    reg.publish("@scope/demo", ["1.1.0", "1.2.0", "1.3.0"], {"latest": "1.3.0"})
    notes: list[str] = []
    with scanner(tmp_path, reg, notes.append) as s:
        verdict = s.scan(spec)
    assert str(verdict.target) == f"{split_spec(spec)[0]}@{version}"
    assert verdict.baseline is not None and verdict.baseline.version == baseline
    if "@" in spec[1:]:
        assert len(notes) == 1 and f"@{version}" in notes[0] and spec in notes[0]


def test_exact_versions_say_nothing(tmp_path: Path) -> None:
    reg = Registry()
    reg.publish("demo", ["1.0.0", "1.0.1"], {"latest": "1.0.1"})
    notes: list[str] = []
    with scanner(tmp_path, reg, notes.append) as s:
        assert s.scan("demo@1.0.1").target.version == "1.0.1"
    assert notes == []


@pytest.mark.parametrize(("name", "version", "served"), [
    ("debug", "4.4.2", ["4.4.1", "4.4.3"]), ("chalk", "5.6.1", ["5.6.0", "5.6.2"]),
    ("event-stream", "3.3.6", ["3.3.5", "4.0.0"]), ("colors", "1.4.1", ["1.4.0"]),
])
def test_known_bad_version_no_longer_served_is_malicious(
        tmp_path: Path, name: str, version: str, served: list[str]) -> None:
    reg = Registry()
    reg.publish(name, served, {"latest": served[-1]})
    with scanner(tmp_path, reg) as s:
        verdict = s.scan(f"{name}@{version}")
    assert verdict.level is Level.MALICIOUS
    rules = {f.rule for f in verdict.findings}
    assert {"CW-KNOWN-BAD", "CW-TARBALL-GONE"} <= rules
    gone = next(f for f in verdict.findings if f.rule == "CW-TARBALL-GONE")
    assert "tarball is gone" in gone.message
    assert not any(u.endswith(".tgz") for u in reg.seen)  # nothing fetched for it
    assert verdict.baseline is None


def test_known_bad_package_removed_entirely_is_malicious(tmp_path: Path) -> None:
    reg = Registry()  # flatmap-stream: the whole package is gone (404)
    with scanner(tmp_path, reg) as s:
        verdict = s.scan("flatmap-stream@0.1.1")
    assert verdict.level is Level.MALICIOUS


def test_unlisted_missing_version_is_still_no_such_version(tmp_path: Path) -> None:
    reg = Registry()
    reg.publish("debug", ["4.4.1"], {"latest": "4.4.1"})
    with scanner(tmp_path, reg) as s, pytest.raises(NotFoundError, match="no such version"):
        s.scan("debug@4.4.9")


def test_a_range_never_reaches_a_removed_version(tmp_path: Path) -> None:
    reg = Registry()
    reg.publish("debug", ["4.4.1", "4.4.3"], {"latest": "4.4.1"})
    with scanner(tmp_path, reg) as s:
        verdict = s.scan("debug@~4.4.2")
    assert verdict.target.version == "4.4.3"


@pytest.mark.parametrize("spec", ["@", "@scope", "@@", "_x@1.0.0", "a b@1", "@scope/@1"])
def test_malformed_names_never_reach_the_registry(tmp_path: Path, spec: str) -> None:
    reg = Registry()
    with scanner(tmp_path, reg) as s, pytest.raises(UsageError, match="invalid package name"):
        s.scan(spec)
    assert reg.seen == []


def test_known_bad_version_out_of_reach_is_still_malicious(tmp_path: Path) -> None:
    """Fail closed: with the registry down, a listed version is judged by the list."""
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = RegistryClient(NpmConfig(registry=REG), tmp_path, backoff=0.0, retries=0,
                            transport=httpx.MockTransport(down))
    with Scanner(client, workers=1) as s:
        verdict = s.scan("chalk@5.6.1")
        assert verdict.level is Level.MALICIOUS
        assert any(f.rule == "CW-TARBALL-GONE" and "could not be fetched" in f.message
                   for f in verdict.findings)
        with pytest.raises(RegistryError):
            s.scan("chalk@5.6.2")  # not listed: the outage is an error, not a verdict


def test_a_range_over_a_huge_version_list_fails_closed_quickly() -> None:
    import time

    from chainwatch import packument

    many = {f"{a}.{b}.0": {} for a in range(300) for b in range(200)}  # 60,000 versions
    doc = {"name": "big", "dist-tags": {"latest": "1.0.0"}, "versions": many}
    started = time.perf_counter()
    with pytest.raises(UsageError, match="more than"):
        pick_version(doc, ">=999")
    assert time.perf_counter() - started < 1.0
    assert len(many) > packument.MAX_RANGE_VERSIONS
    assert pick_version(doc, "latest").version == "1.0.0"  # a tag needs no range test
    assert pick_version(doc, None).version == "1.0.0"  # nor a bare name whose latest serves
    assert pick_version(doc, "299.199.0").version == "299.199.0"


@pytest.mark.parametrize("spec", [
    "github:chalk/chalk", "https://x.example.invalid/a.tgz", "git+https://host.invalid/c.git",
    "npm:chalk@5", "git@host.invalid:org/repo.git", "git+ssh://user:s3cret@host.invalid/x.git",
    "file:../elsewhere"])
def test_specs_npm_fetches_elsewhere_are_refused_as_such_without_their_secrets(
        tmp_path: Path, spec: str) -> None:
    """A git, URL, alias or file spec is refused for what it is (not "no such file"), with any
    credential in it redacted, and nothing is asked of a registry."""
    from tests.cli_runner import chainwatch, clean_env

    done = chainwatch("scan", spec, "--offline", "--no-remember", "-f", "json",
                      env=clean_env(tmp_path))
    assert done.returncode == 2, done.stderr
    assert "aliases, git, file and URL specs are not resolved by scan" in done.stderr
    assert "no such file" not in done.stderr
    assert "s3cret" not in done.stderr + done.stdout
