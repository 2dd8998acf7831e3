"""OSV records of an incident's releases, in the ossf/malicious-packages style.

Ids are ``MAL-0000-`` plus a stable digest of the package and version (ossf assigns the real
``MAL-YYYY-NNNN`` numbers when a record is contributed). ``chainwatch db import`` reads them
back.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from chainwatch.incidents.model import Incident, Observation


def osv_id(obs: Observation) -> str:
    return "MAL-0000-" + hashlib.sha256(obs.key.encode()).hexdigest()[:12].upper()


def record(obs: Observation, incident: Incident, now: datetime | None = None) -> dict[str, Any]:
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    top = [f for f in obs.findings if not f.get("preexisting")][:5]
    details = [f"chainwatch judged {obs.key} {obs.level} (score {obs.score}): {obs.explanation}"]
    details += [f"- {f.get('rule')}: {f.get('message')}"
                + (f" ({f.get('file')}:{f.get('line')})" if f.get("file") else "") for f in top]
    iocs = {k: v for k, v in obs.indicators.items() if v}
    return {
        "schema_version": "1.6.0",
        "id": osv_id(obs),
        "modified": stamp,
        "published": stamp,
        # the wording follows the verdict: a suspicious verdict is not a finding of malice
        "summary": (f"Malicious code in {obs.package} (npm)" if obs.level == "malicious"
                    else f"Suspicious code in {obs.package} (npm): not confirmed malicious"),
        "details": "\n".join(details),
        "affected": [{"package": {"ecosystem": "npm", "name": obs.package,
                                  "purl": f"pkg:npm/{obs.package.replace('@', '%40')}"},
                      "versions": [obs.version]}],
        "references": [],
        "database_specific": {
            "malicious-packages-origins": [{
                "source": "chainwatch", "import_time": stamp,
                "modified_time": stamp, "versions": [obs.version],
                **({"sha512": obs.integrity} if obs.integrity else {}),
            }],
            "iocs": iocs,
            "chainwatch": {"incident": incident.id, "verdict": obs.level, "score": obs.score,
                           "publisher": obs.publisher, "published": obs.published,
                           "fingerprints": list(obs.fingerprints)},
        },
    }


def is_suspicious_export(doc: dict[str, Any]) -> bool:
    """Whether an OSV record is chainwatch's export of a *suspicious* verdict (not a finding
    of malice): ``db import`` skips it unless asked to treat it as known-bad."""
    extra = doc.get("database_specific")
    own = extra.get("chainwatch") if isinstance(extra, dict) else None
    return isinstance(own, dict) and own.get("verdict") == "suspicious"


def from_registry(obs: Observation) -> bool:
    """Whether the verdict speaks for the registry's release: bytes fetched from the registry.
    A local tarball or folder only claims a name@version; exporting it as an advisory (which
    ``db import`` and other tools would then apply to the real release) would poison them."""
    return obs.source == "verdict" and (obs.document or {}).get("origin", "registry") == "registry"


def records(incident: Incident, now: datetime | None = None) -> list[dict[str, Any]]:
    return [record(m, incident, now) for m in incident.members if from_registry(m)]


def withheld(incident: Incident) -> list[str]:
    """Members judged from local bytes, which no OSV record is written for."""
    return [m.key for m in incident.members if m.source == "verdict" and not from_registry(m)]
