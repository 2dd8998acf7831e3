"""Runs the rules over a package's files: YARA first (cheap), tree-sitter only where needed."""

from __future__ import annotations

import posixpath
import re
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

import yara

from chainwatch.analysis import chains as _chains  # noqa: F401 (registers its detector)
from chainwatch.analysis import decoders as _decoders  # noqa: F401 (registers its detector)
from chainwatch.analysis import jsast, normalize, yaracache
from chainwatch.analysis.detectors import (
    DETECTORS,
    MANIFEST_DETECTORS,
    WINDOWED_DETECTORS,
    Hit,
)
from chainwatch.analysis.resultcache import ResultCache, rules_hash
from chainwatch.analysis.rules import Rule
from chainwatch.analysis.text import LineIndex
from chainwatch.errors import UsageError
from chainwatch.manifest import Manifest, parse_manifest
from chainwatch.model import Finding, PackageFile, Severity

CODE_EXT = (*jsast.JS_EXT, *jsast.TS_EXT, *jsast.TSX_EXT)
SHELL_EXT = (".sh", ".bash", ".zsh", ".ps1", ".bat", ".cmd")
#: scripts of other interpreters: read by the script rules when they run at install
INTERPRETER_EXT = (".py", ".pl", ".rb", ".gypi")
DOC_EXT = (".md", ".markdown", ".txt", ".rst", ".html", ".htm", ".map", ".d.ts", ".d.mts",
           ".d.cts", ".css", ".svg", ".flow", ".snap", ".lock")
DOC_NAMES = ("license", "licence", "changelog", "history", "readme", "authors", "notice")


def file_kinds(file: PackageFile) -> tuple[str, ...]:
    """Which rule targets apply to a file."""
    low = file.path.lower()
    base = posixpath.basename(low)
    if low == "package.json":
        return ("manifest",)
    if low.endswith(DOC_EXT) or base.split(".")[0] in DOC_NAMES:
        return ()
    head = file.data[:8192]
    if b"\x00" in head:
        return ("binary",)
    if low.endswith(CODE_EXT) or head.startswith(b"#!/usr/bin/env node"):
        return ("code", "text")
    if low.endswith(SHELL_EXT) or head.startswith(b"#!/bin/"):
        return ("script", "text")
    if low.endswith((".png", ".jpg", ".jpeg", ".gif", ".ico", ".webp")):
        return ("binary",)
    if low.endswith(".json"):
        return ()
    return ("text",)


_TOKEN = re.compile(r"[^\s;&|<>()'\"`]+")
_LITERAL = re.compile(rb"""['"`]([^'"`\s]{1,200})['"`]""")
#: How far references from install-time files to other package files are followed.
INSTALL_REACH_DEPTH = 3
INSTALL_REACH_FILES = 64


def _resolve(token: str, base: str, known: dict[str, PackageFile]) -> str | None:
    token = token.removeprefix("./")
    for root in (base, ""):
        path = posixpath.normpath(posixpath.join(root, token)) if token else ""
        if path.startswith(".."):
            continue
        for candidate in (path, f"{path}.js", f"{path}/index.js"):
            if candidate in known and candidate != "package.json":
                return candidate
    return None


def install_time_files(manifest: Manifest, files: Sequence[PackageFile],
                       extra_commands: Iterable[str] = ()) -> set[str]:
    """Files that run at install: named by a lifecycle script, or referenced from one that runs.

    Any token of a preinstall/install/postinstall command that names a package file counts
    (``node x.js``, ``sh setup.sh``, ``start /b run.bat``; ``node .`` is the package main), and so
    does any string literal in such a file that names another package file (``spawn('bun',
    ['payload.js'])``, ``require('./lib/steal')``), a few levels deep.
    """
    known = {f.path: f for f in files}
    main = manifest.main or "index.js"
    found: set[str] = set()
    frontier: list[str] = []
    for command in [*manifest.lifecycle_scripts.values(), *extra_commands]:
        for token in _TOKEN.findall(command):
            target = _resolve(str(main) if token in (".", "./") else token, "", known)
            if target and target not in found:
                found.add(target)
                frontier.append(target)
    for _ in range(INSTALL_REACH_DEPTH):
        next_frontier: list[str] = []
        for path in frontier:
            base = posixpath.dirname(path)
            for m in _LITERAL.finditer(known[path].data[:1_000_000]):
                target = _resolve(m.group(1).decode("utf-8", "replace"), base, known)
                if target and target not in found and len(found) < INSTALL_REACH_FILES:
                    found.add(target)
                    next_frontier.append(target)
        frontier = next_frontier
    return found


