"""Which phases a release gets, as npm would run them: install lifecycle scripts (``sh -c`` in
the package folder with ``npm_*`` variables), binding.gyp commands when npm would run node-gyp,
then ``require``/``import`` of the entry points, then the browser entry in a fake window.
Everything here is read from the manifest as data; nothing is resolved outside the package."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any

from chainwatch.analysis.gyp import as_run, parse_gyp
from chainwatch.model import PackageFiles

LIFECYCLE = ("preinstall", "install", "postinstall")
MAX_GYP_COMMANDS = 8
MAX_ENTRIES = 4
MAX_BROWSER_ENTRIES = 3


@dataclass(frozen=True)
class Phase:
    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


def _inside(path: str) -> str | None:
    """A package-relative path, or None when it leaves the package."""
    while path.startswith("./"):
        path = path[2:]
    norm = posixpath.normpath(path) if path else "."
    if norm.startswith(("/", "..")) or norm == ".":
        return None
    return norm


def _gyp_commands(text: str) -> list[str]:
    """Command expansions (``<!(...)``, ``<!@(...)``) and action commands of a binding.gyp,
    read by the same bounded reader as static analysis (never evaluated), unescaped as gyp
    reads them."""
    return [as_run(c) for c in parse_gyp(text.encode()) if c.kind != "unread"][:MAX_GYP_COMMANDS]


def _export_targets(exports: Any, depth: int = 0) -> list[tuple[str, str]]:
    """(path, require|import) pairs named by an ``exports`` field."""
    if depth > 6:
        return []
    if isinstance(exports, str):
        return [(exports, "import" if exports.endswith(".mjs") else "require")]
    out: list[tuple[str, str]] = []
    if isinstance(exports, dict):
        keys = list(exports)
        if keys and all(k.startswith(".") for k in keys):
            return _export_targets(exports.get("."), depth + 1)
        for key in ("node", "require", "import", "default"):
            if key in exports:
                for path, mode in _export_targets(exports[key], depth + 1):
                    out.append((path, "import" if key == "import" or path.endswith(".mjs") else mode))
    return out


def plan(files: PackageFiles, manifest: dict[str, Any]) -> list[Phase]:
    """The phases to run for this package, in npm's order."""
    names = {f.path for f in files.files}
    phases: list[Phase] = []
    scripts = manifest.get("scripts") if isinstance(manifest.get("scripts"), dict) else {}
    assert isinstance(scripts, dict)
    for event in LIFECYCLE:
        script = scripts.get(event)
        if isinstance(script, str) and script.strip():
            phases.append(Phase(event, ("/bin/sh", "-c", script[:4096]),
                                {"npm_lifecycle_event": event, "npm_lifecycle_script": script[:4096]}))
    gyp = files.get("binding.gyp")
    if gyp is not None and not any(isinstance(scripts.get(e), str) for e in ("install", "preinstall")):
        for i, command in enumerate(_gyp_commands(gyp.text())):
            phases.append(Phase(f"gyp{i + 1}" if i else "gyp", ("/bin/sh", "-c", command),
                                {"npm_lifecycle_event": "install",
                                 "npm_lifecycle_script": "node-gyp rebuild"}))
    entries: list[tuple[str, str]] = []
    main = manifest.get("main")
    entries.append((main if isinstance(main, str) and main else "index.js",
                    "import" if manifest.get("type") == "module" else "require"))
    entries += _export_targets(manifest.get("exports"))
    seen: set[str] = set()
    loads: list[tuple[str, str]] = []
    for path, mode in entries:
        rel = _inside(path)
        if rel is None:
            continue
        for candidate in (rel, rel + ".js", posixpath.join(rel, "index.js")):
            if candidate in names and candidate not in seen:
                seen.add(candidate)
                loads.append((candidate, "import" if candidate.endswith(".mjs") else mode))
                break
    for i, (rel, mode) in enumerate(loads[:MAX_ENTRIES]):
        phases.append(Phase("load" if i == 0 else f"load{i + 1}",
                            ("node", "{js}/load.js", f"{{pkg}}/{rel}", mode)))
    browser_entries = _browser_entries(manifest, names, loads)
    if browser_entries:
        argv: list[str] = ["node", "{js}/browser.js"]
        for rel, mode in browser_entries:
            argv += [f"{{pkg}}/{rel}", mode]
        phases.append(Phase("browser", tuple(argv)))
    return phases


def _browser_entries(manifest: dict[str, Any], names: set[str],
                     loads: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """What a browser may load, each file once: the ``browser`` entry (a path, or what it maps
    ``main`` to), the ``module`` entry, and the Node entry itself (a payload appended to ``main``
    that waits for a ``window`` runs there in a universal bundle)."""
    main = loads[0][0] if loads else None
    browser = manifest.get("browser")
    module = manifest.get("module")
    wanted: list[tuple[str | None, str]] = []
    if isinstance(browser, str):
        wanted.append((browser, "require"))
    elif isinstance(browser, dict) and main is not None:
        for key, value in list(browser.items())[:64]:
            if isinstance(key, str) and isinstance(value, str) and _inside(key) == main:
                wanted.append((value, "require"))
                break
    if isinstance(module, str):
        wanted.append((module, "import"))
    if main is not None:
        wanted.append((main, loads[0][1]))
    out: list[tuple[str, str]] = []
    for path, mode in wanted:
        rel = _inside(path) if path else None
        if rel is None:
            continue
        if rel not in names and rel + ".js" in names:
            rel += ".js"
        if rel in names and rel not in {r for r, _ in out}:
            out.append((rel, "import" if rel.endswith(".mjs") else mode))
    return out[:MAX_BROWSER_ENTRIES]
