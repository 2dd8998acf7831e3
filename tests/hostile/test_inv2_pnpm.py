"""pnpm lockfiles read with each lockfile version's own key grammar (issue 12 A, items 1-3).

Before: every 5.x/6.0 key was cut at its first ``_`` as if a peer suffix began there, so
``/@types/babel__core@7.20.5`` became ``("@types", "babel")`` and ``/string_decoder/1.3.0``
became ``("", "string")``; entries from other registries, tarballs, git and ``file:`` were named
after their key (``example.com/foo``, ``file:..``); a lockfile with no dependencies was exit 2.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chainwatch.inventory.pnpm_lock import PnpmLockExtractor, grammar, split_key
from chainwatch.model import Environment

V5 = """lockfileVersion: 5.4
specifiers:
  '@types/babel__core': 7.20.5
  string_decoder: ^1.3.0
  react-dom: 18.2.0
  react: 18.2.0
  strip-ansi-cjs: npm:strip-ansi@^6.0.1
dependencies:
  '@types/babel__core': 7.20.5
  react: 18.2.0
  react-dom: 18.2.0_react@18.2.0
  string_decoder: 1.3.0
  strip-ansi-cjs: /strip-ansi/6.0.1
  tarred: '@registry.example.invalid/tarred/-/tarred-2.0.0.tgz'
  fromgit: github.com/org/fromgit/0123456789abcdef0123456789abcdef01234567
