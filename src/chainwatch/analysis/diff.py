"""What changed between a baseline release and the release under analysis."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Collection, Iterable, Sequence

from chainwatch.manifest import NO_MANIFEST, Manifest
from chainwatch.model import FileChanges, Finding, PackageFile, PackageFiles, Severity


def file_changes(target: PackageFiles, baseline: PackageFiles | None) -> FileChanges:
    now = {f.path: f.sha256 for f in target.files}
    if baseline is None:
        return FileChanges(added=tuple(sorted(now)))
    before = {f.path: f.sha256 for f in baseline.files}
    return FileChanges(
        added=tuple(sorted(p for p in now if p not in before)),
        changed=tuple(sorted(p for p in now if p in before and before[p] != now[p])),
        removed=tuple(sorted(p for p in before if p not in now)),
        unchanged=sum(1 for p in now if before.get(p) == now[p]),
    )


def manifest_changes(
    target: PackageFiles, baseline: PackageFiles | None
) -> tuple[dict[str, str], dict[str, str], dict[str, str], dict[str, str]]:
    """(dependencies added, dependencies removed, install scripts added, scripts changed)."""
    now = target.manifest
    before = baseline.manifest if baseline is not None else NO_MANIFEST
    d_now, d_before = now.runtime_dependencies, before.runtime_dependencies
    s_now, s_before = now.lifecycle_scripts, before.lifecycle_scripts
    return (
        {k: v for k, v in d_now.items() if k not in d_before},
        {k: v for k, v in d_before.items() if k not in d_now},
        {k: v for k, v in s_now.items() if k not in s_before},
        {k: v for k, v in s_now.items() if k in s_before and s_before[k] != v},
    )


#: what Node tries after a main/bin path: the file, its extensions, then a folder's index
_RESOLVE = ("", ".js", ".json", ".node", "/index.js", "/index.json", "/index.node")
_ROOT_INDEX = ("index.js", "index.json", "index.node")


def _entry_base(value: str) -> str | None:
    """A manifest path as Node reads it in the package folder (posix normpath; a backslash is
    a separator on Windows, so it counts as one); None when it leaves the package."""
    path = posixpath.normpath(value.replace("\\", "/").strip())
    if path in (".", ""):
        return ""
    if path.startswith(("../", "/")) or path == "..":
        return None
    return path


def entry_points(manifest: Manifest, paths: Collection[str] | None = None) -> set[str]:
    """Files a consumer loads: main, module, browser, bin and exports targets, resolved as Node
    resolves them (``lib/./index.js``, ``x/../lib``, ``lib//index.js``, ``./lib/`` → lib/index.js;
    extensions .js/.json/.node; a folder's index). With the package's ``paths``, a target whose
    case differs (case-insensitive file systems) counts too, and a ``main`` that resolves to no
    file falls back to the root index.js, as Node does."""
    found: set[str] = set()
    main_hits: list[bool] = []
    by_lower: dict[str, list[str]] = {}
    for p in paths or ():
        by_lower.setdefault(p.lower(), []).append(p)

    def add(value: object, is_main: bool = False) -> None:
        if isinstance(value, str):
            # import() reads main as a URL: "lib/index.js?x" loads lib/index.js
            bases = {_entry_base(v) for v in (value, re.split(r"[?#]", value, maxsplit=1)[0])}
            candidates = [f"{base}{ext}".lstrip("/") for base in bases if base is not None
                          for ext in _RESOLVE]
            found.update(c for c in candidates if c)
            hits = [real for c in candidates for real in by_lower.get(c.lower(), ())]
            found.update(hits)
            if is_main:
                main_hits.append(bool(hits))
        elif isinstance(value, dict):
            for key, inner in value.items():
                add(inner)
                if key.startswith(("./", ".")) and key not in (".",) and isinstance(inner, (str, dict)):
                    add(key)  # the "browser" map's keys name files that are replaced
        elif isinstance(value, list):
            for inner in value:
                add(inner)

    add(manifest.raw.get("main"), is_main=True)
    for key in ("module", "browser", "bin", "exports"):
        add(manifest.raw.get(key))
    if not found or (paths is not None and main_hits and not any(main_hits)):
        found.update(_ROOT_INDEX)
    return found


def injected_concealment(
    target: Sequence[Finding], before: Sequence[Finding], changed: Iterable[str],
    entries: set[str], install_time: set[str], bump: str,
) -> list[Finding]:
    """Strong obfuscation new in a file that existed, clean, in the baseline: injected code.

    The September 2025 clipper was obfuscator.io output appended to the entry file of a patch
    release. Obfuscation present in both versions is a packaging choice; obfuscation that appears
    in an existing clean file of a patch or minor release is not.
    """
    def strong(f: Finding) -> bool:
        return f.capability == "obfuscation" and f.severity.rank >= Severity.HIGH.rank

    was_concealed = {f.file for f in before if strong(f)}
    out: list[Finding] = []
    for path in sorted(set(changed)):
        if path in was_concealed:
            continue
        evidence = [f for f in target if f.file == path and strong(f)]
        if not evidence:
            continue
        key = path in entries or path in install_time
        critical = key and bump in ("patch", "minor", "prerelease")
        where = "the package's entry file" if path in entries else (
            "a file run at install" if path in install_time else "an existing file")
        out.append(Finding(
            rule="CW-DIFF-INJECTED-OBFUSCATION",
            severity=Severity.CRITICAL if critical else Severity.HIGH,
            technique="code-injection", capability="obfuscation",
            message=(f"obfuscated code appeared in {where} in a {bump} release; the previous "
                     f"version of this file had none ({', '.join(sorted({f.rule for f in evidence}))})"),
            file=path, line=evidence[0].line, snippet=evidence[0].snippet,
            reference="https://www.aikido.dev/blog/npm-debug-and-chalk-packages-compromised"))
    return out


#: a relative module a file loads: require("./x"), import … from "./x", import("./x"),
#: export … from "./x"
_LOADS = re.compile(
    rb"""(?:\brequire\s*\(\s*|\bimport\s*\(\s*|\bfrom\s+|\bimport\s+)['"`](\.{1,2}/[^'"`\r\n]{0,300}|\.{1,2})['"`]""")
#: files whose loads are followed from the entry points (a bound, not a budget users meet)
MAX_REACH = 5000
_CODE = (".js", ".cjs", ".mjs", ".jsx", ".ts", ".cts", ".mts", ".tsx")


def reachable_entries(manifest: Manifest, files: Sequence[PackageFile]) -> set[str]:
    """The entry points (``entry_points``) and every package file they load by a relative
    require or import, transitively (bounded): the code that runs on require/import."""
    by_path = {f.path: f for f in files}
    start = {p for p in entry_points(manifest, list(by_path)) if p in by_path}
    seen = set(start)
    queue = sorted(start)
    while queue and len(seen) < MAX_REACH:
        path = queue.pop()
        file = by_path[path]
        if not path.lower().endswith(_CODE):
            continue
        base = posixpath.dirname(path)
        for m in _LOADS.finditer(file.data):
            name = m.group(1).decode("utf-8", "replace").split("?")[0]
            target = posixpath.normpath(posixpath.join(base, name))
            if target.startswith(".."):
                continue
            for ext in (*_RESOLVE, ".cjs", ".mjs", ".ts"):
                candidate = f"{target}{ext}".lstrip("/")
                if candidate in by_path:
                    if candidate not in seen:
                        seen.add(candidate)
                        queue.append(candidate)
                    break
    return seen
