"""Analysis of competing hypotheses: evidence items from an incident, rated against each hypothesis.

Each evidence item is something observed in the incident's members (a technique, a metadata
signal, a computed figure) with references back to the findings it rests on. Ratings are
``C`` (consistent), ``I`` (inconsistent) or ``N`` (not applicable / neutral); strong items weigh
two. The hypothesis with the least weighted inconsistency wins; ties go to the most consistent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from chainwatch.incidents.model import Incident, Observation
from chainwatch.output.words import noun_for, plural

HYPOTHESES = {
    "H1": "Targeted account takeover for financial theft",
    "H2": "Worm or credential harvesting",
    "H3": "Protestware or sabotage",
    "H4": "A probe or test of defences",
    "H5": "A legitimate maintainer change (false positive)",
}
STRONG = 2


@dataclass(frozen=True)
class Evidence:
    id: str
    text: str
    refs: tuple[str, ...]
    ratings: dict[str, str]  # hypothesis id -> C | I | N
    weight: int = 1


@dataclass(frozen=True)
class Ranked:
    hypothesis: str
    title: str
    inconsistent: int
    consistent: int


@dataclass(frozen=True)
class Assessment:
    evidence: tuple[Evidence, ...]
    ranking: tuple[Ranked, ...]
    confidence: str
    why: str

    @property
    def best(self) -> Ranked:
        return self.ranking[0]


def _refs(members: list[Observation], techniques: set[str] | None = None,
          capabilities: set[str] | None = None, rules: set[str] | None = None) -> list[str]:
    out = []
    for m in members:
        for f in m.findings:
            if f.get("preexisting"):
                continue
            if (techniques and f.get("technique") in techniques) or (
                    capabilities and f.get("capability") in capabilities):
                where = f":{f.get('file')}:{f.get('line')}" if f.get("file") else ""
                out.append(f"{m.key}{where} {f.get('rule')}")
        for s in m.signals:
            if rules and s.get("rule") in rules:
                out.append(f"{m.key} {s.get('rule')}")
    return list(dict.fromkeys(out))[:8]


def _rate(**ratings: str) -> dict[str, str]:
    return {h: ratings.get(h, "N") for h in HYPOTHESES}


def gather(incident: Incident, window: timedelta = timedelta(hours=1)) -> list[Evidence]:
    members = incident.members
    items: list[Evidence] = []

    def add(text: str, refs: list[str], weight: int = 1, **ratings: str) -> None:
        items.append(Evidence(f"E{len(items) + 1}", text, tuple(refs), _rate(**ratings), weight))

    crypto = _refs(members, {"crypto-theft", "browser-hijack"}, {"wallet", "browser-hook"})
    if crypto:
        add("The code hooks browser or wallet APIs or carries wallet addresses (crypto theft).",
            crypto, STRONG, H1="C", H2="I", H3="I", H4="I", H5="I")
    secrets = _refs(members, {"secret-theft"}, {"secrets"})
    if secrets:
        add("The code reads credentials or tokens (npm, cloud, CI, SSH).", secrets,
            H2="C", H3="I", H5="I")
    spread = _refs(members, {"propagation"}, {"propagation"})
    if spread:
        add("The code republishes or spreads itself with stolen tokens.", spread, STRONG,
            H1="I", H2="C", H4="I", H5="I")
    sabotage = _refs(members, {"sabotage"}, {"sabotage"})
    if sabotage:
        add("The code destroys or overwrites files, or targets users by locale.", sabotage,
            STRONG, H1="I", H3="C", H4="I", H5="I")
    exfil = _refs(members, {"exfiltration"}, {"exfil"})
    if exfil:
        add("The code sends data to a network endpoint.", exfil, H2="C", H4="C", H5="I")
    install = _refs(members, {"install-time-execution"}, {"install-script"})
    if install:
        add("The payload runs at install time (lifecycle script).", install,
            H2="C", H4="C")
    obfuscated = _refs(members, {"obfuscation"}, {"obfuscation"})
    if obfuscated:
        add("The new code is obfuscated.", obfuscated, H1="C", H2="C", H5="I")
    recon = _refs(members, {"reconnaissance"}, {"fingerprint"},
                  {"CW-META-DEPENDENCY-CONFUSION", "CW-META-TYPOSQUAT"})
    if recon and not crypto and not secrets and not sabotage and not spread:
        add("The code only collects host details or the name imitates another package; "
            "nothing is stolen or destroyed.", recon, STRONG,
            H1="I", H2="I", H3="I", H4="C", H5="I")
    publishers = incident.publishers
    first, last = incident.first_published, incident.last_published
    if len(incident.packages) >= 2 and len(publishers) == 1 and first and last \
            and last - first <= window * max(1, len(incident.packages)):
        minutes = round((last - first).total_seconds() / 60)
        add(f"{len(incident.packages)} packages were published by one account "
            f"({publishers[0]}) within {minutes} minutes.",
            [f"{m.key} published {m.published} by {m.publisher}" for m in members][:8],
            H1="C", H2="C", H4="I")
    prints: dict[str, set[str]] = {}
    for m in members:
        for fp in m.fingerprints:
            prints.setdefault(fp, set()).add(m.package)
    shared = {fp: pk for fp, pk in prints.items() if len(pk) >= 2}
    if shared:
        fp, pk = max(shared.items(), key=lambda kv: len(kv[1]))
        add(f"The same payload (fingerprint {fp[:19]}…) appears in {len(pk)} packages.",
            sorted(pk)[:8], H1="C", H2="C", H5="I")
    changed = _refs(members, rules={"CW-META-NEW-PUBLISHER", "CW-META-EMAIL-DOMAIN",
                                    "CW-META-MAINTAINERS"})
    if changed:
        add("The publisher or the maintainers changed.", changed,
            H1="C", H2="C", H3="I", H5="C")
    trust = _refs(members, rules={"CW-META-PROVENANCE-LOST", "CW-META-TRUSTED-PUBLISHING-LOST",
                                  "CW-META-GITHEAD-MISSING"})
    if trust:
        add("Provenance, trusted publishing or the source commit is missing where earlier "
            "releases had it.", trust, H1="C", H2="C")
    scanned = [m for m in members if m.source == "verdict"]
    strong_code = [m for m in scanned if any(
        f.get("severity") in ("high", "critical") and not f.get("preexisting")
        for f in m.findings)]
    if scanned and not strong_code:
        add("No release carries new code findings of high severity; the flags rest on "
            "metadata.", [f"{m.key}: {m.explanation[:80]}" for m in scanned][:8], STRONG,
            H1="I", H2="I", H3="I", H5="C")
    listed = [f"{m.key} listed by {a}" for m in members for a in m.advisories]
    if listed:
        add("Independent advisories list these versions as malicious.", listed[:8], STRONG,
            H5="I")
    return items


def assess(incident: Incident) -> Assessment:
    evidence = gather(incident)
    ranking = []
    for h, title in HYPOTHESES.items():
        inconsistent = sum(e.weight for e in evidence if e.ratings[h] == "I")
        consistent = sum(e.weight for e in evidence if e.ratings[h] == "C")
        ranking.append(Ranked(h, title, inconsistent, consistent))
    ranking.sort(key=lambda r: (r.inconsistent, -r.consistent, r.hypothesis))
    best, second = ranking[0], ranking[1]
    margin = second.inconsistent - best.inconsistent
    if margin >= 3 and len(evidence) >= 4:
        confidence = "high"
    elif margin >= 1:
        confidence = "moderate"
    else:
        confidence = "low"
    why = (f"over {plural(len(evidence), 'evidence item')}, {best.title.lower()} is inconsistent "
           f"with {best.inconsistent} weighted {noun_for(best.inconsistent, 'item')}, the "
           f"next hypothesis ({second.title.lower()}) with {second.inconsistent}")
    if margin == 0:
        why += f", so the two are separated only by consistent evidence ({best.consistent} "  \
               f"against {second.consistent})"
    return Assessment(tuple(evidence), tuple(ranking), confidence, why)
