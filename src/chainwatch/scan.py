"""Scanning one release: load target and baseline, analyse what changed, score a verdict."""

from __future__ import annotations

import base64
import hashlib
import heapq
import itertools
import json
import multiprocessing
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from chainwatch.analysis import normalize
from chainwatch.analysis.diff import (
    entry_points,
    file_changes,
    injected_concealment,
    manifest_changes,
    reachable_entries,
)
from chainwatch.analysis.engine import CODE_EXT, Engine, install_time_files
from chainwatch.analysis.install_profile import (
    FETCH_RULES,
    bounded_fetch,
    install_env_child,
    install_hosts,
    new_install_hosts,
    prebuilt_addons,
)
from chainwatch.analysis.metadata import metadata_signals, name_signals, young_dependencies
from chainwatch.analysis.payload import payload
from chainwatch.analysis.prior import established
from chainwatch.analysis.provenance import BuildSource, build_source, provenance_drift
from chainwatch.analysis.release_signals import (
    BEHAVIOUR,
    RUN_ON_INSTALL,
    entry_payload,
    gyp_install_commands,
    new_install_script,
    phantom_dependency,
    unused_dependencies,
)
from chainwatch.analysis.resultcache import ResultCache
from chainwatch.analysis.rules import Rule, load_rules
from chainwatch.analysis.scoring import evidence_order, score
from chainwatch.archive import read_folder, read_tarball
from chainwatch.archive.limits import Limits
from chainwatch.errors import ChainwatchError, NotFoundError, RegistryError, UsageError
from chainwatch.intel import BuiltinKnownBad, KnownBadSource
from chainwatch.intel.base import VERDICT_SOURCE
from chainwatch.model import (
    Changes,
    Finding,
    Level,
    PackageFile,
    PackageFiles,
    PackageRef,
    Release,
    Severity,
    Verdict,
)
from chainwatch.names import name_problem, split_spec
from chainwatch.packument import (
    baseline_choice_of,
    baseline_version,
    pick_version,
    release_from_packument,
    slim_packument,
)
from chainwatch.registry.cache import ambiguous_integrity, sri_to_hex
from chainwatch.registry.client import RegistryClient
from chainwatch.specs import redact_credentials
from chainwatch.versions import bump_kind, clean, sort_versions, spec_kind

#: Up to this many JS/TS files, behaviour in different files counts as one payload.
SMALL_PACKAGE_FILES = 30


@dataclass(frozen=True)
class Loaded:
    """A package read into memory, with what the registry says of it when known."""

    ref: PackageRef
    files: PackageFiles
    release: Release | None = None
    packument: dict[str, Any] | None = None
    integrity_error: str | None = None
    #: "registry" (fetched for ref), "tarball" or "folder" (local: ref is the manifest's claim)
    origin: str = "registry"
    #: the integrity of the bytes read: the registry's for a registry release, the SRI sha512
    #: of the file for a local tarball, None for a folder
    integrity: str | None = None
    #: for a folder: a digest of its files, so its verdict is keyed by content too
    content_digest: str | None = None
    #: for a version whose tarball cannot be read (removed, or out of reach): why, in words
    gone: str | None = None
    #: the bytes are the registry's release of ``ref`` (fetched and checked, or a local tarball
    #: whose sha512 equals the registry's): only then may the registry's history speak for them
    verified: bool = False
    #: a local tarball judged against its registry history: how it was matched, in words
    history_note: str | None = None


def _ref_from_files(files: PackageFiles, fallback: str) -> PackageRef:
    manifest = files.manifest
    return PackageRef(manifest.name or fallback, manifest.version or "0.0.0")


def _integrity(loaded: Loaded) -> str | None:
    """What a verdict is keyed by: the bytes read. Only a registry release may borrow the
    registry's integrity; a local file never does, whatever its package.json claims."""
    if loaded.integrity or loaded.origin != "registry":
        return loaded.integrity
    return loaded.release.integrity if loaded.release else None


def sri_sha512(data: bytes) -> str:
    """The ``sha512-<base64>`` integrity string of bytes, as npm writes it."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")


def folder_digest(files: PackageFiles) -> str:
    """A digest of a folder's files (paths and contents), standing in for an integrity."""
    h = hashlib.sha256()
    for f in sorted(files.files, key=lambda f: f.path):
        h.update(f"{len(f.path)}:{f.path}:{f.sha256}\n".encode("utf-8", "surrogatepass"))
    return "folder-sha256-" + h.hexdigest()


def read_packument_file(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot read packument: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("versions"), dict):
        raise UsageError(f"{path}: not a packument (no 'versions' object)")
    return doc


_WORKER_ENGINE: Engine | None = None


def _init_worker(rules: list[Rule]) -> None:
    global _WORKER_ENGINE
    _WORKER_ENGINE = Engine(rules)


