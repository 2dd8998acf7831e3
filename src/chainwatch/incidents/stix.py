"""A STIX 2.1 bundle of an incident: the malware, the publishing accounts as identities,
indicators (tarball hashes, URLs, domains, IPs) and the relationships between them.

Built with the ``stix2`` library; ids are deterministic (UUIDv4-shaped, from the incident and
the object's content) so exporting twice gives the same bundle.
"""

from __future__ import annotations

import hashlib
import uuid
from base64 import b64decode
from datetime import UTC, datetime
from typing import Any

import stix2

from chainwatch.incidents.model import Incident


def _id(kind: str, *parts: str) -> str:
    """A UUIDv4-shaped id (as STIX 2.1 wants for SDOs) derived from the content, so the same
    incident always exports the same bundle."""
    digest = hashlib.sha256("|".join(("chainwatch", kind, *parts)).encode()).digest()
    return f"{kind}--{uuid.UUID(bytes=digest[:16], version=4)}"


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _sha512_hex(integrity: str | None) -> str | None:
    if not integrity or not integrity.startswith("sha512-"):
        return None
    try:
        return b64decode(integrity[7:]).hex()
    except ValueError:
        return None


def bundle(incident: Incident, hypothesis: str = "", now: datetime | None = None) -> str:
    created = now or datetime.now(UTC)
    common: dict[str, Any] = {"created": created, "modified": created}
    objects: list[Any] = []
    types = {"H1": ["spyware"], "H2": ["worm"], "H3": ["wiper"], "H4": ["unknown"],
             "H5": ["unknown"]}.get(hypothesis, ["unknown"])
    malware = stix2.Malware(
        id=_id("malware", incident.id), name=incident.title[:250], is_family=False,
        malware_types=types, description=(
            f"{incident.level.capitalize()} npm releases: "
            + ", ".join(f"{m.key} ({m.level})" for m in incident.members)[:2000]),
        **common)
    objects.append(malware)
    for publisher in incident.publishers:
        who = stix2.Identity(id=_id("identity", publisher), name=f"npm account {publisher}",
                             identity_class="individual",
                             description="The account that published the releases", **common)
        objects += [who, stix2.Relationship(
            id=_id("relationship", incident.id, publisher), relationship_type="related-to",
            source_ref=malware.id, target_ref=who.id,
            description="published by this npm account", **common)]
    patterns: list[tuple[str, str]] = []
    for m in incident.members:
        digest = _sha512_hex(m.integrity)
        if digest:
            patterns.append((f"[file:hashes.'SHA-512' = '{digest}']",
                             f"tarball of {m.key}"))
    iocs = incident.indicators()
    patterns += [(f"[url:value = '{_quote(u)}']", "URL in the payload")
                 for u in iocs.get("urls", [])[:100]]
    patterns += [(f"[domain-name:value = '{_quote(h)}']", "host in the payload")
                 for h in iocs.get("hosts", [])[:100]]
    patterns += [(f"[ipv4-addr:value = '{ip}']", "IP address in the payload")
                 for ip in iocs.get("ips", [])[:100]]
    valid_from = incident.first_published or created
    for pattern, what in dict(patterns).items():
        indicator = stix2.Indicator(
            id=_id("indicator", incident.id, pattern), name=what[:250], pattern=pattern,
            description=f"{what} of incident {incident.id} ({incident.level}), found by "
                        f"chainwatch's static analysis",
            pattern_type="stix", valid_from=valid_from,
            indicator_types=["malicious-activity" if incident.level == "malicious"
                             else "anomalous-activity"],
            **common)
        objects += [indicator, stix2.Relationship(
            id=_id("relationship", indicator.id, malware.id), relationship_type="indicates",
            source_ref=indicator.id, target_ref=malware.id, **common)]
    return str(stix2.Bundle(objects=objects, id=_id("bundle", incident.id),
                            allow_custom=False).serialize(pretty=True))
