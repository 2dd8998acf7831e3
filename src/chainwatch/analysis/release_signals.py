"""Signals about a release as a whole, beyond single files: what npm now runs that it did not.

Pure functions of (files, manifest, baseline, findings): a brand-new install script that runs a
package file, behaviour injected into an entry file (it runs on ``require``/``import``), the
commands a binding.gyp makes node-gyp run, and dependencies added but never imported.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence

from chainwatch.analysis import jsast
from chainwatch.analysis.gyp import MAX_GYP_INCLUDES, gyp_named_files, parse_gyp
from chainwatch.manifest import Manifest
from chainwatch.model import Finding, PackageFile, PackageFiles, Severity

#: The hooks npm runs on `npm install` of a dependency.
RUN_ON_INSTALL = ("preinstall", "install", "postinstall")
_TOKEN = re.compile(r"[^\s;&|<>()'\"`]+")
_BEHAVIOUR = {"obfuscation", "secrets", "wallet", "fingerprint", "exfil", "browser-hook",
              "dropper", "propagation", "persistence", "sabotage", "hidden-process",
              "remote-exec"}
#: behaviour (capabilities) that counts as a payload in entry code
BEHAVIOUR = frozenset(_BEHAVIOUR)
#: behaviour that makes new code in a patch release's entry file critical (entry_payload)
_HIJACK = {"browser-hook", "remote-exec"}


def gyp_install_commands(files: PackageFiles) -> dict[str, str]:
    """{label: command} that node-gyp runs at install: only when npm would run node-gyp, i.e.
    a root binding.gyp and no install or preinstall script of the package's own."""
    gyp = files.get("binding.gyp")
    scripts = files.manifest.lifecycle_scripts
    if gyp is None or any(h in scripts for h in ("install", "preinstall")):
        return {}
    out: dict[str, str] = {}
    queue, seen = ["binding.gyp"], {"binding.gyp"}
    while queue and len(seen) <= MAX_GYP_INCLUDES + 1:
        path = queue.pop(0)
        current = gyp if path == "binding.gyp" else files.get(path)
        if current is None:
            continue
        data = current.data
        out.update({f"{path} {c.kind} {n + 1}": c.command
                    for n, c in enumerate(parse_gyp(data)) if not c.routine})
        includes, modules = gyp_named_files(data)
        base = posixpath.dirname(path)
        for name in includes:
            inc = posixpath.normpath(posixpath.join(base, name))
            if not inc.startswith("..") and inc not in seen and files.get(inc) is not None:
                seen.add(inc)
                queue.append(inc)
        for module in modules:
            mod = posixpath.normpath(posixpath.join(base, module))
            if not mod.startswith(".."):
                out[f"{path} pymod_do_main {mod}"] = f"python3 {mod}"
    return out


def _local_file(command: str, known: set[str]) -> str | None:
    for token in _TOKEN.findall(command):
        path = posixpath.normpath(token.removeprefix("./"))
        for candidate in (path, f"{path}.js"):
            if candidate in known and candidate != "package.json":
                return candidate
    return None


def new_install_script(manifest: Manifest, files: Sequence[PackageFile],
                       earlier_scripts: Iterable[Mapping[str, str]],
                       gyp_now: Mapping[str, str] | None = None,
                       gyp_before: bool = False) -> list[Finding]:
    """An install hook running a package file, in a package whose earlier versions had none.

    ``earlier_scripts`` are the scripts of every earlier version known (the baseline, or the
    whole packument history): if any of them ran something at install, this is not new. The
    commands a binding.gyp makes node-gyp run count as install hooks too (``gyp_now``; did the
    baseline have any: ``gyp_before``).
    """
    if gyp_before or any(h in s for s in earlier_scripts for h in RUN_ON_INSTALL):
        return []
    known = {f.path for f in files}
    out: list[Finding] = []
    for label, command in (gyp_now or {}).items():
        out.append(Finding(
            rule="CW-DIFF-NEW-INSTALL-SCRIPT", severity=Severity.MEDIUM,
            technique="install-time-execution", capability="install-script",
            message=(f"binding.gyp is new and makes node-gyp run `{command[:120]}` at install; "
                     "no earlier version ran anything at install"),
            file="binding.gyp", snippet=f"{label}: {command[:200]}",
            reference="https://gyp.gsrc.io/docs/InputFormatReference.md#Command-Expansions"))
        break
    for hook in RUN_ON_INSTALL:
        script = manifest.lifecycle_scripts.get(hook)
        if script is None:
            continue
        target = _local_file(script, known)
        if target is None:
            continue
        out.append(Finding(
            rule="CW-DIFF-NEW-INSTALL-SCRIPT", severity=Severity.MEDIUM,
            technique="install-time-execution", capability="install-script",
            message=(f"{hook} script `{script[:120]}` is new: no earlier version ran anything at "
                     f"install, and this one runs the package file {target}"),
            file="package.json", snippet=f"{hook}: {script[:200]}",
            reference="https://docs.npmjs.com/cli/using-npm/scripts#life-cycle-scripts"))
    return out