def _scan_batch(batch: list[tuple[PackageFile, bool]],
                steps: int = normalize.MAX_PACKAGE_EVAL_STEPS) -> list[list[Finding]]:
    """The findings of each file of a batch, in order (the parent caches them per file); the
    batch's files share ``steps`` of decoder evaluation (its part of the package's budget)."""
    assert _WORKER_ENGINE is not None
    with normalize.package_budget(steps):
        return [_WORKER_ENGINE.scan_file(file, install_time) for file, install_time in batch]


class _LargestFirst:
    """Hands the worker pool the largest waiting batch first, whichever scan it came from.

    Concurrent scans (``scan a b c --jobs 4``) each split their files into batches; fed in
    arrival order, a large package's biggest files could wait behind many small ones and
    finish last, alone on one core. One feeder thread per worker keeps exactly one batch per
    worker in the pool and picks the next from a heap by size.
    """

    def __init__(self, pool: ProcessPoolExecutor, workers: int) -> None:
        self._pool = pool
        self._heap: list[tuple[int, int, tuple[list[tuple[PackageFile, bool]], int],
                               Future[list[list[Finding]]]]] = []
        self._seq = itertools.count()
        self._ready = threading.Condition()
        self._closed = False
        for n in range(workers):
            threading.Thread(target=self._feed, name=f"chainwatch-feed-{n}", daemon=True).start()

    def submit(self, batch: list[tuple[PackageFile, bool]],
               steps: int = normalize.MAX_PACKAGE_EVAL_STEPS) -> Future[list[list[Finding]]]:
        future: Future[list[list[Finding]]] = Future()
        size = sum(len(f.data) for f, _ in batch)
        with self._ready:
            if self._closed:
                raise RuntimeError("the worker pool is closed")
            heapq.heappush(self._heap, (-size, next(self._seq), (batch, steps), future))
            self._ready.notify()
        return future

    def close(self) -> None:
        with self._ready:
            self._closed = True
            for *_, future in self._heap:
                future.cancel()
            self._heap.clear()
            self._ready.notify_all()

    def _feed(self) -> None:
        while True:
            with self._ready:
                while not self._heap and not self._closed:
                    self._ready.wait()
                if self._closed:
                    return
                *_, (batch, steps), future = heapq.heappop(self._heap)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(self._pool.submit(_scan_batch, batch, steps).result())
            except BaseException as exc:  # handed to the scan that waits for it
                future.set_exception(exc)


#: At most this many newly added dependencies are looked up for their age.
MAX_DEPENDENCY_LOOKUPS = 10
#: At most this many newly added dependencies of a release are scanned themselves, and their
#: own new dependencies are not followed (depth 1).
MAX_DEPENDENCY_SCANS = 5
MAX_DEPENDENCY_DEPTH = 1
#: A release's provenance is compared with that of at most this many earlier releases.
PROVENANCE_HISTORY = 3
#: Packages with more than this many bytes to analyse are spread over worker processes ...
PARALLEL_BYTES = 8 * 1024 * 1024
#: ... and, once the pool is running or when several scans run at once (``scan a b c``), so is
#: anything above this.
WARM_POOL_BYTES = 512 * 1024
_BATCH_BYTES = 2 * 1024 * 1024


#: Specs npm resolves outside the registry: aliases, git hosts and URLs, file and link paths.
_NOT_REGISTRY = re.compile(
    r"^(npm|github|gitlab|bitbucket|gist|git|git\+[a-z]+|https?|file|link|workspace|ssh):"
    r"|^[\w.-]+@[\w.-]+:(?!//)[\w.-]+/|^[a-z]+://", re.I)


