"""What changed between a baseline release and the release under analysis."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from chainwatch.manifest import NO_MANIFEST, Manifest
from chainwatch.model import FileChanges, Finding, PackageFiles, Severity


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


def entry_points(manifest: Manifest) -> set[str]:
    """Files a consumer loads: main, module, browser, bin and exports targets."""
    found: set[str] = set()

    def add(value: object) -> None:
        if isinstance(value, str):
            path = value.removeprefix("./")
            found.update({path, f"{path}.js", f"{path}/index.js"})
        elif isinstance(value, dict):
            for inner in value.values():
                add(inner)
        elif isinstance(value, list):
            for inner in value:
                add(inner)

    for key in ("main", "module", "browser", "bin", "exports"):
        add(manifest.raw.get(key))
    if not found:
        found.add("index.js")
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
