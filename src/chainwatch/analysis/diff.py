"""What changed between a baseline release and the release under analysis."""

from __future__ import annotations

from chainwatch.analysis.detectors import lifecycle_scripts, load_manifest
from chainwatch.model import FileChanges, PackageFiles


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


def _manifest(files: PackageFiles | None) -> dict[str, object]:
    if files is None:
        return {}
    f = files.get("package.json")
    return load_manifest(f.data) if f else {}


def _deps(manifest: dict[str, object]) -> dict[str, str]:
    deps: dict[str, str] = {}
    for key in ("dependencies", "optionalDependencies"):
        value = manifest.get(key)
        if isinstance(value, dict):
            deps.update({str(k): str(v) for k, v in value.items()})
    return deps


def manifest_changes(
    target: PackageFiles, baseline: PackageFiles | None
) -> tuple[dict[str, str], dict[str, str], dict[str, str], dict[str, str]]:
    """(dependencies added, dependencies removed, install scripts added, scripts changed)."""
    now, before = _manifest(target), _manifest(baseline)
    d_now, d_before = _deps(now), _deps(before)
    s_now, s_before = lifecycle_scripts(now), lifecycle_scripts(before)
    return (
        {k: v for k, v in d_now.items() if k not in d_before},
        {k: v for k, v in d_before.items() if k not in d_now},
        {k: v for k, v in s_now.items() if k not in s_before},
        {k: v for k, v in s_now.items() if k in s_before and s_before[k] != v},
    )
