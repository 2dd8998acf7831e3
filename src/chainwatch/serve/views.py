"""Stored documents turned into what a page shows: plain strings and numbers, bounded in size.

A ``chainwatch.scan/1`` document or an alert payload comes out of the database, and what is in
it was written by a package author (names, paths, snippets, messages) or by whoever could write
to the database. Nothing here trusts its shape: a missing key, a wrong type or a list of a
million entries gives a page that says less, never a traceback or a page that never ends.
Escaping is the template's job (Jinja2 autoescape); :func:`text` only makes the characters
visible (bidi overrides and invisible characters become U+FFFD, like the terminal output).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from chainwatch.output.escape import plain

#: at most this many entries of any one list are shown (the rest are counted)
MAX_ITEMS = 200
#: at most this many characters of any one value
MAX_TEXT = 2000
MAX_SNIPPET = 4000


def text(value: Any, limit: int = MAX_TEXT) -> str:
    """Any value as visible text: controls and bidi overrides replaced, length bounded."""
    if value is None:
        return ""
    if not isinstance(value, str):
        value = str(value) if isinstance(value, int | float | bool) else ""
    value = value[: limit * 2]  # plain() is linear, but do not feed it a megabyte
    shown = plain(value)
    return shown if len(shown) <= limit else shown[:limit] + " …"


def link_path(*parts: str) -> str:
    """A same-origin path with every part percent-encoded: an author's name can never become
    a scheme (``javascript:``), a query or another path."""
    return "/" + "/".join(quote(p, safe="@") for p in parts)


def http_url(value: Any) -> str | None:
    """``value`` when it is an absolute http(s) URL, else None (never a javascript: link)."""
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        return None
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    if any(c in value for c in "\x00\r\n\t\\ ") or plain(value) != value:
        return None
    return value.strip()


def when(epoch: Any) -> str:
    if not isinstance(epoch, int | float):
        return text(epoch)
    try:
        return datetime.fromtimestamp(float(epoch), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return "unknown"


def _list(value: Any) -> list[Any]:
    return value[:MAX_ITEMS] if isinstance(value, list) else []


def _more(value: Any) -> int:
    return max(len(value) - MAX_ITEMS, 0) if isinstance(value, list) else 0


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _pairs(value: Any) -> list[tuple[str, str]]:
    """A name → spec mapping (dependencies, scripts) or a list of names, as pairs."""
    if isinstance(value, Mapping):
        return [(text(k, 300), text(v)) for k, v in list(value.items())[:MAX_ITEMS]]
    return [(text(v, 300), "") for v in _list(value)]


@dataclass(frozen=True)
class FindingView:
    rule: str
    severity: str
    message: str
    file: str
    line: str
    snippet: str
    technique: str
    capability: str
    reference: str | None
    install_time: bool
    preexisting: bool


def finding(value: Any) -> FindingView:
    f = _mapping(value)
    line = f.get("line")
    return FindingView(
        rule=text(f.get("rule"), 200), severity=text(f.get("severity"), 40),
        message=text(f.get("message")), file=text(f.get("file"), 1000),
        line=str(line) if isinstance(line, int) and not isinstance(line, bool) else "",
        snippet=text(f.get("snippet"), MAX_SNIPPET), technique=text(f.get("technique"), 200),
        capability=text(f.get("capability"), 200), reference=http_url(f.get("reference")),
        install_time=f.get("install_time") is True, preexisting=f.get("preexisting") is True)


@dataclass(frozen=True)
class VerdictView:
    package: str
    version: str
    baseline: str
    level: str
    score: str
    explanation: str
    publisher: str
    published: str
    integrity: str
    origin: str
    findings: list[FindingView]
    more_findings: int
    signals: list[FindingView]
    caps_added: list[str]
    caps_removed: list[str]
    caps_present: list[str]
    files: dict[str, list[str]] = field(default_factory=dict)
    files_unchanged: str = ""
    deps_added: list[tuple[str, str]] = field(default_factory=list)
    deps_removed: list[tuple[str, str]] = field(default_factory=list)
    scripts_added: list[tuple[str, str]] = field(default_factory=list)
    scripts_changed: list[tuple[str, str]] = field(default_factory=list)
    has_changes: bool = False
    dynamic: list[tuple[str, str, str]] = field(default_factory=list)
    dynamic_note: str = ""


def _origin(doc: Mapping[str, Any]) -> str:
    """Where the judged bytes came from, as the lists say it; local files are said to be only
    what their package.json claims."""
    from chainwatch.serve.queries import origin_of

    origin, label = origin_of(dict(doc))
    if origin in ("tarball", "folder"):
        return (f"{label}: local files whose package.json claims this name@version; "
                "not known to be the registry's release")
    return label


def verdict(doc: Mapping[str, Any]) -> VerdictView:
    caps = _mapping(doc.get("capabilities"))
    changes = _mapping(doc.get("changes"))
    files = _mapping(changes.get("files"))
    deps = _mapping(changes.get("dependencies"))
    scripts = _mapping(changes.get("scripts"))
    dyn = _mapping(doc.get("dynamic"))
    score = doc.get("score")
    unchanged = files.get("unchanged")
    return VerdictView(
        package=text(doc.get("package"), 300), version=text(doc.get("version"), 200),
        baseline=text(doc.get("baseline"), 200), level=text(doc.get("verdict"), 40),
        score=str(score) if isinstance(score, int) and not isinstance(score, bool) else "",
        explanation=text(doc.get("explanation")), publisher=text(doc.get("publisher"), 300),
        published=text(doc.get("published"), 100), integrity=text(doc.get("integrity"), 300),
        origin=_origin(doc),
        findings=[finding(f) for f in _list(doc.get("findings"))],
        more_findings=_more(doc.get("findings")),
        signals=[finding(f) for f in _list(doc.get("metadata_signals"))],
        caps_added=[text(c, 200) for c in _list(caps.get("added"))],
        caps_removed=[text(c, 200) for c in _list(caps.get("removed"))],
        caps_present=[text(c, 200) for c in _list(caps.get("present"))],
        files={k: [text(p, 1000) for p in _list(files.get(k))]
               for k in ("added", "changed", "removed") if _list(files.get(k))},
        files_unchanged=str(unchanged) if isinstance(unchanged, int) else "",
        deps_added=_pairs(deps.get("added")), deps_removed=_pairs(deps.get("removed")),
        scripts_added=_pairs(scripts.get("added")), scripts_changed=_pairs(scripts.get("changed")),
        has_changes=bool(changes),
        dynamic=[(text(_mapping(e).get("phase"), 40), text(_mapping(e).get("kind"), 60),
                  text(_mapping(e).get("detail"))) for e in _list(dyn.get("events"))],
        dynamic_note=("" if not dyn else "ran" if dyn.get("ran") is True
                      else "did not run: " + text(dyn.get("reason"))),
    )


@dataclass(frozen=True)
class AlertView:
    id: str
    kind: str
    created: str
    subject: str  # name@version, or the publisher of a burst
    level: str
    action: str
    href: str | None  # the verdict page, when the alert names one release
    deliveries: list[tuple[str, str, str]]


def alert(row: Any) -> AlertView:
    """An :class:`~chainwatch.serve.queries.AlertRow` for a page."""
    p = _mapping(row.payload)
    name, version = p.get("package"), p.get("version")
    if isinstance(name, str) and isinstance(version, str):
        subject = text(f"{name}@{version}", 500)
        key = p.get("integrity") if isinstance(p.get("integrity"), str) else f"{name}@{version}"
        href: str | None = link_path("verdicts", str(key))
    else:
        subject = "releases by " + (text(p.get("publisher"), 300) or "an unknown account")
        href = None
    return AlertView(
        id=text(row.id, 500), kind=text(row.kind, 40), created=when(row.created_at),
        subject=subject, level=text(p.get("verdict"), 40), action=text(p.get("action")),
        href=href,
        deliveries=[(text(d.sink, 200), text(d.status, 40), text(d.last_error, 300))
                    for d in list(row.deliveries)[:20]])


def statements(value: Any) -> list[tuple[str, str]]:
    """A brief's ``[{"text", "refs"}]`` list as (text, refs joined)."""
    out = []
    for item in _list(value):
        m = _mapping(item)
        refs = "; ".join(text(r, 300) for r in _list(m.get("refs"))[:20])
        out.append((text(m.get("text")), refs))
    return out


