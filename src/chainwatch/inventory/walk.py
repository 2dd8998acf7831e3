"""The one walker: finds the files each parser wants under the given paths and hands them over."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from chainwatch.inventory import EXTRACTORS, Extractor, InventoryError
from chainwatch.inventory.base import redact, redact_environment
from chainwatch.inventory.node_modules import NodeModulesExtractor
from chainwatch.inventory.npm_lock import IGNORED
from chainwatch.inventory.package_json import LOCKFILES, PackageJsonExtractor
from chainwatch.inventory.sbom import SbomExtractor
from chainwatch.inventory.tree_reader import read_tree
from chainwatch.inventory.workspaces import Workspaces
from chainwatch.model import Environment

SKIP_DIRS = {".git", ".hg", ".svn"}
#: Larger inputs are refused with a per-file error (the biggest real lockfiles are a few MB).
MAX_FILE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class FileError:
    source: str
    message: str


def _read(path: Path) -> bytes:
    if path.stat().st_size > MAX_FILE_BYTES:
        raise InventoryError(f"larger than {MAX_FILE_BYTES} bytes")
    return path.read_bytes()


def _sibling(folder: Path) -> Callable[[str], bytes | None]:
    def read(name: str) -> bytes | None:
        candidate = folder / name
        try:
            if candidate.is_file() and not candidate.is_symlink():
                return _read(candidate)
        except (OSError, InventoryError):
            return None
        return None
    return read


def _sbom_content(path: Path) -> bool:
    """A JSON SBOM by content, whatever its name: ``bomFormat`` or ``spdxVersion`` in its head."""
    try:
        with path.open("rb") as handle:
            head = handle.read(64 * 1024)
    except OSError:
        return False
    return head.lstrip()[:1] == b"{" and (b'"bomFormat"' in head or b'"spdxVersion"' in head)


def _unexpected(exc: BaseException) -> str:
    """One line for an error no parser anticipated (the walk goes on with the next file)."""
    detail = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"cannot parse ({type(exc).__name__}{': ' + detail if detail else ''})"


def _excluded(path: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(Path(path).name, p) for p in patterns)


def walk(paths: Iterable[Path], exclude: Sequence[str] = (),
         extractors: Sequence[Extractor] = EXTRACTORS,
         progress: Callable[[str], None] | None = None) -> Iterator[Environment | FileError]:
    """Environments found under each path (a folder or a single file), and per-file errors,
    with every credential in a spec, URL or error redacted, whichever parser read them."""
    for found in _walk(paths, exclude, extractors, progress):
        if isinstance(found, FileError):
            yield FileError(redact(found.source), redact(found.message))
        else:
            yield redact_environment(found)


def _walk(paths: Iterable[Path], exclude: Sequence[str],
          extractors: Sequence[Extractor],
          progress: Callable[[str], None] | None) -> Iterator[Environment | FileError]:
    from chainwatch.inventory.image import inventory_image, is_image

    for root in paths:
        if root.is_file():
            try:
                image = is_image(root)
                if image:
                    yield from inventory_image(root)
            except InventoryError as exc:
                yield FileError(str(root), str(exc))
                continue
            except Exception as exc:  # any failure is this image's, never the run's
                yield FileError(str(root), _unexpected(exc))
                continue
            if image:
                continue
            if not any(e.wants(PurePosixPath(root.name)) for e in extractors) and _sbom_content(
                    root):
                yield from _one_file(root, root.name, [SbomExtractor()], by_content=True)
                continue
            if not any(e.wants(PurePosixPath(root.name)) for e in extractors):
                # named on the command line and read by nobody: never a silent "nothing found"
                yield FileError(str(root), "not a lockfile, manifest, SBOM or container image "
                                           "that chainwatch reads")
                continue
            yield from _one_file(root, root.name, extractors)
            continue
        if not root.is_dir():
            yield FileError(str(root), "no such file or folder")
            continue
        if root.resolve().name == "node_modules":  # the folder itself: an installed tree
            yield from _tree(root)
            continue
        unreadable: list[OSError] = []
        spaces = Workspaces(root)
        #: workspace roots' manifests (no lockfile), their members' pins folded in at the end
        held: dict[Path, Environment] = {}
        for folder, dirs, files in os.walk(root, followlinks=False, onerror=unreadable.append):
            here = Path(folder)
            rel_folder = here.relative_to(root).as_posix()
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not _excluded(
                f"{rel_folder}/{d}".lstrip("./"), exclude))
            if progress:
                progress(str(here))
            if "node_modules" in dirs and here.name != "node_modules":
                dirs.remove("node_modules")
                if not (here / "node_modules").is_symlink():
                    yield from _tree(here / "node_modules")
            for name in sorted(files):
                rel = f"{rel_folder}/{name}".lstrip("./") if rel_folder != "." else name
                if _excluded(rel, exclude) or (here / name).is_symlink():
                    continue
                if name == "package.json":
                    yield from _manifest(here, list(_one_file(here / name, rel, extractors)),
                                         spaces, held)
                    continue
                yield from _one_file(here / name, rel, extractors)
        yield from held.values()
        for problem in unreadable:
            yield FileError(str(problem.filename or root), f"cannot read: {problem.strerror}")


def _one_file(path: Path, rel: str, extractors: Sequence[Extractor],
              by_content: bool = False) -> Iterator[Environment | FileError]:
    posix = PurePosixPath(rel)
    for extractor in extractors:
        if not by_content and not extractor.wants(posix):
            continue
        try:
            env = extractor.extract(str(path), _read(path), _sibling(path.parent))
        except InventoryError as exc:
            yield FileError(str(path), str(exc))
            continue
        except (OSError, UnicodeError) as exc:
            yield FileError(str(path), f"cannot read: {exc}")
            continue
        except Exception as exc:  # a parser bug or a bomb: this file's error, never the run's
            yield FileError(str(path), _unexpected(exc))
            continue
        if env.packages or not env.errors or env.kind == IGNORED:
            yield env
        break


def _manifest(folder: Path, found: list[Environment | FileError], spaces: Workspaces,
              held: dict[Path, Environment]) -> Iterator[Environment | FileError]:
    """A ``package.json``'s environment, as part of its workspace: a member's belongs to the
    workspace root (dropped when the root has a lockfile, which resolves it; else its pins are
    folded into the root's manifest), and no member's name is ever a registry package."""
    member_of = spaces.containing(folder)
    own = spaces.at(folder)
    internal = (member_of.names if member_of else frozenset()) | (
        own.names if own else frozenset())
    for env in found:
        if isinstance(env, FileError) or env.kind != PackageJsonExtractor.kind or not internal:
            yield env
            continue
        env = replace(env, packages=tuple(p for p in env.packages if p.name not in internal))
        if member_of is not None:
            if any((member_of.root / lock).is_file() for lock in LOCKFILES):
                continue  # the root's lockfile resolved this member's dependencies
            root_env = held.get(member_of.root)
            if root_env is not None:
                seen = {(p.name, p.version) for p in root_env.packages}
                held[member_of.root] = replace(root_env, packages=(
                    *root_env.packages,
                    *(p for p in env.packages if (p.name, p.version) not in seen)))
                continue
            yield env
        elif own is not None:
            held[own.root] = env
        else:
            yield env


def _tree(modules: Path) -> Iterator[Environment | FileError]:
    """One installed node_modules folder (package roots only, links never followed out of
    it); a bound that left part of it unread is also a file error, so the run fails closed."""
    try:
        tree = read_tree(modules)
        project = _sibling(modules.parent)("package.json")
        env = NodeModulesExtractor().extract_tree(str(modules), tree, project)
    except Exception as exc:  # one tree's error, never the run's
        yield FileError(str(modules), _unexpected(exc))
        return
    if env.packages or env.errors or not tree.links:
        yield env  # (a workspace's node_modules of links into the root's store adds nothing)
    for problem in tree.problems:
        yield FileError(str(modules), problem)
