"""The analyst's brief of one incident, as data (``chainwatch.brief/1``); renderers format it.

Every statement carries ``refs``: the findings, records or computed figures it rests on, so a
reader can check each sentence against the evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from chainwatch.incidents.ach import Assessment, assess
from chainwatch.incidents.model import Incident
from chainwatch.output.words import noun_for, plural

SCHEMA = "chainwatch.brief/1"

_ACTIONS = {
    "H1": ("Pin every affected package to its previous version, block the listed versions at "
           "the gate (chainwatch check / proxy), and rebuild front-end bundles built since the "
           "first publish: a browser payload ships inside bundles, not only in node_modules."),
    "H2": ("Treat every machine and CI runner that installed an affected version as "
           "compromised: rotate npm, GitHub and cloud tokens it could read, review packages "
           "those tokens could publish, and block the versions at the gate."),
    "H3": ("Pin to the last version before the change and check the machines that ran it for "
           "destroyed or altered files; restore from backups where needed."),
    "H4": ("Block the versions, check whether internal package names leak to public "
           "registries (scoped names, registry configuration), and watch the account."),
    "H5": ("Verify the change with the maintainers through a known channel; until then keep "
           "the versions on warn, not block, and record an exception with an expiry."),
}
_SCENARIOS = {
    "H1": ("The versions are pulled within hours and no affected bundle reached production.",
           "Bundles built in the window are live and keep swapping wallet addresses until "
           "rebuilt; the account publishes again.",
           "Some CI builds pulled the versions; rebuilding and pinning ends the exposure."),
    "H2": ("No runner with publish rights installed an affected version.",
           "Stolen tokens publish further infected packages: the worm keeps spreading through "
           "every account it reaches.",
           "A few runners leaked tokens; rotation stops the spread, some more packages are hit "
           "before it does."),
    "H3": ("The destructive path did not trigger in your environments.",
           "Files were destroyed on machines matching the targeting condition.",
           "The trigger matched few or none of your environments; the versions are pinned away."),
    "H4": ("The probe reached no internal systems and only confirms a name is unclaimed.",
           "It was reconnaissance for a targeted attack on an internal package name.",
           "It collected host names from a few installs; claiming the name ends it."),
    "H5": ("The maintainer confirms the change; nothing malicious shipped.",
           "The 'maintainer change' was the takeover itself and the next release carries a "
           "payload.",
           "The change is legitimate; keep watching the next releases closely."),
}
_TAGS = {"H1": ["account-takeover", "financial-theft"], "H2": ["worm", "credential-theft"],
         "H3": ["protestware", "sabotage"], "H4": ["probe", "reconnaissance"],
         "H5": ["false-positive-candidate", "maintainer-change"]}


def _fmt(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _published(key: str, published: str | None, publisher: str | None = None,
               with_publisher: bool = False) -> str:
    """A member's publish record as a reference; a local scan (no registry data) says so
    instead of claiming "published None"."""
    who = f", publisher {publisher or 'not given'}" if with_publisher else ""
    if published:
        return f"{key}: published {published}{who}" if with_publisher else (
            f"{key} published {published}")
    return f"{key}: no publish time (scanned from a local file){who}"


def build(incident: Incident, exposure: Sequence[dict[str, Any]] = (),
          fleet_total: int = 0, now: datetime | None = None) -> dict[str, Any]:
    """The brief; ``exposure`` holds fleet sightings (label, version, recorded_at, package)."""
    a: Assessment = assess(incident)
    best = a.best
    members = incident.members
    first, last = incident.first_published, incident.last_published
    keys = [m.key for m in members]
    top = [f"{m.key} {m.findings[0].get('rule')}" for m in members if m.findings][:4]
    span = (f" between {_fmt(first)} and {_fmt(last)}" if first and last and first != last
            else f" at {_fmt(first)}" if first else "")
    who = f" by {', '.join(incident.publishers)}" if incident.publishers else ""
    bluf = {
        "text": (f"We assess with {a.confidence} confidence that this is a "
                 f"{best.title.lower()}: {len(members)} {incident.level} "
                 f"{noun_for(len(members), 'release')} of "
                 f"{plural(len(incident.packages), 'package')} ({', '.join(keys[:6])}"
                 f"{' …' if len(keys) > 6 else ''}) "
                 + (f"{noun_for(len(members), 'was')} published{who}{span}. " if span or who else
                    f"{noun_for(len(members), 'was')} scanned from local files (no publish time "
                    "or publisher is known). ")
                 + f"Confidence is {a.confidence} because {a.why}."),
        "refs": [*top, *(f"matrix: {r.hypothesis} I={r.inconsistent} C={r.consistent}"
                         for r in a.ranking[:2])],
    }
    labels = sorted({e["label"] for e in exposure})
    exposed_first = min((e["recorded_at"] for e in exposure), default=None)
    implications = [{
        "text": (f"{len(labels)} of {fleet_total} recorded environments (labels) held an affected "
                 f"version" + (f"; first seen at {exposed_first}." if exposed_first else ".")),
        "refs": [f"fleet: {e['label']} held {e['package']}@{e['version']} "
                 f"({e['recorded_at']})" for e in exposure][:10] or ["fleet memory query"],
    }]
    implications.append({
        "text": (f"Anyone who installed {', '.join(keys[:6])}"
                 + (f" since {_fmt(first)}" if first else "")
                 + " without a lockfile pin or a release-age delay may have run the code."),
        "refs": [_published(m.key, m.published) for m in members][:8]})
    if incident.level == "malicious" and best.hypothesis in ("H1", "H2"):
        implications.append({
            "text": "An account able to publish these packages is, or was, in the attacker's "
                    "hands: its other packages are at risk until the maintainer secures it.",
            "refs": [f"publisher: {p}" for p in incident.publishers] or ["publisher unknown"]})
    unknown_publisher = [m.key for m in members if not m.publisher]
    assumptions = [
        {"text": "The registry's publish times and publisher names are accurate.",
         "refs": [_published(m.key, m.published, m.publisher, with_publisher=True)
                  for m in members][:6]},
        {"text": "The analysis is static: the payload was read, never run, so paths it only "
                 "takes at run time (remote stages, time or locale triggers) may be missed.",
         "refs": ["chainwatch never executes package code"]},
        {"text": "Grouping assumes that a shared account within the hour, a shared payload or "
                 "a shared indicator means a shared actor.",
         "refs": [f"incident {incident.id}: {plural(len(members), 'member')}"]},
    ]
    red_flags = [
        {"text": "Other accounts and other packages of the same accounts were not all "
                 "examined: only watched or scanned packages are in this incident.",
         "refs": [f"accounts seen: {', '.join(incident.publishers) or 'none recorded'}"]},
    ]
    local = [m.key for m in members if not m.publisher and not m.published]
    if unknown_publisher:
        why = ("they were scanned from local files, with no registry record" if
               len(local) == len(unknown_publisher) else "the registry mirror strips it")
        red_flags.append({"text": f"The publisher is unknown for some releases ({why}), so "
                                  "account-based grouping is partial.",
                          "refs": unknown_publisher[:8]})
    bias = [
        {"text": "Anchoring: the ranking counts inconsistent evidence first, not the first "
                 "finding seen.", "refs": ["ACH matrix"]},
        {"text": f"Confirmation: {a.ranking[1].title.lower()} was scored on the same evidence "
                 f"and came second.",
         "refs": [f"{a.ranking[1].hypothesis} I={a.ranking[1].inconsistent}"]},
        {"text": "Base rate: most flagged maintainer changes are legitimate; the false-positive "
                 "hypothesis is always in the matrix.", "refs": ["H5"]},
    ]
    best_case, worst_case, likely = _SCENARIOS[best.hypothesis]
    timeline = sorted(
        [{"time": m.published, "event": f"{m.key} published by "
                                        f"{m.publisher or 'unknown account'}",
          "ref": m.key} for m in members if m.published]
        + [{"time": m.detected_at or "", "event": f"{m.key} flagged {m.level}", "ref": m.key}
           for m in members if m.detected_at]
        + ([{"time": exposed_first, "event": "first affected environment recorded",
             "ref": "fleet memory"}] if exposed_first else []),
        key=lambda e: e["time"])
    iocs = incident.indicators()
    techniques = sorted({t for m in members for t in m.techniques})
    return {
        "schema": SCHEMA, "incident": incident.id, "title": incident.title,
        "level": incident.level,
        "generated_at": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
        "bluf": bluf,
        "hypotheses": {
            "winner": best.hypothesis, "confidence": a.confidence, "why": a.why,
            "ranking": [{"id": r.hypothesis, "title": r.title, "inconsistent": r.inconsistent,
                         "consistent": r.consistent} for r in a.ranking],
            "evidence": [{"id": e.id, "text": e.text, "refs": list(e.refs),
                          "ratings": e.ratings, "weight": e.weight} for e in a.evidence],
        },
        "assumptions": assumptions, "red_flags": red_flags, "bias_check": bias,
        "implications": implications,
        "recommendations": [{"text": _ACTIONS[best.hypothesis], "refs": [best.hypothesis]},
                            *([{"text": "Keep a release-age delay (48 h) at the gate: it would "
                                        "have kept these versions out.",
                                "refs": [_published(m.key, m.published)
                                         for m in members][:4]}]
                              if any(m.published for m in members) else [])],
        "scenarios": {"best": best_case, "worst": worst_case, "most_likely": likely},
        "entities": {
            "accounts": incident.publishers,
            "packages": [{"package": m.package, "version": m.version, "level": m.level,
                          "integrity": m.integrity, "published": m.published,
                          "publisher": m.publisher} for m in members],
            "hosts": iocs.get("hosts", []), "wallets": iocs.get("wallets", []),
        },
        "indicators": {
            "packages": [{"package": m.package, "version": m.version,
                          "integrity": m.integrity} for m in members],
            **{k: v for k, v in iocs.items()},
        },
        "timeline": timeline,
        "tags": sorted({"npm", "supply-chain", *_TAGS[best.hypothesis], *techniques}),
    }