packages:
  /@types/babel__core/7.20.5:
    resolution: {integrity: sha512-AAAA}
    dependencies:
      string_decoder: 1.3.0
    dev: false
  /react/18.2.0:
    resolution: {integrity: sha512-BBBB}
    dev: false
  /react-dom/18.2.0_react@18.2.0:
    resolution: {integrity: sha512-CCCC}
    peerDependencies:
      react: ^18.2.0
    dependencies:
      react: 18.2.0
    dev: false
  /string_decoder/1.3.0:
    resolution: {integrity: sha512-DDDD}
    dev: false
  /strip-ansi/6.0.1:
    resolution: {integrity: sha512-EEEE}
    dev: false
  '@registry.example.invalid/tarred/-/tarred-2.0.0.tgz':
    resolution: {tarball: https://registry.example.invalid/tarred/-/tarred-2.0.0.tgz}
    name: tarred
    version: 2.0.0
    dev: false
  github.com/org/fromgit/0123456789abcdef0123456789abcdef01234567:
    resolution: {tarball: https://codeload.github.com/org/fromgit/tar.gz/0123456789abcdef}
    name: fromgit
    version: 3.1.0
    dev: false
"""

V6 = """lockfileVersion: '6.0'
dependencies:
  '@types/babel__core':
    specifier: 7.20.5
    version: 7.20.5
  react-dom:
    specifier: 18.2.0
    version: 18.2.0(react@18.2.0)
  react:
    specifier: 18.2.0
    version: 18.2.0
  string_decoder:
    specifier: ^1.3.0
    version: 1.3.0
  strip-ansi-cjs:
    specifier: npm:strip-ansi@^6.0.1
    version: /strip-ansi@6.0.1
  local:
    specifier: file:../local
    version: file:../local
packages:
  /@types/babel__core@7.20.5:
    resolution: {integrity: sha512-AAAA}
    dependencies:
      string_decoder: 1.3.0
    dev: false
  /react@18.2.0:
    resolution: {integrity: sha512-BBBB}
    dev: false
  /react-dom@18.2.0(react@18.2.0):
    resolution: {integrity: sha512-CCCC}
    dependencies:
      react: 18.2.0
    dev: false
  /string_decoder@1.3.0:
    resolution: {integrity: sha512-DDDD}
    dev: false
  /strip-ansi@6.0.1:
    resolution: {integrity: sha512-EEEE}
    dev: false
  file:../local:
    resolution: {directory: ../local, type: directory}
    name: local-pkg
    version: 0.0.1
    dev: false
"""

V9 = """lockfileVersion: '9.0'
importers:
  .:
    dependencies:
      '@types/babel__core':
        specifier: 7.20.5
        version: 7.20.5
      react-dom:
        specifier: 18.2.0
        version: 18.2.0(react@18.2.0)
      string_decoder:
        specifier: ^1.3.0
        version: 1.3.0
      strip-ansi-cjs:
        specifier: npm:strip-ansi@^6.0.1
        version: strip-ansi@6.0.1
      fromgit:
        specifier: github:org/fromgit
        version: https://codeload.github.com/org/fromgit/tar.gz/0123456789abcdef
packages:
  '@types/babel__core@7.20.5':
    resolution: {integrity: sha512-AAAA}
  react@18.2.0:
    resolution: {integrity: sha512-BBBB}
  react-dom@18.2.0:
    resolution: {integrity: sha512-CCCC}
  string_decoder@1.3.0:
    resolution: {integrity: sha512-DDDD}
  strip-ansi@6.0.1:
    resolution: {integrity: sha512-EEEE}
  fromgit@https://codeload.github.com/org/fromgit/tar.gz/0123456789abcdef:
    resolution: {tarball: https://codeload.github.com/org/fromgit/tar.gz/0123456789abcdef}
    version: 3.1.0
snapshots:
  '@types/babel__core@7.20.5':
    dependencies:
      string_decoder: 1.3.0
  react@18.2.0: {}
  react-dom@18.2.0(react@18.2.0):
    dependencies:
      react: 18.2.0
  string_decoder@1.3.0: {}
  strip-ansi@6.0.1: {}
  fromgit@https://codeload.github.com/org/fromgit/tar.gz/0123456789abcdef: {}
"""

COMMON = {("@types/babel__core", "7.20.5"), ("react", "18.2.0"), ("react-dom", "18.2.0"),
          ("string_decoder", "1.3.0"), ("strip-ansi", "6.0.1")}


def _env(text: str) -> Environment:
    return PnpmLockExtractor().extract("pnpm-lock.yaml", text.encode(), lambda name: None)


@pytest.mark.parametrize(("text", "extra"), [
    (V5, {("tarred", "2.0.0"), ("fromgit", "3.1.0")}),
    (V6, {("local-pkg", "0.0.1")}),
    (V9, {("fromgit", "3.1.0")}),
])
def test_each_lockfile_version_keeps_names_with_underscores(text: str, extra: set[tuple[str, str]]
                                                            ) -> None:
    env = _env(text)
    assert {(p.name, p.version) for p in env.packages} == COMMON | extra
    assert env.errors == ()
    # the graph holds too: string_decoder is reached through @types/babel__core
    decoder = next(p for p in env.packages if p.name == "string_decoder")
    assert any(path[-2:] == ("@types/babel__core", "string_decoder") for path in decoder.paths)


@pytest.mark.parametrize(("key", "version", "expected"), [
    ("/@types/babel__core/7.20.5", 5.4, ("@types/babel__core", "7.20.5")),
    ("/string_decoder/1.3.0_react@18.2.0", "5.3", ("string_decoder", "1.3.0")),
    ("/@emotion/react/11.10.5_@babel+core@7.20.5+react@18.2.0", 5.4, ("@emotion/react", "11.10.5")),
    ("/@types/babel__core@7.20.5(react@18.2.0)", "6.0", ("@types/babel__core", "7.20.5")),
    ("/a_b@1.0.0-rc.1(c_d@2.0.0)", "6.1", ("a_b", "1.0.0-rc.1")),
    ("@types/babel__core@7.20.5(react@18.2.0)", "9.0", ("@types/babel__core", "7.20.5")),
    ("example.com/foo/1.0.0", 5.4, None),
    ("github.com/org/repo/0123abc", "6.0", None),
    ("file:..", "9.0", None),
    ("123", "9.0", None),
])
def test_split_key_per_grammar(key: str, version: object, expected: tuple[str, str] | None
                               ) -> None:
    assert split_key(key, grammar(version)) == expected


def test_an_unknown_version_is_told_by_the_shape_of_the_key() -> None:
    assert split_key("/string_decoder/1.3.0", None) == ("string_decoder", "1.3.0")
    assert split_key("/string_decoder@1.3.0", None) == ("string_decoder", "1.3.0")
    assert split_key("string_decoder@1.3.0", None) == ("string_decoder", "1.3.0")


def test_entry_without_name_fields_and_a_host_key_is_an_error_not_a_package() -> None:
    text = V6 + ("  example.com/foo/1.0.0:\n    resolution: {tarball: https://example.invalid/f.tgz}"
                 "\n    dev: false\n")
    env = _env(text)
    assert {(p.name, p.version) for p in env.packages} == COMMON | {("local-pkg", "0.0.1")}
    assert any("example.com/foo/1.0.0" in e for e in env.errors)
    assert all(p.name and "." not in p.name.split("/")[0] for p in env.packages)


@pytest.mark.parametrize("text", [
    "lockfileVersion: '9.0'\n",
    "lockfileVersion: '9.0'\nimporters:\n  .: {}\n",
    "lockfileVersion: '6.0'\n",
    "lockfileVersion: 5.4\nspecifiers: {}\n",
    "lockfileVersion: '9.0'\nsettings:\n  autoInstallPeers: true\nimporters:\n  .: {}\n"
    "packages: {}\nsnapshots: {}\n",
])
def test_a_lockfile_with_no_dependencies_is_an_empty_environment(text: str) -> None:
    env = _env(text)
    assert env.packages == () and env.errors == ()


def test_empty_pnpm_lockfile_exits_0_for_inventory_and_check(tmp_path: Path) -> None:
    (tmp_path / "pnpm-lock.yaml").write_text("lockfileVersion: '9.0'\nimporters:\n  .: {}\n")
    for args in (["inventory", str(tmp_path / "pnpm-lock.yaml")],
                 ["check", str(tmp_path), "--offline", "--no-scan"]):
        r = subprocess.run([sys.executable, "-m", "chainwatch", *args], capture_output=True,
                           text=True, timeout=120, env={"HOME": str(tmp_path), "PATH": "/usr/bin"},
                           check=False)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr


def test_real_vite_lockfile_reads_the_same_and_without_errors() -> None:
    path = Path("/work/shared/corpus/lockfiles/vite.pnpm-lock.yaml")
    if not path.exists():
        pytest.skip("the shared corpus is not here")
    env = _env(path.read_text())
    assert len(env.packages) > 1000 and env.errors == ()
    assert all(p.name and ":" not in p.name and not p.name.startswith(".") for p in env.packages)
