"""What to watch: names from a file, every package the given environments hold, the top N."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from chainwatch.errors import UsageError
from chainwatch.names import valid_package_name


def top_packages(n: int) -> list[str]:
    text = resources.files("chainwatch.data").joinpath("top-npm.txt").read_text(encoding="utf-8")
    names = [line.strip() for line in text.splitlines() if line.strip()]
    return names[:n]


def read_packages_file(path: Path) -> list[str]:
    """One name per line; ``#`` starts a comment; ``name@version`` is read as the name."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the package list: {exc}") from exc
    names = []
    for i, line in enumerate(text.splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        at = entry.find("@", 1)
        name = entry[:at] if at > 0 else entry
        if not valid_package_name(name):
            raise UsageError(f"{path}:{i}: not an npm package name: {name!r}")
        names.append(name)
    return names


def from_environments(paths: list[Path]) -> list[str]:
    """Every package (direct and transitive) the inventories under ``paths`` hold."""
    from chainwatch.inventory.walk import FileError, walk

    names = {p.name for found in walk(paths) if not isinstance(found, FileError)
             for p in found.packages}
    return sorted(n for n in names if valid_package_name(n))


def build_watchlist(packages_file: Path | None, from_paths: list[Path], top: int) -> list[str]:
    names: list[str] = []
    if packages_file is not None:
        names += read_packages_file(packages_file)
    if from_paths:
        names += from_environments(from_paths)
    if top:
        names += top_packages(top)
    if not names:
        raise UsageError("nothing to watch: give --packages FILE, --from PATH or --top N")
    return list(dict.fromkeys(names))
