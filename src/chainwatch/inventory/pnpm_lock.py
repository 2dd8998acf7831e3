"""pnpm-lock.yaml: lockfile 5.x, 6.0 and 9.0 (importers, packages, snapshots), multi-document."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from chainwatch.inventory import safe_yaml
from chainwatch.inventory.base import InventoryError, Sibling, mapping, text, valid_name
from chainwatch.inventory.graph import Graph, Node
from chainwatch.model import Environment


def strip_peers(key: str) -> str:
    """``a@1.0.0(b@2)(c@3)`` → ``a@1.0.0``: what ``re.sub(r"\\(.*\\)$", "", key)`` gives, in
    linear time (that regex is quadratic on a key of many ``(``: 20,000 took 0.4 s, and a key
    is stripped several times)."""
    body, newline = (key[:-1], "\n") if key.endswith("\n") else (key, "")
    if not body.endswith(")"):
        return key
    start = body.find("(", body.rfind("\n") + 1)  # ``.`` does not cross a line break
    return key if start < 0 else body[:start] + newline


#: The key grammars: pnpm changed how a dependency path is written twice.
V5, V6, V9 = 5, 6, 9


def grammar(lockfile_version: object) -> int | None:
    """The key grammar of a ``lockfileVersion`` (5.x → 5, 6.x → 6, 7+ → 9), None if unknown."""
    if isinstance(lockfile_version, bool) or not isinstance(lockfile_version, str | int | float):
        return None
    try:
        major = int(float(str(lockfile_version).strip()))
    except (ValueError, OverflowError):
        return None
    if major < 5:
        return None
    return V5 if major == 5 else V6 if major == 6 else V9


def _name_end(core: str) -> int:
    """Index of the ``@`` that ends the name in ``@s/n@1.0.0`` / ``n@1.0.0``, or -1."""
    return core.find("@", 1)


def split_key(key: str, version_grammar: int | None) -> tuple[str, str] | None:
    """A registry dependency path → (name, version), per lockfile version:

    * 5.x ``/name/1.0.0_peer@x`` and ``/@s/name/1.0.0_@s+peer@x``: the name is one path segment
      (two with a scope); the version runs to the first ``_`` (a semver has none), so a name
      with an underscore (``@types/babel__core``, ``string_decoder``) survives;
    * 6.0 ``/name@1.0.0(peer@x)``; 9.0 ``name@1.0.0(peer@x)``: the name runs to the first
      ``@`` after position 0, the version to the peer suffix.

    None when the key is not a registry path of that grammar (a host, ``file:``, git…)."""
    if version_grammar is None:  # unknown: tell 5.x from 6.0 by the shape of the key
        if not key.startswith("/"):
            version_grammar = V9
        else:
            first = key[1:].split("/", 2 if key.startswith("/@") else 1)
            version_grammar = V5 if len(first) == (3 if key.startswith("/@") else 2) and \
                "@" not in "/".join(first[:-1]).lstrip("@") else V6
    if version_grammar == V5:
        if not key.startswith("/"):
            return None
        parts = key[1:].split("/")
        width = 2 if parts[0].startswith("@") else 1
        if len(parts) < width + 1:
            return None
        name = "/".join(parts[:width])
        version = "/".join(parts[width:]).split("_", 1)[0]
        if "/" in version:
            return None
        return (name, version) if valid_name(name) and version else None
    core = strip_peers(key)
    if version_grammar == V6:
        if not core.startswith("/"):
            return None
        core = core[1:]
    at = _name_end(core)
    if at <= 0:
        return None
    name, version = core[:at], core[at + 1 :]
    return (name, version) if valid_name(name) and version else None


class PnpmLockExtractor:
    kind = "pnpm"

    def wants(self, path: PurePosixPath) -> bool:
        return path.name == "pnpm-lock.yaml"

    def extract(self, source: str, data: bytes, sibling: Sibling) -> Environment:
        docs = [d for d in safe_yaml.load_all(data.decode("utf-8", errors="replace"))
                if isinstance(d, dict)]
        if not any(k in d for d in docs for k in ("lockfileVersion", "importers", "packages")):
            raise InventoryError("not a pnpm lockfile (no lockfileVersion, importers or packages)")
        for doc in docs:
            for section in ("importers", "packages", "snapshots"):
                if doc.get(section) is not None and not isinstance(doc[section], dict):
                    raise InventoryError(f"'{section}' is not a mapping")
        graph = Graph()
        for doc in docs:  # pnpm 11 writes more than one document: read them all
            self._document(doc, graph)
        # a lockfile with no dependencies (``importers: {.: {}}``) is a valid, empty environment
        return graph.to_environment(source, self.kind, source)

    @staticmethod
    def _identity(key: str, meta: dict[str, Any], snapshot: dict[str, Any],
                  version_grammar: int | None) -> tuple[str, str] | None:
        """The entry's own ``name``/``version`` (other registries, tarballs, git, ``file:``);
        the key, read with its lockfile version's grammar, only for what they leave out."""
        name = text(meta.get("name")) or text(snapshot.get("name"))
        version = text(meta.get("version")) or text(snapshot.get("version"))
        if name and version:
            return (name, version) if valid_name(name) else None
        parsed = split_key(key, version_grammar)
        if parsed is None:
            return None
        name, version = name or parsed[0], version or parsed[1]
        return (name, version) if valid_name(name) else None

    def _document(self, doc: dict[str, Any], graph: Graph) -> None:
        version_grammar = grammar(doc.get("lockfileVersion"))
        packages = mapping(doc.get("packages"))
        snapshots = doc.get("snapshots")
        nodes_src = snapshots if isinstance(snapshots, dict) else packages
        ids: dict[tuple[str, str], str] = {}
        for key in nodes_src:
            meta = mapping(packages.get(key) or packages.get(strip_peers(str(key))))
            identity = self._identity(str(key), meta, mapping(nodes_src.get(key)), version_grammar)
            if identity is None:
                graph.errors.append(f"{str(key)[:120]!r}: cannot tell the package's name and "
                                    "version (entry skipped)")
                continue
            name, version = identity
            resolution = mapping(meta.get("resolution"))
            flags = {**meta, **mapping(nodes_src.get(key))}  # 9.0 moved them to snapshots
            graph.add(str(key), Node(name, version, _resolved(resolution),
                                     text(resolution.get("integrity")),
                                     dev=flags.get("dev") is True,
                                     optional=flags.get("optional") is True))
            ids[(name, strip_peers(version))] = str(key)
            ids.setdefault((name, version), str(key))

        def find(dep: str, ref: object) -> str | None:
            if not isinstance(ref, str | int | float) or isinstance(ref, bool):
                return None  # a version is a scalar; anything else names nothing
            ref = str(ref)
            if ref.startswith(("link:", "workspace:")):
                return None
            for candidate in (ref, f"/{ref}", f"{dep}@{ref}", f"/{dep}@{ref}", f"/{dep}/{ref}"):
                if candidate in graph.nodes:
                    return candidate
            if "@" in ref.lstrip("@"):  # alias: realname@version (``/real/1.0.0`` in 5.x)
                parsed = split_key(ref, version_grammar) or split_key(f"/{ref}", version_grammar)
                if parsed:
                    return ids.get((parsed[0], strip_peers(parsed[1])))
            return ids.get((dep, strip_peers(ref)))

        for key, entry in nodes_src.items():
            if not isinstance(entry, dict) or str(key) not in graph.nodes:
                continue
            for section, optional in (("dependencies", False), ("optionalDependencies", True)):
                for dep, ref in mapping(entry.get(section)).items():
                    child = find(str(dep), ref)
                    if child:
                        graph.edge(str(key), child, optional)
        importers = doc.get("importers")
        if not isinstance(importers, dict):  # v5/v6 single project: the root fields
            importers = {".": doc} if any(k in doc for k in ("dependencies", "devDependencies")) else {}
        for path, importer in importers.items():
            if not isinstance(importer, dict):
                continue
            for section, kind in (("dependencies", "prod"), ("devDependencies", "dev"),
                                  ("optionalDependencies", "optional")):
                for dep, ref in mapping(importer.get(section)).items():
                    wanted = ref.get("version") if isinstance(ref, dict) else ref
                    child = find(str(dep), wanted)
                    if child:
                        graph.importer(str(path), child, kind)
                    elif not isinstance(wanted, str):
                        graph.errors.append(f"{path}: {dep} has no readable version")
                    elif not wanted.startswith(("link:", "workspace:")):
                        graph.errors.append(f"{path}: {dep}@{wanted} is not in the lockfile")


def _resolved(resolution: dict[str, Any]) -> str | None:
    """Where pnpm fetched a package from, when its lockfile says: a tarball URL, a git
    repository (``git+<repo>#<commit>``) or a local folder (``file:<directory>``)."""
    if (tarball := text(resolution.get("tarball"))) is not None:
        return tarball
    if (repo := text(resolution.get("repo"))) is not None:
        commit = text(resolution.get("commit"))
        repo = repo if repo.startswith("git") else f"git+{repo}"
        return f"{repo}#{commit}" if commit else repo
    if (directory := text(resolution.get("directory"))) is not None:
        return f"file:{directory}"
    return None
