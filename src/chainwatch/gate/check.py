"""The CI gate: every resolved version in the lockfiles found, judged against the policy."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from chainwatch.analysis.detectors import INSTALL_HOOKS
from chainwatch.analysis.metadata import metadata_signals, parse_time
from chainwatch.errors import (
    ChainwatchError,
    OfflineMissError,
    RegistryError,
    RegistryServerError,
)
from chainwatch.gate.environments import is_local, off_registry_source, registry_hosts
from chainwatch.gate.instead import satisfies_all, wanted_by
from chainwatch.gate.policy import Policy
from chainwatch.intel.base import VERDICT_SOURCE, KnownBadSource
from chainwatch.intel.views import package_view, package_views
from chainwatch.model import Environment, InstalledPackage, Level, Release
from chainwatch.output.escape import plain as plain_text
from chainwatch.packument import (
    release_from_packument,
    slim_packument,
)
from chainwatch.registry.client import RegistryClient
from chainwatch.specs import off_registry_dependencies
from chainwatch.versions import parse, previous_versions, settled_baseline, sort_versions

if TYPE_CHECKING:  # a run that scans nothing imports no scanner and no database code
    from chainwatch.gate.scanning import ScanGate

TRUST_RULES = {"CW-META-PROVENANCE-LOST", "CW-META-TRUSTED-PUBLISHING-LOST"}
#: rules about a fresh compromise: they judge releases published within the policy's scan window
#: only (older versions are judged by the known-bad lists and stored verdicts)
FRESH_RULES = {"new-install-script", "trust-downgrade", "publisher-change"}
#: how long the proxy reuses one package's view of the known-bad store (as verdicts:
#: scanning.SNAPSHOT_SECONDS); a write through the same process is seen at once
VIEW_SECONDS = 5.0
RUN_AT_INSTALL = tuple(h for h in INSTALL_HOOKS if h in ("preinstall", "install", "postinstall"))


#: the start of the reason of a ``registry`` decision made because the registry could not be
#: asked (the table output folds these into one line)
UNAVAILABLE = "registry metadata unavailable: "


@dataclass(frozen=True)
class Decision:
    name: str
    version: str
    action: str  # block | warn | allow (a policy exception applied)
    rule: str
    reason: str
    suggestion: str | None = None
    #: about the suggestion: a major change, or which dependent must change when none fits
    note: str | None = None


@dataclass(frozen=True)
class Placed:
    """A decision where it applies: which lockfile, dev or not, through which path."""

    decision: Decision
    source: str
    dev: bool
    path: tuple[str, ...]


class Checker:
    def __init__(self, policy: Policy, client: RegistryClient | None,
                 known_bad: KnownBadSource, now: datetime | None = None,
                 scans: ScanGate | None = None) -> None:
        self.policy = policy
        self.client = client
        self.known_bad = known_bad
        #: scan verdicts (cached by integrity, scanned on demand); None switches the rule off
        self.scans = scans
        self._fixed_now = now
        self._packuments: dict[str, dict[str, Any] | ChainwatchError] = {}
        #: the known-bad store read once for a whole run (``check``), by package
        self._views: dict[str, Any] = {}
        #: a ``check`` run: packuments are held until it ends (see ``_previous``)
        self._hold_documents = False
        #: previous_versions per packument document (see ``_previous``)
        self._previous_memo: dict[int, tuple[dict[str, Any], dict[str, str | None]]] = {}
        #: views read for one package (proxy): (time.monotonic(), store generation, view)
        self._view_cache: dict[str, tuple[float, Any, Any]] = {}
        #: packages asked for again because a fresh cached copy lacked a version
        self._revalidated: set[str] = set()
        #: packages judged on a stale cached packument because the registry failed, and why
        self._stale_reason: dict[str, str] = {}
        #: per release: its publish time and the rules that never change for it
        self._static: dict[tuple[str, str, Any, str | None],
                           tuple[datetime | None, list[tuple[str, str, str, bool]]]] = {}
        self._lock = threading.Lock()
        #: the first transport failure (after the client's retries): every later lookup fails at
        #: once with it, so an unreachable registry costs one timeout, not one per package
        self._down: ChainwatchError | None = None
        #: held by the first request to the registry: until it has answered (or failed) no
        #: other starts, so a registry that is down is found once, not by every worker at once
        self._first = threading.Lock()
        self._answered = False
        #: time.monotonic() after which no new lookup starts (check --timeout)
        self._deadline: float | None = None

    @property
    def now(self) -> datetime:
        """The clock the age rules read: fixed when given (tests, replays), else the real one,
        so a long-running proxy lets a version through once it is old enough."""
        return self._fixed_now or datetime.now(UTC)

    def _packument(self, name: str, revalidate: bool = False) -> dict[str, Any]:
        """The slim packument of ``name``, read once per checker. ``revalidate`` asks the
        registry again even when the cached copy is fresh (once per package): a version the
        fresh copy does not list may have been published since."""
        with self._lock:
            cached = self._packuments.get(name)
            if revalidate and name not in self._revalidated and not isinstance(
                    cached, ChainwatchError) and name not in self._stale_reason:
                self._revalidated.add(name)
                cached = None
            else:
                revalidate = False
        if cached is None:
            if self.client is None:
                raise ChainwatchError("no registry client")
            if self._down is not None:
                cached = self._stale(name, ChainwatchError(
                    f"registry unreachable (an earlier request failed: {self._down})"[:300]))
            elif self._deadline is not None and time.monotonic() > self._deadline:
                cached = ChainwatchError("not asked: the time limit (--timeout) ran out")
            else:
                cached = self._ask(name, revalidate)
            with self._lock:
                self._packuments[name] = cached
        if isinstance(cached, ChainwatchError):
            raise cached
        return cached

    def _ask(self, name: str, revalidate: bool) -> dict[str, Any] | ChainwatchError:
        """Ask the registry for ``name``. The first request goes alone (the others wait for
        it): when it finds the registry unreachable or failing (5xx after the client's
        retries), every other lookup fails at once with that, instead of each worker waiting
        through its own retries."""
        if not self._answered:
            with self._first:
                if not self._answered:
                    try:
                        return self._ask_now(name, revalidate)
                    finally:
                        self._answered = True
        if self._down is not None:
            return self._stale(name, ChainwatchError(
                f"registry unreachable (an earlier request failed: {self._down})"[:300]))
        return self._ask_now(name, revalidate)

    def _ask_now(self, name: str, revalidate: bool) -> dict[str, Any] | ChainwatchError:
        assert self.client is not None
        try:
            slim = getattr(self.client, "slim_packument", None)  # test doubles lack it
            return (slim(name, revalidate) if slim is not None
                    else slim_packument(self.client.packument(name)))
        except ChainwatchError as exc:
            import httpx  # loaded by the client that sent the request (none: a cache hit)

            if isinstance(exc.__cause__, httpx.TransportError) or isinstance(
                    exc, RegistryServerError):
                self._down = self._down or exc
            return (self._stale(name, exc) if isinstance(exc, RegistryError)
                    and not isinstance(exc, OfflineMissError) else exc)

    def _stale(self, name: str, exc: ChainwatchError) -> dict[str, Any] | ChainwatchError:
        """The registry could not be asked: the packument cached earlier, whatever its age,
        so that every rule still judges from what the registry last said (a version's publish
        time, scripts and trust never change); ``evaluate`` adds the ``registry`` rule with the
        policy's ``offline`` action, so this never passes a version that the same failure
        without a cache would have blocked. Without a cached copy: the error."""
        assert self.client is not None
        ask = getattr(self.client, "cached_packument", None)
        try:
            found = ask(name) if ask is not None else None
        except OSError:
            found = None
        if found is None:
            return exc
        doc, age = found
        when = f"{_ago(timedelta(seconds=age))} ago" if age is not None else "at an unknown time"
        with self._lock:
            self._stale_reason[name] = (f"registry unreachable, judged on its packument cached "
                                        f"{when}: {exc}")[:300]
        return slim_packument(doc)

    def evaluate(self, name: str, version: str) -> list[Decision]:
        doc: dict[str, Any] | None = None
        problems: list[tuple[str, str, str]] = []
        if self.policy.exception_for(name, version) is not None:
            return [Decision(name, version, a, r, why)
                    for a, r, why in self.decide(name, version, None)]
        if self._needs_registry():
            try:
                doc = self._packument(name)
            except ChainwatchError as exc:
                # age, scripts, trust and scan could not be judged: policy offline (--strict)
                problems.append((self.policy.offline, "registry",
                                 f"{UNAVAILABLE}{exc}"))
            with self._lock:
                stale = self._stale_reason.get(name)
            if stale is not None:  # judged on an old copy: the policy's offline action too
                problems.append((self.policy.offline, "registry", stale))
        if doc is not None and version not in (doc.get("versions") or {}):
            # a fresh cached copy predates a version published since: ask before saying so
            try:
                doc = self._packument(name, revalidate=True)
            except ChainwatchError as exc:
                problems.append((self.policy.offline, "registry",
                                 f"{UNAVAILABLE}{exc}"))
                doc = None
        if doc is not None and version not in (doc.get("versions") or {}):
            problems.append((self.policy.offline, "registry",
                             "version not in the registry (unpublished?)"))
        decided = self.decide(name, version, doc, scan=True)
        if any(rule == "known-bad" and action == "block" for action, rule, _ in decided):
            # a blocked known-bad version needs no word about the registry's metadata (such a
            # version is often unpublished: that is the known-bad list's business)
            problems = []
        return [Decision(name, version, action, rule, reason,
                         self.suggest(name, version, doc) if action == "block" and doc else None)
                for action, rule, reason in [*decided, *problems]]

    def _needs_registry(self) -> bool:
        p = self.policy
        scan_actions = (p.scan_malicious, p.scan_suspicious) if self.scans else ()
        return any(a != "off" for a in (p.min_age, p.install_scripts, p.new_install_script,
                                        p.trust_downgrade, p.publisher_change,
                                        p.remote_dependency, *scan_actions))

    def decide(self, name: str, version: str, doc: dict[str, Any] | None,
               scan: bool = False) -> list[tuple[str, str, str]]:
        """Every rule that fires for this version, after exceptions: (action, rule, reason).

        With ``scan``, a release within the scan window that has no stored verdict is scanned
        now; otherwise only stored verdicts count (cheap enough for every version of a
        packument).
        """
        return self.decide_all(name, [version], doc, scan)[version]

    def decide_all(self, name: str, versions: Iterable[str], doc: dict[str, Any] | None,
                   scan: bool = False) -> dict[str, list[tuple[str, str, str]]]:
        """``decide`` for many versions of one package, reading the known-bad store once."""
        versions = list(versions)
        view = None
        if self.policy.known_bad != "off":
            view = self._view(name)
        out: dict[str, list[tuple[str, str, str]]] = {}
        listed = doc.get("versions") or {} if doc is not None else {}
        times = doc.get("time") if doc is not None and isinstance(doc.get("time"), dict) else {}
        assert isinstance(times, dict)
        previous = self._previous(doc) if doc is not None and listed else {}

        def published(v: str) -> datetime | None:
            return parse_time(times.get(v))

        bases = {v: settled_baseline(previous, published, v) for v in versions if v in listed}
        for version in versions:
            found: list[tuple[str, str, str]] = []
            out[version] = found
            if (excepted := self.policy.exception_for(name, version)) is not None:
                # shown in every output with its reason; no rule is applied to it
                found.append(("allow", "exception",
                              f"policy exception {excepted.package}@{excepted.range} until "
                              f"{excepted.expires.isoformat()}: {excepted.reason}"[:400]))
                continue
            advisories = list(view.lookup(version)) if view is not None else []
            # a list's own advisory says more than chainwatch's memory of having scanned it
            if any(a.source != VERDICT_SOURCE for a in advisories):
                advisories = [a for a in advisories if a.source != VERDICT_SOURCE]
            for advisory in advisories:
                found.append((self.policy.known_bad, "known-bad",
                              f"listed by {advisory.id}: {_clip(advisory.summary, 400)}"))
            if doc is not None and version in listed:
                found.extend(self._metadata_rules(doc, name, version, bases.get(version)))
                found.extend(self._scan_rules(doc, name, version, scan))
        return out

    def _scan_rules(self, doc: dict[str, Any], name: str, version: str,
                    scan: bool) -> Iterable[tuple[str, str, str]]:
        p = self.policy
        if self.scans is None or (p.scan_malicious == "off" and p.scan_suspicious == "off"):
            return
        try:
            stored = (self.scans.verdict(name, version, doc, self.now) if scan else
                      self.scans.cached(name, version, _integrity(doc, version)))
        except Exception as exc:  # fail closed: a release that cannot be judged is not passed
            reason = str(exc) if isinstance(exc, ChainwatchError) else f"{type(exc).__name__}: {exc}"
            yield (p.scan_on_error, "scan-error", f"could not be scanned: {reason}"[:400])
            return
        if stored is None:
            return
        action = {Level.MALICIOUS: p.scan_malicious,
                  Level.SUSPICIOUS: p.scan_suspicious}.get(stored.level, "off")
        if action != "off":
            yield (action, f"scan-{stored.level.value}",
                   f"chainwatch scan against {stored.baseline or 'no baseline'}: "
                   f"{stored.summary}"[:400])

    def _metadata_rules(self, doc: dict[str, Any], name: str, version: str,
                        base_version: str | None) -> Iterable[tuple[str, str, str]]:
        p = self.policy
        dist = _dist(doc, version)
        key = (name, version, dist.get("integrity") or dist.get("tarball"), base_version)
        with self._lock:
            memo = self._static.get(key)
        if memo is None:
            release = release_from_packument(doc, version)
            memo = (parse_time(release.published),
                    list(self._static_rules(doc, name, release, base_version)))
            with self._lock:
                if len(self._static) > 200_000:
                    self._static.clear()
                self._static[key] = memo
        published, static = memo
        now = self.now
        if p.min_age != "off" and not p.age_exempt(name):
            if published is None and p.min_age_duration > timedelta(0):
                # fail closed: a registry that leaves out the time (or a hostile mirror that
                # strips it) must not make a version old enough (with no minimum, any age is)
                yield (p.min_age, "min-age", "the registry gives no publish time for this "
                       f"version, so its age cannot be judged; the policy wants "
                       f"{_ago(p.min_age_duration)}")
            elif published is not None and (age := now - published) < p.min_age_duration:
                yield (p.min_age, "min-age",
                       f"published {_ago(age)} ago; the policy wants {_ago(p.min_age_duration)}")
        # an unknown publish time counts as fresh (fail closed)
        fresh = published is None or now - published <= p.scan_window
        for action, rule, reason, when_fresh in static:
            if when_fresh == fresh:
                yield (action, rule, reason)

    def _static_rules(self, doc: dict[str, Any], name: str, release: Release,
                      base_version: str | None) -> Iterable[tuple[str, str, str, bool]]:
        """The rules that depend only on a release and the ones before it (never on the clock
        or on the databases), kept per release so a big packument is judged quickly.

        Each comes with the freshness it applies at: True for a release inside the scan window
        (every rule; FRESH_RULES only there), False for an older one (an install script is
        then reported by the plain ``install-scripts`` rule, never as "new")."""
        p = self.policy
        hooks = {h: c for h, c in release.scripts.items() if h in RUN_AT_INSTALL}
        base = release_from_packument(doc, base_version) if base_version else None
        listed = ', '.join(f'{h}: {c}' for h, c in hooks.items())[:200]
        plain_rule = (p.install_scripts, "install-scripts", f"runs {listed} at install")
        plain = bool(hooks) and p.install_scripts != "off" and not p.allowed_scripts(name)
        if hooks and p.new_install_script != "off" and base is not None and not any(
                h in RUN_AT_INSTALL for h in base.scripts):
            yield (p.new_install_script, "new-install-script",
                   f"{listed} is new since {base.ref.version}", True)
            if plain:
                yield (*plain_rule, False)
        elif plain:
            yield (*plain_rule, True)
            yield (*plain_rule, False)
        if p.remote_dependency != "off":
            remote = off_registry_dependencies(release.manifest)
            if remote:
                where = ", ".join(f"{n} from {w}" for n, w in sorted(remote.items())[:5])
                rule = (p.remote_dependency, "remote-dependency",
                        f"depends on packages npm fetches around the registry (and so around "
                        f"chainwatch): {plain_text(where)}"[:400])
                yield (*rule, True)  # whatever the release's age: npm fetches it unjudged
                yield (*rule, False)
        if p.trust_downgrade != "off" or p.publisher_change != "off":
            for signal in metadata_signals(doc, release, base, None, names=False):
                if signal.rule in TRUST_RULES and p.trust_downgrade != "off":
                    yield (p.trust_downgrade, "trust-downgrade", signal.message, True)
                elif signal.rule == "CW-META-NEW-PUBLISHER" and p.publisher_change != "off":
                    yield (p.publisher_change, "publisher-change", signal.message, True)

    def suggest(self, name: str, version: str, doc: dict[str, Any],
                allowed: Callable[[str], bool] | None = None) -> str | None:
        """The newest stable version the whole policy lets through (up to 30 are tried),
        among those ``allowed`` (what the dependents' ranges accept) when given.

        A candidate within the scan window is scanned too: suggesting an unscanned release
        could send a team from one compromised version to the next.
        """
        latest = (doc.get("dist-tags") or {}).get("latest")
        top = parse(latest) if isinstance(latest, str) else None
        tried = 0
        for candidate in reversed(sort_versions(doc.get("versions") or {})):
            parsed = parse(candidate)
            if (parsed is None or parsed.prerelease or candidate == version
                    or (top is not None and parsed > top)
                    or (doc["versions"][candidate] or {}).get("deprecated")
                    or (allowed is not None and not allowed(candidate))):
                continue
            tried += 1
            if tried > 30:
                return None
            if not any(action == "block"
                       for action, _, _ in self.decide(name, candidate, doc, scan=True)):
                return candidate
        return None

    def evaluate_safely(self, name: str, version: str) -> list[Decision]:
        """``evaluate``, with any error turned into a blocking decision that says why (a gate
        that cannot decide does not pass a version)."""
        try:
            return self.evaluate(name, version)
        except Exception as exc:
            return [Decision(name, version, "block", "gate-error",
                             f"chainwatch could not decide: {type(exc).__name__}: {exc}"[:400])]

    def judge_locally(self, name: str, version: str) -> list[Decision]:
        """A project's own package (file:, link:, workspace:, portal:): the known-bad lists and
        exceptions apply, nothing is asked of the registry."""
        try:
            found = self.decide(name, version, None)
        except Exception as exc:
            found = [("block", "gate-error", f"chainwatch could not decide: {exc}"[:400])]
        return [Decision(name, version, a, r, why) for a, r, why in found]

    def judge_source(self, name: str, version: str, where: str) -> list[Decision]:
        """A package installed from somewhere other than the registry (``where``, redacted):
        the ``remote-dependency`` rule, the known-bad lists and exceptions; its name is never
        sent to the registry, whose release of that name is not what was installed."""
        found = self.judge_locally(name, version)
        if any(d.rule == "exception" for d in found):
            return found
        if self.policy.remote_dependency != "off":
            found.append(Decision(
                name, version, self.policy.remote_dependency, "remote-dependency",
                f"installed from {plain_text(where)}, not from the registry: npm fetches it "
                f"around the registry (and so around chainwatch)"[:400]))
        return found

    def _registry_hosts(self) -> frozenset[str]:
        """Hosts whose tarballs are registry releases: the public registry's and the
        configured ones (``registry`` and scoped registries)."""
        config = getattr(self.client, "config", None)
        configured = [getattr(config, "registry", None),
                      *(getattr(config, "scoped", None) or {}).values()]
        return registry_hosts(r for r in configured if isinstance(r, str))

    def unjudged(self, name: str, version: str, seconds: float) -> list[Decision]:
        """What a version gets when the time limit ran out before it was judged: the local
        known-bad lists still apply; the rest is the policy's ``offline`` action."""
        return [*self.judge_locally(name, version),
            Decision(name, version, self.policy.offline, "timeout",
                     f"not judged within the time limit of {seconds:g} s")]

    def check(self, envs: list[Environment], jobs: int = 8, timeout: float | None = None,
              progress: Callable[[int, int], None] | None = None) -> list[Placed]:
        """Judge every exact version once. With ``timeout`` (seconds) the run ends on time:
        versions not judged by then are reported by ``unjudged``. Workers are daemon threads,
        so a lookup hanging on a silent registry cannot hold the process open."""
        hosts = self._registry_hosts()
        # installed from a URL, git or a folder outside the project: those bytes are judged
        # (remote-dependency, known-bad, exceptions), never the registry's same-named release
        sources = {(p.name, p.version, p.resolved): where for e in envs for p in e.packages
                   if (where := off_registry_source(p, hosts)) is not None}
        offsite = {(n, v) for n, v, _ in sources}
        unique = sorted({(p.name, p.version) for e in envs for p in e.packages
                         if p.exact or (p.name, p.version) in offsite})
        # judged by the local lists only (known-bad, exceptions): never looked up in the registry
        remote = {(p.name, p.version) for e in envs for p in e.packages
                  if p.exact and not is_local(p)
                  and (p.name, p.version, p.resolved) not in sources}
        local = {nv for nv in unique if nv not in remote}
        self._preload({n for n, _ in unique}, timeout or 120.0)
        self._hold_documents = True
        start = time.monotonic()
        if timeout is not None:
            self._deadline = start + timeout
        todo: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        for nv in unique:
            todo.put(nv)
        done: queue.SimpleQueue[tuple[tuple[str, str], list[Decision]]] = queue.SimpleQueue()

        def work() -> None:
            while True:
                try:
                    nv = todo.get_nowait()
                except queue.Empty:
                    return
                done.put((nv, self.judge_locally(*nv) if nv in local
                          else self.evaluate_safely(*nv)))

        for i in range(min(jobs, len(unique))):
            threading.Thread(target=work, name=f"chainwatch-check-{i}", daemon=True).start()
        results: dict[tuple[str, str], list[Decision]] = {}
        while len(results) < len(unique):
            wait = None if self._deadline is None else self._deadline - time.monotonic()
            if wait is not None and wait <= 0:
                break
            try:
                nv, decisions = done.get(timeout=min(wait, 0.5) if wait is not None else 0.5)
            except queue.Empty:
                continue
            results[nv] = decisions
            if progress is not None:
                progress(len(results), len(unique))
        for nv in unique:
            if nv not in results:
                results[nv] = self.unjudged(*nv, timeout or 0)
        placed: list[Placed] = []
        for env in envs:
            reported: set[tuple[str, str, str, str]] = set()
            for package in env.packages:
                where = sources.get((package.name, package.version, package.resolved))
                found = (results.get((package.name, package.version), []) if where is None
                         else self.judge_source(package.name, package.version, where))
                for decision in found:
                    key = (decision.name, decision.version, decision.rule, decision.action)
                    if key in reported:  # one decision per version per environment
                        continue
                    reported.add(key)
                    if decision.suggestion is not None or decision.action == "block":
                        decision = self.instead(env, package, decision)
                    placed.append(Placed(decision, env.source, package.dev,
                                         package.paths[0] if package.paths else ()))
        return placed

    def _previous(self, doc: dict[str, Any]) -> dict[str, str | None]:
        """``previous_versions`` of a packument, sorted once per document (not once per
        version judged and per suggestion tried) during a ``check`` run, which holds every
        packument it read anyway; the document is held with its result, so its id cannot be
        reused for another. The proxy sorts each time: it must not hold documents its cache
        let go of."""
        if not self._hold_documents:
            return previous_versions(doc.get("versions") or {})
        with self._lock:
            held = self._previous_memo.get(id(doc))
        if held is not None and held[0] is doc:
            return held[1]
        previous = previous_versions(doc.get("versions") or {})
        with self._lock:
            if len(self._previous_memo) >= 4096:
                self._previous_memo.clear()
            self._previous_memo[id(doc)] = (doc, previous)
        return previous

    def _view(self, name: str) -> Any:
        """The known-bad store's view of one package: read once per ``check`` run, else kept
        VIEW_SECONDS (a proxy judges a packument on every request) and dropped at once when
        the store says it changed (a write through this process). A source that cannot say
        whether it changed is read every time."""
        if (view := self._views.get(name)) is not None:
            return view
        generation = getattr(self.known_bad, "generation", None)
        now = time.monotonic()
        with self._lock:
            held = self._view_cache.get(name)
        if (held is not None and generation is not None and held[1] == generation
                and now - held[0] < VIEW_SECONDS):
            return held[2]
        view = package_view(self.known_bad, name)
        if generation is not None:
            with self._lock:
                if len(self._view_cache) >= 10_000:
                    self._view_cache.clear()
                self._view_cache[name] = (now, generation, view)
        return view

    def _preload(self, names: set[str], seconds: float) -> None:
        """The databases read in a few queries for all packages at once (one query per
        package and table cost seconds on a lockfile of a thousand); a failure here only
        leaves each package to be read on its own, where it fails closed as before."""
        try:
            if self.policy.known_bad != "off":
                self._views = package_views(self.known_bad, names)
            if self.scans is not None:
                self.scans.preload(names, seconds)
        except Exception:  # read again per package, where an error is a decision
            self._views = {}

    def instead(self, env: Environment, package: InstalledPackage,
                decision: Decision) -> Decision:
        """The suggestion for this environment: one its dependents accept, or the parents that
        must change; a change of major version is always said."""
        if decision.action != "block" or decision.suggestion is None:
            return decision
        try:
            doc = self._packument(decision.name)
            wanted = wanted_by(env, package, self._packument)
            ranged = [w for w in wanted if w.range is not None]
            fits = self.suggest(decision.name, decision.version, doc,
                                lambda v: satisfies_all(v, ranged)) if ranged else (
                decision.suggestion)
        except Exception:  # fall back to the unconstrained suggestion, said to be so
            return replace(decision, note="could not read what its dependents allow")
        if fits is None:
            parents = ", ".join(f"{w.parent} ({w.range})" for w in ranged
                                if not satisfies_all(decision.suggestion, [w]))
            return replace(decision, suggestion=None,
                           note=f"no allowed version satisfies what depends on it; "
                                f"{parents or 'its dependents'} must change "
                                f"(e.g. to allow {decision.suggestion})"[:400])
        old, new = parse(decision.version), parse(fits)
        note = (f"major change from {decision.version}: check that every dependent accepts it"
                if old is not None and new is not None and old.major != new.major else None)
        return replace(decision, suggestion=fits, note=note)


def _dist(doc: dict[str, Any], version: str) -> dict[str, Any]:
    """The ``dist`` object of one version, read directly (no Release built: this runs for
    every version of a packument on every proxy request)."""
    data = (doc.get("versions") or {}).get(version)
    dist = data.get("dist") if isinstance(data, dict) else None
    return dist if isinstance(dist, dict) else {}


def _integrity(doc: dict[str, Any], version: str) -> str | None:
    value = _dist(doc, version).get("integrity")
    return value if isinstance(value, str) else None


def _ago(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def _clip(text: str, limit: int) -> str:
    """``text`` on one line, cut at a word boundary with ``…`` when longer than ``limit``."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:") + "…"