@dataclass(frozen=True)
class BriefView:
    id: str
    title: str
    level: str
    generated: str
    bluf: list[tuple[str, str]]
    winner: str
    confidence: str
    ranking: list[tuple[str, str, str, str]]
    implications: list[tuple[str, str]]
    recommendations: list[tuple[str, str]]
    red_flags: list[tuple[str, str]]
    packages: list[tuple[str, str, str, str, str]]
    indicators: list[tuple[str, str]]
    timeline: list[tuple[str, str]]
    #: the leading hypothesis' title (the winner's row of the ranking), as the CLI shows it
    winner_title: str = ""


def brief(doc: Mapping[str, Any]) -> BriefView:
    h = _mapping(doc.get("hypotheses"))
    ents = _mapping(doc.get("entities"))
    iocs = _mapping(doc.get("indicators"))
    titles = {str(_mapping(r).get("id")): _mapping(r).get("title")
              for r in _list(h.get("ranking"))}
    return BriefView(
        id=text(doc.get("incident"), 200), title=text(doc.get("title"), 500),
        level=text(doc.get("level"), 40), generated=text(doc.get("generated_at"), 60),
        bluf=statements([doc.get("bluf")]) if isinstance(doc.get("bluf"), Mapping) else [],
        winner=text(h.get("winner"), 20), confidence=text(h.get("confidence"), 40),
        ranking=[(text(_mapping(r).get("id"), 20), text(_mapping(r).get("title"), 200),
                  text(_mapping(r).get("inconsistent"), 20),
                  text(_mapping(r).get("consistent"), 20)) for r in _list(h.get("ranking"))],
        implications=statements(doc.get("implications")),
        recommendations=statements(doc.get("recommendations")),
        red_flags=statements(doc.get("red_flags")),
        packages=[(text(_mapping(p).get("package"), 300), text(_mapping(p).get("version"), 200),
                   text(_mapping(p).get("level"), 40),
                   text(_mapping(p).get("publisher"), 300) or "unknown",
                   text(_mapping(p).get("published"), 100) or "unknown")
                  for p in _list(ents.get("packages"))],
        indicators=[(text(kind, 60), text(v, 500)) for kind, values in list(iocs.items())[:20]
                    if kind != "packages" for v in _list(values)[:50]],
        timeline=[(text(_mapping(e).get("time"), 60), text(_mapping(e).get("event")))
                  for e in _list(doc.get("timeline"))],
        winner_title=text(titles.get(str(h.get("winner"))), 200),
    )


@dataclass(frozen=True)
class RepeatedDecision:
    """Gate decisions that say the same thing (a lockfile checked again): one row, with how
    many runs made it and the latest and first time among them (on this page)."""

    row: Any  # the newest DecisionRow of the group
    runs: int
    first: str


def repeats(rows: list[Any]) -> list[RepeatedDecision]:
    """``rows`` (newest first) folded so that decisions with the same where, package, version,
    action, rule, reason and source are one row, kept at the place of the newest."""
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for r in rows:
        key = (r.origin, r.package, r.version, r.action, r.rule, r.reason, r.source)
        groups.setdefault(key, []).append(r)
    return [RepeatedDecision(row=g[0], runs=len(g), first=g[-1].time) for g in groups.values()]