#: Files larger than this are parsed only around the places their needles matched.
WINDOW_THRESHOLD = 256 * 1024
WINDOW_RADIUS = 4096
#: Files larger than this are read by the windowed detectors (browser_hook) in windows too.
DETECTOR_WINDOW_THRESHOLD = WINDOW_THRESHOLD


def _windows(offsets: Iterable[int], size: int) -> list[tuple[int, int]]:
    """Merged byte ranges of WINDOW_RADIUS around each offset."""
    spans: list[tuple[int, int]] = []
    for off in sorted(offsets):
        lo, hi = max(0, off - WINDOW_RADIUS), min(size, off + WINDOW_RADIUS)
        if spans and lo <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], hi))
        else:
            spans.append((lo, hi))
    return spans


#: a file the structural search could not search whole: not analysed, so not known to be clean
ANALYSIS_LIMIT = "CW-ANALYSIS-LIMIT"


def _analysis_limit(file: PackageFile, cut: list[str], install_time: bool) -> Finding:
    """Medium, capability ``analysis-incomplete``: a trust signal, so a release is never judged
    benign on a file chainwatch could not search whole."""
    return Finding(
        rule=ANALYSIS_LIMIT, severity=Severity.MEDIUM, technique="obfuscation",
        capability="analysis-incomplete", install_time=install_time,
        message="part of this file was not searched for code structure: " + "; ".join(cut),
        file=file.path, line=1)


