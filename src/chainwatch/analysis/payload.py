"""What a flagged change carries: a fingerprint of the payload and the indicators in it.

The fingerprint is a hash of the *added* lines of each flagged file (all of it for a new file),
normalised (whitespace dropped), so the same payload appended to different host packages gets
the same fingerprint: that is how incidents group the Qix-style wave. Indicators (URLs, hosts,
IPs, wallet addresses, webhook endpoints) come from the same added text.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from chainwatch.model import Finding, PackageFiles, Severity

_URL = re.compile(r"""\b(?:https?|wss?)://[^\s'"`<>()\\]{3,200}""", re.I)
_HOST = re.compile(
    r"""(?<![\w.@/-])((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:[a-z]{2,24}))(?![\w-])""",
    re.I)
_IP = re.compile(r"(?<![\d.])((?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3})"
                 r"(?![\d.])")
_WALLETS = {
    "eth": re.compile(r"\b0x[a-fA-F0-9]{40}\b"),
    "btc": re.compile(r"\b[13][a-km-zA-HJ-NP-Z1-9]{25,34}\b"),
    "bech32": re.compile(r"\bbc1[ac-hj-np-z02-9]{11,71}\b"),
    "trx": re.compile(r"\bT[1-9A-HJ-NP-Za-km-z]{33}\b"),
}
_WEBHOOK = re.compile(r"discord(?:app)?\.com/api/webhooks|hooks\.slack\.com|webhook\.site|"
                      r"api\.telegram\.org/bot|pipedream\.net|requestbin|ngrok", re.I)
#: Hosts any package may name (registries, forges, standards bodies): never indicators.
COMMON_HOSTS = frozenset({
    "registry.npmjs.org", "npmjs.com", "www.npmjs.com", "github.com", "raw.githubusercontent.com",
    "nodejs.org", "www.w3.org", "w3.org", "developer.mozilla.org", "json-schema.org",
    "opensource.org", "example.com", "localhost", "yarnpkg.com", "registry.yarnpkg.com",
    "unpkg.com", "cdn.jsdelivr.net", "googleapis.com", "schema.org", "mozilla.org",
})
_TLDS_CODE = frozenset({"js", "json", "ts", "mjs", "cjs", "map", "md", "prototype", "call",
                        "apply", "length", "push", "then", "log", "exports", "window", "node",
                        "slice", "data", "name", "type", "value", "keys", "test", "min"})


#: Services that many unrelated campaigns use (paste sites, chat webhooks, forges' APIs): they
#: are reported as indicators but never link two incidents by host alone.
SHARED_SERVICES = frozenset({
    "pastebin.com", "discord.com", "discordapp.com", "webhook.site", "api.telegram.org",
    "api.github.com", "bun.sh", "gist.github.com", "ngrok.io", "pipedream.net",
    "transfer.sh", "oast.fun", "interact.sh", "burpcollaborator.net",
})


def _normalised(text: str) -> str:
    return "\n".join("".join(line.split()) for line in text.splitlines() if line.strip())


def added_text(path: str, target: PackageFiles, baseline: PackageFiles | None) -> str:
    new = target.get(path)
    if new is None:
        return ""
    text = new.data[:4_000_000].decode("utf-8", "replace")
    old = baseline.get(path) if baseline is not None else None
    if old is None:
        return text
    before = set(old.data[:4_000_000].decode("utf-8", "replace").splitlines())
    return "\n".join(line for line in text.splitlines() if line not in before)


def fingerprint(text: str) -> str | None:
    norm = _normalised(text)
    return "sha256:" + hashlib.sha256(norm.encode()).hexdigest() if len(norm) >= 40 else None


#: the endings that make a dotted word a host worth reporting
_HOST_SUFFIXES = tuple("." + t for t in (
    "com", "net", "org", "io", "ru", "cn", "xyz", "top", "invalid", "app", "dev", "site",
    "online", "info", "co", "me", "cc", "tk", "pw", "su", "link", "live"))


def indicators(text: str) -> dict[str, list[str]]:
    """URLs, hosts, IPs, wallets and webhook URLs named in ``text`` (sorted, deduplicated)."""
    found: dict[str, set[str]] = {"urls": set(), "hosts": set(), "ips": set(), "wallets": set(),
                                  "webhooks": set()}
    for url in _URL.findall(text):
        url = url.rstrip(".,;")
        host = re.sub(r"^[a-z]+://", "", url, flags=re.I).split("/", 1)[0].split(":", 1)[0]
        if host.lower() in COMMON_HOSTS:
            continue
        found["urls"].add(url)
        if _WEBHOOK.search(url):
            found["webhooks"].add(url)
        elif not _IP.fullmatch(host):
            found["hosts"].add(host.lower())
    for host in _HOST.findall(text):
        low = host.lower()
        if low.rsplit(".", 1)[-1] in _TLDS_CODE or low in COMMON_HOSTS or low[0].isdigit():
            continue
        if "." in low and low.endswith(_HOST_SUFFIXES):
            found["hosts"].add(low)
    found["ips"].update(ip for ip in _IP.findall(text) if not ip.startswith(("0.", "127.")))
    for pattern in _WALLETS.values():
        found["wallets"].update(pattern.findall(text))
    return {k: sorted(v)[:200] for k, v in found.items() if v}


def payload(findings: Iterable[Finding], target: PackageFiles,
            baseline: PackageFiles | None) -> tuple[tuple[str, ...], dict[str, list[str]]]:
    """Fingerprints and indicators of the files holding new, at-least-medium findings."""
    flagged = sorted({f.file for f in findings if f.file and not f.preexisting
                      and f.severity.rank >= Severity.MEDIUM.rank and f.file != "package.json"})
    prints: list[str] = []
    merged: dict[str, set[str]] = {}
    for path in flagged[:20]:
        text = added_text(path, target, baseline)
        fp = fingerprint(text)
        if fp:
            prints.append(fp)
        for kind, values in indicators(text).items():
            merged.setdefault(kind, set()).update(values)
    return tuple(sorted(set(prints))), {k: sorted(v)[:200] for k, v in merged.items()}