class Scanner:
    """Loads releases and analyses them; reusable across many scans (caches, worker pool)."""

    def __init__(self, client: RegistryClient | None, rules: list[Rule] | None = None,
                 workers: int | None = None, known_bad: KnownBadSource | None = None,
                 sandbox: bool = False, notice: Callable[[str], None] | None = None) -> None:
        self.client = client
        #: told which version a dist-tag or range resolved to (scan prints it on stderr)
        self.notice = notice
        #: run each release in the sandbox as well (scan --sandbox, policy [scan] sandbox)
        self.sandbox = sandbox
        self.known_bad: KnownBadSource = known_bad if known_bad is not None else BuiltinKnownBad()
        # the rules are loaded and compiled when a release is first analysed: a gate that
        # finds every verdict in memory never pays for them
        self._rules = rules
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()
        self.workers = workers if workers is not None else (os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None
        self._feeder: _LargestFirst | None = None
        self._pool_lock = threading.Lock()
        self._packuments_lock = threading.Lock()
        self._packuments: dict[str, dict[str, Any]] = {}
        self._active = 0  # _scan_many calls in progress (threads of one multi-target run)

    @property
    def rules(self) -> list[Rule]:
        if self._rules is None:
            with self._engine_lock:
                if self._rules is None:
                    self._rules = load_rules()
        return self._rules

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            rules = self.rules
            with self._engine_lock:
                if self._engine is None:
                    #: per-file findings shared by every scan of this scanner
                    self._engine = Engine(rules, ResultCache())
        return self._engine

    def close(self) -> None:
        if self._feeder is not None:
            self._feeder.close()
            self._feeder = None
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Scanner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _scan_many(self, work: list[tuple[PackageFile, bool]]) -> list[Finding]:
        """Scan files here, or in worker processes when there is a lot to scan; files whose
        findings the result cache holds are not scanned again."""
        found: list[list[Finding] | None] = [self.engine.cached(f, t) for f, t in work]
        todo = [i for i, hit in enumerate(found) if hit is None]
        size = sum(len(work[i][0].data) for i in todo)
        with self._pool_lock:
            self._active += 1
            pooled = self.workers > 1 and (size > PARALLEL_BYTES or (
                size > WARM_POOL_BYTES and (self._pool is not None or self._active > 1)))
            if pooled and self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.workers, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init_worker, initargs=(self.rules,))
                self._feeder = _LargestFirst(self._pool, self.workers)
            feeder = self._feeder
        try:
            if not todo:
                pass
            elif not pooled or feeder is None:
                # the package's files share one decoder-evaluation budget
                with normalize.package_budget():
                    for i in todo:
                        found[i] = self.engine.scan_file(*work[i])
            else:
                batches: list[list[int]] = [[]]
                filled = 0
                for i in sorted(todo, key=lambda i: -len(work[i][0].data)):  # largest first
                    if filled >= _BATCH_BYTES:
                        batches.append([])
                        filled = 0
                    batches[-1].append(i)
                    filled += len(work[i][0].data)
                # each batch gets its share of the package's decoder-evaluation budget
                share = normalize.MAX_PACKAGE_EVAL_STEPS // len(batches)
                futures = [feeder.submit([work[i] for i in b], share) for b in batches]
                for batch, future in zip(batches, futures, strict=True):
                    per_file = future.result()
                    for i, findings in zip(batch, per_file, strict=True):
                        found[i] = findings
                        self.engine.remember(work[i][0], work[i][1], findings)
        finally:
            with self._pool_lock:
                self._active -= 1
        return [x for findings in found for x in findings or ()]

    # -- loading ---------------------------------------------------------------------------
    def _remember_packument(self, name: str, doc: dict[str, Any]) -> None:
        """Keep a packument for later loads, the most recent 256 only (a watcher runs for
        weeks)."""
        with self._packuments_lock:
            self._packuments.pop(name, None)
            self._packuments[name] = doc
            while len(self._packuments) > 256:
                self._packuments.pop(next(iter(self._packuments)))

    def _packument(self, name: str) -> dict[str, Any]:
        held = self._packuments.get(name)
        if held is None:
            if self.client is None:
                raise UsageError(f"{name}: needs the registry, but no client is configured")
            held = slim_packument(self.client.packument(name))
            self._remember_packument(name, held)
        return held

    def load(self, spec: str, packument: dict[str, Any] | None = None,
             limits: Limits | None = None) -> Loaded:
        path = Path(spec)
        if path.is_dir():
            files = read_folder(path)
            return self._with_metadata(files, packument, "folder", None, folder_digest(files))
        if path.is_file():
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise UsageError(f"{spec}: cannot read: {exc}") from exc
            files = read_tarball(data, source=str(path), limits=limits)
            return self._with_metadata(files, packument, "tarball", sri_sha512(data), None)
        if _NOT_REGISTRY.match(spec):
            # what npm would fetch from somewhere other than the registry: not a local path
            raise UsageError(f"{redact_credentials(spec)}: not a version, range or dist-tag "
                             "(aliases, git, file and URL specs are not resolved by scan; "
                             "scan a local folder or tarball instead)")
        if spec.endswith((".tgz", ".tar.gz", ".tar")) or ("/" in spec and not spec.startswith("@")):
            raise UsageError(f"{spec}: no such file or folder")
        name, wanted = split_spec(spec)
        problem = name_problem(name)
        if problem is not None:
            raise UsageError(f"{spec}: invalid package name: {problem}")
        # an exact version may be one the registry removed: the known-bad list still judges it
        exact = clean(wanted) if wanted and spec_kind(wanted.strip()) == "version" else None
        try:
            doc = packument or self._packument(name)
            self._remember_packument(name, doc)
            picked = pick_version(doc, wanted)
        except (NotFoundError, RegistryError) as exc:
            # fail closed: a listed version is malicious whether removed or out of reach
            gone = self._gone(name, exact, str(exc), isinstance(exc, NotFoundError)) \
                if exact else None
            if gone is None:
                raise
            return gone
        ref = PackageRef(name, picked.version)
        if picked.kind != "version" and self.notice is not None:
            self.notice(f"{spec} resolved to {ref} ({picked.how})")
        release = release_from_packument(doc, ref.version)
        if not release.tarball_url:
            raise UsageError(f"{ref}: the registry gives no tarball URL")
        if self.client is None:
            raise UsageError(f"{ref}: needs the registry, but no client is configured")
        tarball = self.client.tarball(release.tarball_url, release.integrity, release.shasum)
        files = read_tarball(tarball.data, source=str(ref), limits=limits)
        files.manifest  # noqa: B018 - parsed now, so a hostile one fails the load, not later
        return Loaded(ref, files, release, doc, tarball.integrity_error,
                      integrity=release.integrity, verified=tarball.integrity_error is None)

    def _gone(self, name: str, version: str, why: str, removed: bool = True) -> Loaded | None:
        """A version the registry no longer serves, when the known-bad list names it: a
        package with no files whose one finding says the tarball is gone (the known-bad finding
        comes from :meth:`analyze`). None when no list names it (then it is "no such version")."""
        listed = [a for a in self.known_bad.lookup(name, version) if a.source != VERDICT_SOURCE]
        if not listed:
            return None
        ref = PackageRef(name, version)
        note = Finding(
            rule="CW-TARBALL-GONE", severity=Severity.INFO, technique="known-bad",
            capability="", message=(
                (f"the registry no longer serves {ref} ({why}); the tarball is gone"
                 if removed else f"{ref} could not be fetched ({why})")
                + f", so the verdict rests on the known-bad list alone "
                f"({', '.join(a.id for a in listed)})"))
        return Loaded(ref, PackageFiles(str(ref), (), findings=(note,)), origin="registry",
                      gone="the tarball is gone: the registry no longer serves it" if removed
                      else "the tarball could not be fetched")

    def _with_metadata(self, files: PackageFiles, packument: dict[str, Any] | None,
                       origin: str = "tarball", integrity: str | None = None,
                       digest: str | None = None) -> Loaded:
        """A local package: its name@version is what its package.json claims. Registry
        metadata from ``packument`` informs the analysis, but the verdict stays keyed by the
        bytes read (``integrity``), never by the registry release's integrity."""
        ref = _ref_from_files(files, Path(files.source).name)
        release = None
        if packument is not None and ref.version in packument.get("versions", {}):
            release = release_from_packument(packument, ref.version)
        return Loaded(ref, files, release, packument, origin=origin, integrity=integrity,
                      content_digest=digest)

    def _created(self, deps: dict[str, str]) -> dict[str, str | None]:
        """When each dependency's package was created, for those the registry answers for."""
        out: dict[str, str | None] = {}
        for dep in sorted(deps)[:MAX_DEPENDENCY_LOOKUPS]:
            try:
                times = self._packument(dep).get("time")
            except ChainwatchError:
                continue
            if isinstance(times, dict) and isinstance(times.get("created"), str):
                out[dep] = times["created"]
        return out

    def _build_source(self, name: str, packument: dict[str, Any], version: str
                      ) -> BuildSource | None:
        """What the provenance of ``version`` names, None when it has none or it cannot be
        read (absence of provenance is CW-META-PROVENANCE-LOST's business)."""
        entry = packument.get("versions", {}).get(version)
        dist = entry.get("dist") if isinstance(entry, dict) else None
        att = dist.get("attestations") if isinstance(dist, dict) else None
        url = att.get("url") if isinstance(att, dict) else None
        if self.client is None or not isinstance(url, str) or len(url) > 2000:
            return None
        try:
            return build_source(self.client.attestations(name, url))
        except ChainwatchError:
            return None

    def _provenance_drift(self, target: Loaded) -> list[Finding]:
        """CW-META-PROVENANCE-DRIFT: this release's provenance against that of up to
        PROVENANCE_HISTORY earlier releases that had one."""
        doc, release = target.packument, target.release
        if doc is None or release is None or not release.has_provenance or self.client is None:
            return []
        current = self._build_source(target.ref.name, doc, target.ref.version)
        if current is None:
            return []
        ordered = sort_versions(doc.get("versions", {}))
        if target.ref.version not in ordered:
            return []
        previous: list[tuple[str, BuildSource]] = []
        for version in reversed(ordered[: ordered.index(target.ref.version)]):
            if len(previous) >= PROVENANCE_HISTORY:
                break
            if not release_from_packument(doc, version).has_provenance:
                continue
            source = self._build_source(target.ref.name, doc, version)
            if source is not None:
                previous.append((version, source))
        return provenance_drift(target.ref.version, current, previous)

    def _earlier_scripts(self, target: Loaded) -> list[dict[str, str]]:
        """The scripts of every version before ``target`` that the packument lists."""
        doc = target.packument
        if not doc or not isinstance(doc.get("versions"), dict):
            return []
        ordered = sort_versions(doc["versions"])
        if target.ref.version not in ordered:
            return []
        return [release_from_packument(doc, v).scripts
                for v in ordered[: ordered.index(target.ref.version)][-200:]]

    def _install_profile(self, findings: list[Finding], target: Loaded,
                         baseline: Loaded | None, install: set[str],
                         fresh: set[str]) -> list[Finding]:
        """Benign install shapes, bounded (analysis/install_profile.py): one prebuilt addon
        counted once; a platform-binary fetch weighed low when its hook is the previous
        release's (the baseline's, else the packument's previous version) and its hosts are
        declared (and, with a baseline, were named before)."""
        findings = prebuilt_addons(findings, target.files.files)
        files = [f for f in target.files.files if f.path in install]
        previous: dict[str, str] | None = None
        hosts: set[str] | None = None
        if baseline is not None:
            b_manifest = baseline.files.manifest
            previous = dict(b_manifest.scripts)
            fetching = any(f.install_time and f.rule in FETCH_RULES for f in findings)
            if fetching or any(f.path in fresh for f in files):
                # the previous release's hosts are read only when an install file changed or
                # fetches: most packages run nothing at install
                b_install = install_time_files(b_manifest, baseline.files.files,
                                               gyp_install_commands(baseline.files).values())
                hosts = install_hosts(
                    [f for f in baseline.files.files if f.path in b_install], b_manifest,
                    baseline.files.files)
                findings = [*findings, *new_install_hosts(
                    target.files.manifest, files, fresh, hosts, target.files.files,
                    bump_kind(baseline.ref.version, target.ref.version), findings),
                    *install_env_child(files, fresh,
                                       {f.path: f for f in baseline.files.files})]
        elif target.verified:
            earlier = self._earlier_scripts(target)
            previous = dict(earlier[-1]) if earlier else None
        return bounded_fetch(findings, target.files.manifest, files, previous, hosts,
                             target.files.files)

    def _added_dependencies(self, target: Loaded, added: dict[str, str],
                            depth: int, limits: Limits | None = None,
                            bump: str = "unknown") -> list[Finding]:
        """Dependencies new in this release: unused ones are phantom, and each (up to
        MAX_DEPENDENCY_SCANS, MAX_DEPENDENCY_DEPTH deep) is scanned, its verdict reported as a
        chain ``release → dependency@version → finding``. A malicious dependency is critical
        evidence; a merely suspicious one is medium, except that a major release importing it
        is normal evolution (node-fetch 3 took a FormData polyfill that wraps XHR): low there."""
        unused = set(unused_dependencies(added, target.files))
        out: list[Finding] = []
        if self.client is None or depth >= MAX_DEPENDENCY_DEPTH:
            return [phantom_dependency(d, added[d], False) for d in sorted(unused)]
        for n, dep in enumerate(sorted(added)):
            wanted = added[dep]
            if n >= MAX_DEPENDENCY_SCANS or spec_kind(wanted.strip()) not in (
                    "version", "range", "tag"):
                if dep in unused:
                    out.append(phantom_dependency(dep, wanted, False))
                continue
            try:
                # one at a time, each within the archive limits of the scan that asked (the
                # gate reserved memory for those)
                loaded = self.load(f"{dep}@{wanted}", None, limits)
                verdict = self.analyze(loaded, self.default_baseline(loaded, limits), depth + 1,
                                       limits)
            except ChainwatchError as exc:
                out.append(Finding(
                    rule="CW-DEP-UNSCANNED", severity=Severity.INFO, technique="dependency-chain",
                    capability="", file="package.json",
                    message=f"new dependency {dep}@{wanted} could not be scanned: {exc}"))
                if dep in unused:
                    out.append(phantom_dependency(dep, wanted, False))
                continue
            hooks = loaded.files.manifest.lifecycle_scripts
            if dep in unused:
                out.append(phantom_dependency(dep, loaded.ref.version,
                                              any(h in hooks for h in RUN_ON_INSTALL)))
            if verdict.level is Level.BENIGN or not verdict.findings:
                continue
            top = verdict.findings[0]
            chain = f"{target.ref} → {loaded.ref} → {top.rule}"
            severity = Severity.CRITICAL if verdict.level is Level.MALICIOUS else (
                Severity.LOW if bump == "major" and dep not in unused else Severity.MEDIUM)
            out.append(Finding(
                rule="CW-DEP-CHAIN",
                severity=severity,
                technique="phantom-dependency" if dep in unused else "dependency-chain",
                capability=top.capability if verdict.level is Level.MALICIOUS else "new-dependency",
                message=(f"new dependency {loaded.ref} is {verdict.level.value}: {chain}: "
                         f"{top.message}"),
                file="package.json", snippet=f"{top.file}:{top.line}: {top.snippet or ''}"[:300],
                reference=top.reference))
        return out
    def registry_twin(self, target: Loaded, packument: dict[str, Any] | None = None,
                      ) -> tuple[Loaded, str]:
        """A local tarball as the registry release it is, when its name@version exists there
        and its sha512 equals the registry's ``dist.integrity``; with why, in words.

        Unchanged (and the reason why not) when it is not a tarball, the registry cannot be
        asked (offline without the packument in the cache, unreachable), the version is
        unknown, the registry's integrity is ambiguous or not sha512, or the bytes differ. A
        tarball only *claims* its name: nothing it says is believed until the bytes match."""
        if target.origin != "tarball" or not target.integrity:
            return target, f"a local {target.origin} has no tarball integrity"
        ref = target.ref
        if name_problem(ref.name) is not None:
            return target, f"its package.json names no valid package ({ref.name!r})"
        try:
            doc = packument or self._packument(ref.name)
        except ChainwatchError as exc:
            return target, "the registry could not be asked: " + " ".join(str(exc).split())[:200]
        versions = doc.get("versions")
        meta = versions.get(ref.version) if isinstance(versions, dict) else None
        dist = meta.get("dist") if isinstance(meta, dict) else None
        theirs = dist.get("integrity") if isinstance(dist, dict) else None
        if not isinstance(theirs, str):
            return target, f"the registry has no sha512 integrity for {ref}"
        if ambiguous_integrity(theirs):
            return target, f"the registry's integrity for {ref} is ambiguous"
        expected, ours = sri_to_hex(theirs), sri_to_hex(target.integrity)
        if expected is None or expected[0] != "sha512" or expected != ours:
            return target, f"its sha512 differs from the registry's {ref}"
        note = f"its sha512 equals the registry's {ref}"
        return replace(target, release=release_from_packument(doc, ref.version), packument=doc,
                       verified=True, history_note=note), note

    def default_baseline(self, target: Loaded, limits: Limits | None = None) -> Loaded | None:
        if target.packument is None:
            return None
        base = baseline_version(target.packument, target.ref.version)
        if base is None:
            return None
        return self.load(f"{target.ref.name}@{base}", target.packument, limits)

    def _note_baseline_choice(self, spec: str, target: Loaded, baseline: Loaded | None) -> None:
        """Say on stderr why the default baseline is not the semver-previous version (the
        release before a burst), in one line."""
        if self.notice is None or baseline is None or target.packument is None:
            return
        _, why = baseline_choice_of(target.packument, target.ref.version)
        if why:
            self.notice(f"{spec}: {why}")

    # -- analysing ---------------------------------------------------------------------------
    def _scan_files(self, files: PackageFiles, paths: set[str], install_time: set[str],
                    with_manifest: bool = True) -> list[Finding]:
        """The files in ``paths``, and package.json (its parsed value) when ``with_manifest``."""
        out = self._scan_many([(f, f.path in install_time) for f in files.files
                               if f.path in paths and f.path != "package.json"])
        manifest_file = files.get("package.json")
        if manifest_file is not None and with_manifest:
            out.extend(self.engine.scan_file(manifest_file, manifest=files.manifest))
            out.extend(self.engine.scan_scripts(manifest_file, files.manifest))
        return out

    def analyze(self, target: Loaded, baseline: Loaded | None, _depth: int = 0,
                limits: Limits | None = None) -> Verdict:
        """The verdict on ``target`` against ``baseline``; ``_depth`` counts how far down a
        chain of newly added dependencies this release is (their own additions are not
        followed beyond MAX_DEPENDENCY_DEPTH)."""
        started = time.perf_counter()
        changes = file_changes(target.files, baseline.files if baseline else None)
        t_manifest = target.files.manifest
        fresh = set(changes.added) | set(changes.changed)
        t_gyp = gyp_install_commands(target.files)
        t_install = install_time_files(t_manifest, target.files.files, t_gyp.values())
        # a file that becomes entry code in this release (main now names it, an entry now
        # requires it) is judged as new code even when its bytes are unchanged
        t_reach: set[str] = set()
        b_reach: set[str] = set()
        if baseline is not None:
            t_reach = reachable_entries(t_manifest, target.files.files)
            b_reach = reachable_entries(baseline.files.manifest, baseline.files.files)
        judged = fresh | (t_reach - b_reach)
        findings = self._scan_files(target.files, judged, t_install)
        gyp_file = target.files.get("binding.gyp")
        if t_gyp and gyp_file is not None and "binding.gyp" in fresh:
            findings.extend(self.engine.scan_commands(gyp_file, t_gyp))
        capabilities_now = {f.capability for f in findings}
        capabilities_before: set[str] = set()
        if baseline is not None:
            b_manifest = baseline.files.manifest
            unchanged = {f.path for f in target.files.files} - judged
            # identical files are analysed once, for the capabilities both versions share
            shared = self._scan_files(target.files, unchanged, set(),
                                      with_manifest="package.json" in unchanged)
            old = set(changes.changed) | set(changes.removed)
            b_gyp = gyp_install_commands(baseline.files)
            before = self._scan_files(baseline.files, old, install_time_files(
                b_manifest, baseline.files.files, b_gyp.values()))
            capabilities_before = {f.capability for f in before} | {f.capability for f in shared}
            capabilities_now |= {f.capability for f in shared}
            # behaviour in entry code is preexisting only when the previous release's entry
            # code had it: a payload moved from a dormant file into an entry file is new
            entry_before = {f.capability for f in (*before, *shared) if f.file in b_reach}
            findings = [replace(f, preexisting=(
                f.capability in entry_before if f.file in t_reach and f.capability in BEHAVIOUR
                else f.capability in capabilities_before)) for f in findings]
            findings.extend(injected_concealment(
                findings, before, changes.changed,
                entry_points(t_manifest, [f.path for f in target.files.files]), t_install,
                bump_kind(baseline.ref.version, target.ref.version)))
        findings.extend(target.files.findings)
        if t_manifest.problems:
            findings.append(Finding(
                rule="CW-MANIFEST-FIELD-TYPE", severity=Severity.INFO,
                technique="manifest-anomaly", capability="manifest-anomaly",
                message="package.json fields of the wrong type, read as absent (as npm does): "
                        + "; ".join(t_manifest.problems), file="package.json"))
        dynamic = None
        if self.sandbox:
            from chainwatch.sandbox import run_dynamic

            outcome = run_dynamic(target.files, target.ref)
            dynamic = outcome.dynamic
            findings.extend(outcome.findings)
        for advisory in self.known_bad.lookup(target.ref.name, target.ref.version):
            if advisory.source == VERDICT_SOURCE:
                continue  # our own earlier verdict is no evidence: the bytes are judged again
            findings.append(Finding(
                rule="CW-KNOWN-BAD", severity=Severity.CRITICAL, technique="known-bad",
                capability="known-bad",
                message=f"listed as malicious by {advisory.id} ({advisory.source}): "
                        f"{advisory.summary}" + (f" ({target.gone})" if target.gone else ""),
                reference=advisory.references[0] if advisory.references else None))
        if target.integrity_error:
            findings.append(Finding(
                rule="CW-INTEGRITY-MISMATCH", severity=Severity.CRITICAL, technique="tampering",
                capability="integrity",
                message=f"tarball bytes do not match the registry's checksum: "
                        f"{target.integrity_error}",
                reference="https://docs.npmjs.com/cli/configuring-npm/package-lock-json"))
        signals = metadata_signals(
            target.packument, target.release, baseline.release if baseline else None,
            t_manifest)
        if target.release is None and baseline is None:
            signals.extend(name_signals(target.ref.name, target.ref.version, 1))
        added_caps = tuple(sorted(capabilities_now - capabilities_before)) if baseline else ()
        removed_caps = tuple(sorted(capabilities_before - capabilities_now)) if baseline else ()
        deps_added, deps_removed, scripts_added, scripts_changed = manifest_changes(
            target.files, baseline.files if baseline else None)
        if baseline is not None and deps_added and target.release is not None and not _depth:
            signals.extend(young_dependencies(
                deps_added, self._created(deps_added), target.release.published))
        bump = bump_kind(baseline.ref.version, target.ref.version) if baseline else "unknown"
        if not _depth:
            signals.extend(self._provenance_drift(target))
        if baseline is not None:
            findings.extend(new_install_script(
                t_manifest, target.files.files,
                [baseline.files.manifest.lifecycle_scripts, *self._earlier_scripts(target)],
                t_gyp, bool(gyp_install_commands(baseline.files))))
            findings.extend(entry_payload(
                findings, judged,
                entry_points(t_manifest, [f.path for f in target.files.files]) | t_reach, bump))
            if deps_added:
                findings.extend(self._added_dependencies(target, deps_added, _depth, limits,
                                                         bump))
        code_files = sum(1 for f in target.files.files if f.path.lower().endswith(CODE_EXT))
        if target.history_note and baseline is not None:
            findings.append(Finding(
                rule="CW-REGISTRY-HISTORY", severity=Severity.INFO, technique="baseline",
                capability="", file="package.json",
                message=f"judged against its registry history ({baseline.ref}): "
                        f"{target.history_note}"))
        findings = self._install_profile(findings, target, baseline, t_install, fresh)
        prior = established(target.ref.name, target.ref.version,
                            t_manifest.lifecycle_scripts, target.packument,
                            target.verified and not target.integrity_error) \
            if baseline is None else None
        scored = score([*findings, *signals], added_caps, bump,
                       small_package=code_files <= SMALL_PACKAGE_FILES,
                       standalone=baseline is None, established=prior is not None)
        if prior is not None:
            scored = replace(scored, explanation=f"{scored.explanation} ({prior})")
        ordered = sorted(findings, key=evidence_order)
        prints, iocs = (payload(findings, target.files, baseline.files if baseline else None)
                        if scored.level is not Level.BENIGN else ((), {}))
        return Verdict(
            target=target.ref,
            level=scored.level,
            score=scored.score,
            explanation=scored.explanation,
            findings=tuple(ordered),
            capabilities=tuple(sorted(c for c in capabilities_now if c)),
            baseline=baseline.ref if baseline else None,
            changes=Changes(changes, deps_added, deps_removed, scripts_added, scripts_changed,
                            added_caps, removed_caps) if baseline else None,
            metadata_signals=tuple(signals),
            source=target.files.source,
            integrity=_integrity(target),
            elapsed_s=time.perf_counter() - started,
            bytes_scanned=sum(len(f.data) for f in target.files.files if f.path in fresh),
            publisher=target.release.publisher if target.release else None,
            published=target.release.published if target.release else None,
            fingerprints=prints,
            indicators=iocs,
            origin=target.origin,
            content_digest=target.content_digest,
            dynamic=dynamic,
        )

    def scan(self, spec: str, against: str | None = None,
             packument: dict[str, Any] | None = None, limits: Limits | None = None) -> Verdict:
        """``limits`` bound what each archive (target and baseline) may unpack to: the gate
        sets them to what it reserved of its memory budget for this scan."""
        target = self.load(spec, packument, limits)
        if against is None and target.origin == "tarball":
            # a local tarball that is byte for byte a registry release is judged as that
            # release: against its registry history; otherwise (or when that history cannot
            # be read) alone, and we say why
            twin, why = self.registry_twin(target, packument)
            baseline = None
            if twin.verified:
                try:
                    baseline = self.default_baseline(twin, limits)
                    target = twin
                    self._note_baseline_choice(spec, target, baseline)
                    if baseline is None:
                        why += ", and no earlier release to compare with"
                except ChainwatchError as exc:
                    why = "its baseline could not be read: " + " ".join(str(exc).split())[:200]
                    target = replace(twin, history_note=None)
            # said when it matters: the history was used, or the registry has a release of
            # that name@version and these bytes are not it (not for every private tarball)
            claims_release = why.startswith(("its sha512", "the registry's integrity"))
            if self.notice is not None and (baseline is not None or claims_release):
                self.notice(f"{spec}: judged against its registry history ({baseline.ref}): "
                            f"{why}" if baseline is not None else
                            f"{spec}: judged alone, without a baseline ({why})")
        elif against is None:
            # a registry release defaults to its previous version; a folder is compared with
            # nothing unless --against names a baseline
            is_local = Path(spec).exists()
            baseline = None if is_local else self.default_baseline(target, limits)
            self._note_baseline_choice(spec, target, baseline)
        elif against.lower() == "none":
            baseline = None
        else:
            baseline = self.load(against, packument if "@" in against[1:] else None, limits)
            if (problem := _same_release(target, baseline)) is not None:
                raise UsageError(f"{spec}: --against {against} {problem}: a release judged "
                                 "against itself says nothing (leave --against out to judge "
                                 "it against its registry history)")
            if self.notice is not None and baseline.ref.name != target.ref.name:
                self.notice(f"{spec}: --against {against} is another package "
                            f"({baseline.ref.name}, not {target.ref.name}): what changed is measured "
                            "between two different packages")
        verdict = self.analyze(target, baseline, limits=limits)
        # a baseline the user chose: the verdict never replaces what verdict memory says
        return replace(verdict, baseline_chosen=True) if against is not None else verdict


def _same_release(target: Loaded, baseline: Loaded) -> str | None:
    """Why ``baseline`` is the very release ``target`` is (the same bytes, or the same
    registry name@version), or None."""
    mine, theirs = _integrity(target), _integrity(baseline)
    digest = sri_to_hex(mine) if mine else None
    if digest is not None and theirs and sri_to_hex(theirs) == digest:
        return "is the same bytes"
    if target.content_digest and target.content_digest == baseline.content_digest:
        return "is the same files"
    if (target.origin == baseline.origin == "registry"
            and target.ref.name == baseline.ref.name
            and target.ref.version == baseline.ref.version):
        return f"is the same release ({target.ref})"
    return None


def scan_snippet_files(files: dict[str, str | bytes]) -> PackageFiles:
    """Build an in-memory package from a mapping of paths to contents (tests, replicas)."""
    return PackageFiles("<memory>", tuple(
        PackageFile(p, c.encode() if isinstance(c, str) else c) for p, c in files.items()))