def entry_payload(findings: Sequence[Finding], changed: Iterable[str], entries: set[str],
                  bump: str) -> list[Finding]:
    """Behaviour new in an entry file (main, module, exports, browser) of a patch or minor
    release: code that runs on ``require``/``import`` with no install script at all."""
    if bump not in ("patch", "minor", "prerelease"):
        return []
    out: list[Finding] = []
    for path in sorted(set(changed) & entries):
        evidence = [f for f in findings if f.file == path and not f.preexisting
                    and f.capability in _BEHAVIOUR and f.severity.rank >= Severity.MEDIUM.rank]
        if not evidence:
            continue
        top = max(evidence, key=lambda f: f.severity.rank)
        rules = ", ".join(sorted({f.rule for f in evidence}))
        # a page or wallet API hooked, or a download run, in a patch's entry file: the
        # September 2025 chalk/debug attack itself, never a bug fix
        hijack = bump in ("patch", "prerelease") and any(
            f.capability in _HIJACK and f.severity.rank >= Severity.HIGH.rank for f in evidence)
        out.append(Finding(
            rule="CW-DIFF-ENTRY-PAYLOAD", severity=Severity.CRITICAL if hijack else Severity.HIGH,
            technique="code-injection",
            capability="load-time",
            message=(f"new behaviour in the entry file {path} of a {bump} release runs as soon "
                     f"as the package is required or imported ({rules})"),
            file=path, line=top.line, snippet=top.snippet,
            reference="https://www.aikido.dev/blog/npm-debug-and-chalk-packages-compromised"))
    return out


_TEXT_EXT = (".js", ".cjs", ".mjs", ".jsx", ".ts", ".cts", ".mts", ".tsx", ".json", ".d.ts",
             ".vue", ".svelte", ".sh", ".gyp")


#: JS/TS files up to this size have their comments removed before a dependency counts as named
COMMENT_STRIP_LIMIT = 2 * 1024 * 1024


def _without_comments(file: PackageFile) -> bytes:
    """A JS/TS file's text without its comments (tree-sitter): `// uses helper-x` names no
    dependency. Other files, and larger ones, as they are."""
    low = file.path.lower()
    if not low.endswith((*jsast.JS_EXT, *jsast.TS_EXT, *jsast.TSX_EXT)) or low.endswith(
            (".d.ts", ".d.mts", ".d.cts")) or len(file.data) > COMMENT_STRIP_LIMIT:
        return file.data
    kind = jsast.language_kind(file.path)
    query = jsast.compile_query(kind, "(comment) @c")
    if query is None:
        return file.data
    tree = jsast.parse(file.data, kind)
    comments = jsast.captures(query, tree.root_node).get("c", [])
    parts: list[bytes] = []
    last = 0
    for node in sorted(comments, key=lambda n: n.start_byte):
        if node.start_byte >= last:
            parts.append(file.data[last:node.start_byte])
            last = node.end_byte
    parts.append(file.data[last:])
    return b" ".join(parts)


def unused_dependencies(added: Mapping[str, str], files: PackageFiles) -> list[str]:
    """Added dependencies whose name no code file, script or config names at all."""
    if not added:
        return []
    corpus: list[bytes] = [_without_comments(f) for f in files.files
                           if f.path != "package.json" and f.path.lower().endswith(_TEXT_EXT)]
    manifest = files.manifest.raw
    for key in ("scripts", "bin", "peerDependencies", "exports", "browser"):
        value = manifest.get(key)
        if value:
            corpus.append(repr(value).encode())
    unused: list[str] = []
    for dep in sorted(added):
        needle = dep.encode()
        if not any(needle in blob for blob in corpus):
            unused.append(dep)
    return unused


def phantom_dependency(dep: str, version: str, has_install_script: bool) -> Finding:
    return Finding(
        rule="CW-DEP-PHANTOM", severity=Severity.MEDIUM if has_install_script else Severity.LOW,
        technique="phantom-dependency", capability="new-dependency",
        message=(f"new dependency {dep}@{version} is never imported or used by this package"
                 + (", and it runs an install script" if has_install_script else "")),
        file="package.json",
        reference="https://attack.mitre.org/techniques/T1195/002/")