class Engine:
    """Compiled rules, ready to run over many files.

    Per kind of file (code, script, manifest, binary, text) one YARA ruleset holds the pattern
    rules that apply and the needles of the query and detector rules, so each file is read by
    YARA once; tree-sitter and the Python detectors run only where a needle matched.
    """

    def __init__(self, rules: Sequence[Rule], results: ResultCache | None = None) -> None:
        """``results``: a cache of per-file findings (none: every file is analysed)."""
        self.rules = list(rules)
        self.by_id = {r.id: r for r in self.rules}
        self.rules_hash = rules_hash(self.rules)
        self.results = results
        self._names: dict[str, tuple[str, str]] = {}  # yara name -> (rule id, role)
        self._sources: dict[str, str] = {}
        origin: dict[str, Rule] = {}
        for index, rule in enumerate(self.rules):
            if rule.detector and rule.detector not in DETECTORS | MANIFEST_DETECTORS:
                raise UsageError(f"{rule.origin}: rule {rule.id}: unknown detector {rule.detector}")
            parts: list[tuple[str, str, str]] = []  # (yara name, body, role)
            if rule.yara:
                parts.append((f"r{index}", rule.yara, "rule"))
            elif rule.needle:
                parts.append((f"n{index}", f"strings: $n = /{rule.needle}/ condition: $n",
                              "needle"))
            parts += [(f"q{index}_{k}", f"strings: $q = /{req}/ condition: $q", "requires")
                      for k, req in enumerate(rule.requires)]
            for name, body, role in parts:
                self._names[name] = (rule.id, role)
                self._sources[name] = f"rule {name} {{\n{body}\n}}"
                origin[name] = rule
        self._check(origin)
        self._compiled: dict[tuple[str, ...], yara.Rules | None] = {}
        self._compile_lock = threading.Lock()

    def _check(self, origin: dict[str, Rule]) -> None:
        """Every part compiles on its own: one compile of all of them, each in its own
        namespace; only when that fails is each compiled alone, to name the rule at fault."""
        if not self._sources:
            return
        try:
            yara.compile(sources=self._sources)
            return
        except yara.Error:
            pass
        for name, source in self._sources.items():
            try:
                yara.compile(source=source)
            except yara.Error as exc:
                rule = origin[name]
                raise UsageError(f"{rule.origin}: rule {rule.id} does not compile as YARA: "
                                 f"{exc}") from exc

    def _ruleset(self, kinds: tuple[str, ...]) -> yara.Rules | None:
        if kinds not in self._compiled:
            with self._compile_lock:
                if kinds not in self._compiled:
                    parts = [src for name, src in self._sources.items()
                             if self.by_id[self._names[name][0]].target in kinds]
                    self._compiled[kinds] = yaracache.compiled("\n".join(parts)) \
                        if parts else None
        return self._compiled[kinds]

    # -- one file ----------------------------------------------------------------------------
    def _hits(self, file: PackageFile, kinds: tuple[str, ...],
              manifest: Manifest | None = None, on_view: bool = False) -> dict[str, list[Hit]]:
        hits: dict[str, list[Hit]] = defaultdict(list)
        needles: dict[str, list[int]] = {}
        ruleset = self._ruleset(kinds)
        met: dict[str, int] = defaultdict(int)  # rule id -> how many 'requires' matched
        for match in ruleset.match(data=file.data, timeout=30) if ruleset else ():
            rid, role = self._names[match.rule]
            if role == "needle":
                needles[rid] = [i.offset for s in match.strings for i in s.instances]
                continue
            if role == "requires":
                met[rid] += 1
                continue
            # the rarest string of a rule is its most telling evidence: report it first
            for string in sorted(match.strings, key=lambda s: len(s.instances)):
                for inst in string.instances:
                    hits[rid].append(Hit(inst.offset, inst.matched_length))
            if rid not in hits:
                hits[rid].append(Hit(0, 0))
        # a rule whose 'requires' did not all match cannot report: skip its parse and walk
        queries = [self.by_id[rid] for rid in needles if self.by_id[rid].query
                   and len(self.by_id[rid].requires) <= met[rid]]
        if queries:
            self._query_hits(file, queries, needles, hits)
        for rule in self.rules:
            if on_view and rule.view == "surface":
                continue  # its hits on the view would be dropped: do not run it there
            if rule.detector and rule.target in kinds and (not rule.needle or rule.id in needles) \
                    and len(rule.requires) <= met[rule.id]:
                if rule.detector in MANIFEST_DETECTORS:
                    found = (MANIFEST_DETECTORS[rule.detector](file, manifest, rule.params)
                             if manifest is not None else [])
                elif rule.detector in WINDOWED_DETECTORS and rule.needle \
                        and len(file.data) > DETECTOR_WINDOW_THRESHOLD:
                    # a large file: parsed around the needles of every rule of this detector
                    found = WINDOWED_DETECTORS[rule.detector](
                        file, rule.params, self._detector_offsets(rule.detector, needles))
                else:
                    found = DETECTORS[rule.detector](file, rule.params)
                if found:
                    hits[rule.id].extend(found)
        for rid in [r for r in hits if len(self.by_id[r].requires) > met[r]]:
            del hits[rid]
        return hits

    def _detector_offsets(self, detector: str, needles: dict[str, list[int]]) -> tuple[int, ...]:
        return tuple(sorted({o for r in self.rules if r.detector == detector
                             for o in needles.get(r.id, ())}))

    def _query_hits(self, file: PackageFile, queries: list[Rule],
                    needles: dict[str, list[int]], hits: dict[str, list[Hit]]) -> None:
        lang = jsast.language_kind(file.path)
        if len(file.data) <= WINDOW_THRESHOLD:
            spans = [(0, len(file.data))]
        else:
            spans = _windows((o for r in queries for o in needles[r.id]), len(file.data))
        for lo, hi in spans:
            tree = jsast.parse(file.data[lo:hi], lang)
            for rule in queries:
                query = jsast.compile_query(lang, rule.query or "")
                if query is None:
                    continue
                for qh in jsast.run_query(tree, query):
                    hits[rule.id].append(Hit(lo + qh.offset, qh.length))
        for rule in queries:  # a place inside two merged windows is reported once
            unique = {h.offset: h for h in hits.get(rule.id, [])}
            if unique:
                hits[rule.id] = list(unique.values())

    def _findings(self, file: PackageFile, hits: dict[str, list[Hit]],
                  install_time: bool, display_path: str | None = None) -> list[Finding]:
        if not hits:
            return []
        index = LineIndex(file.data)
        findings: list[Finding] = []
        for rid, rule_hits in hits.items():
            rule = self.by_id[rid]
            shown: list[Hit] = []
            lines: set[int] = set()
            for hit in rule_hits:
                line = index.line_of(hit.offset)
                if line not in lines:
                    lines.add(line)
                    shown.append(hit)
            severity = rule.severity
            message = rule.title
            if install_time and rule.target != "script":
                message += " [in a file run at install time]"
            extra = len(shown) - rule.max_hits
            for n, hit in enumerate(sorted(shown[: rule.max_hits], key=lambda h: h.offset)):
                text = message + (f": {hit.message}" if hit.message else "")
                if n == rule.max_hits - 1 and extra > 0:
                    text += f" (+{extra} more places in this file)"
                findings.append(Finding(
                    rule=rule.id, severity=severity, technique=rule.technique,
                    capability=rule.capability, message=text,
                    file=display_path or file.path, line=index.line_of(hit.offset),
                    snippet=index.snippet(hit.offset, hit.length), reference=rule.reference,
                    install_time=install_time,
                ))
        return findings

    def scan_file(self, file: PackageFile, install_time: bool = False,
                  manifest: Manifest | None = None) -> list[Finding]:
        """Findings in one file; ``manifest`` is the parsed package.json when ``file`` is it
        (manifest rules read that value, never the bytes again).

        A JS/TS file is read twice: as it is, and as its normalised view (constants folded, see
        analysis/normalize.py). A finding the view adds keeps the file's own line and snippet and
        shows the normalised text beside it; one the surface already had is not repeated.
        """
        if manifest is not None:
            return self._scan_file(file, install_time, manifest)
        cached = self.cached(file, install_time)
        if cached is not None:
            return cached
        found = self._scan_file(file, install_time, None)
        self.remember(file, install_time, found)
        return found

    def cached(self, file: PackageFile, install_time: bool) -> list[Finding] | None:
        """The findings of ``file`` from the result cache, None when they are not there (or
        there is no cache). A file no rule reads (docs, source maps, JSON) is never looked up:
        it has no findings and costs nothing to scan."""
        if self.results is None or not file_kinds(file):
            return None
        found = self.results.get(ResultCache.key(self.rules_hash, file, install_time))
        return None if found is None else list(found)

    def remember(self, file: PackageFile, install_time: bool, found: list[Finding]) -> None:
        if self.results is not None and file_kinds(file):
            self.results.put(ResultCache.key(self.rules_hash, file, install_time), found)

    def _scan_file(self, file: PackageFile, install_time: bool,
                   manifest: Manifest | None) -> list[Finding]:
        kinds = file_kinds(file)
        if install_time and kinds == ("text",) and file.path.lower().endswith(INTERPRETER_EXT):
            kinds = ("script", "text")  # a .py node-gyp imports, a .pl a hook runs: a script
        if not kinds:
            return []
        if manifest is None and "manifest" in kinds:  # a caller without a PackageFiles
            manifest = parse_manifest(file.data)
        with jsast.limits_met() as cut:  # what the structural search could not reach
            hits = self._hits(file, kinds, manifest)
            for rid in [r for r in hits if self.by_id[r].view == "normalized"]:
                del hits[rid]
            findings = self._findings(file, hits, install_time)
            if "code" in kinds:
                findings.extend(self._normalized_findings(file, kinds, findings, install_time))
        if cut:
            findings.append(_analysis_limit(file, cut, install_time))
        return findings

    def _normalized_findings(self, file: PackageFile, kinds: tuple[str, ...],
                             surface: list[Finding], install_time: bool) -> list[Finding]:
        view = normalize.normalize(file.data, file.path)
        found: list[Finding] = []
        limits = [x for x in view.limits if not x.startswith("file larger")]
        if limits:
            found.append(Finding(
                rule="CW-NORMALIZE-LIMIT", severity=Severity.INFO, technique="obfuscation",
                capability="analysis-limit",
                message="normalisation stopped at a bound (the file's own text is still "
                        "analysed): " + "; ".join(limits), file=file.path, line=1))
        if not view.changed:
            return found
        seen = {(f.rule, f.line) for f in surface}
        original = LineIndex(file.data)
        view_index = LineIndex(view.text)
        hits: dict[str, list[Hit]] = defaultdict(list)
        shown: dict[tuple[str, int], str] = {}
        for rid, rule_hits in self._hits(PackageFile(file.path, view.text), kinds,
                                         on_view=True).items():
            if self.by_id[rid].view == "surface":
                continue
            only_view = self.by_id[rid].view == "normalized"
            for hit in rule_hits:
                # a rule of the view alone ("runs a hidden string") reports only what folding
                # revealed: a match over text the file says as it is (a bundler's plain
                # eval("require('path')")) hid nothing
                if only_view and not view.touches(hit.offset, hit.offset + max(hit.length, 1)):
                    continue
                offset = view.to_original(hit.offset)
                line = original.line_of(offset)
                if (rid, line) in seen:
                    continue
                hits[rid].append(Hit(offset, min(hit.length, 160), hit.message))
                shown.setdefault((rid, line), view_index.snippet(hit.offset, hit.length))
        for f in self._findings(file, hits, install_time):
            found.append(replace(f, message=f.message + " [after normalisation]",
                                 normalized=shown.get((f.rule, f.line or 0))))
        return found

    def scan_scripts(self, manifest_file: PackageFile, manifest: Manifest) -> list[Finding]:
        """Script rules over each lifecycle script's command line."""
        return self.scan_commands(manifest_file, manifest.lifecycle_scripts, "scripts.")

    def scan_commands(self, where: PackageFile, commands: Mapping[str, str],
                      prefix: str = "") -> list[Finding]:
        """Script rules over command lines that run at install, found in the file ``where``
        (package.json scripts, binding.gyp commands)."""
        findings: list[Finding] = []
        index = LineIndex(where.data)
        for label, command in commands.items():
            virtual = PackageFile(f"{where.path}#{prefix}{label}", command.encode())
            hits = self._hits(virtual, ("script", "text"))
            pos = where.data.find(f'"{label}"'.encode()) if prefix else where.data.find(
                command[:60].encode())
            for f in self._findings(virtual, hits, True, where.path):
                findings.append(replace(
                    f, line=index.line_of(max(pos, 0)), snippet=f"{label}: {command[:200]}",
                ))
        return findings
