"""The policy: which releases may be installed. TOML, with sane built-in defaults.

Each rule's action is ``block``, ``warn`` or ``off``; exceptions name a ``package@range``, a
reason and an expiry date, after which they no longer apply.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import nodesemver

from chainwatch.errors import UsageError

ACTIONS = ("block", "warn", "off")
#: Packages whose install scripts are well known and expected (native builds, binary fetchers).
DEFAULT_SCRIPT_ALLOW = (
    "esbuild", "@esbuild/*", "sharp", "@swc/core", "bcrypt", "better-sqlite3", "sqlite3",
    "canvas", "puppeteer", "playwright", "electron", "fsevents", "node-sass", "protobufjs",
    "core-js", "core-js-pure", "@parcel/watcher", "msw", "husky", "cypress", "prisma",
    "@prisma/client", "@prisma/engines", "nx", "lefthook", "unrs-resolver", "es5-ext",
    "bufferutil", "utf-8-validate", "cpu-features", "ssh2", "node-gyp", "deasync", "re2",
)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")


def parse_duration(text: str) -> timedelta:
    """``48h``, ``7d``, ``30m``, ``2w``, ``90s``."""
    m = _DURATION.match(text)
    if not m:
        raise UsageError(f"not a duration: {text!r} (use e.g. 48h, 7d, 2w)")
    amount, unit = float(m.group(1)), m.group(2)
    return timedelta(seconds=amount * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit])


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Exception_:
    package: str
    range: str
    reason: str
    expires: date

    def covers(self, name: str, version: str, today: date) -> bool:
        return (self.package == name and today <= self.expires
                and bool(nodesemver.satisfies(version, self.range, False)))


@dataclass(frozen=True)
class Policy:
    known_bad: str = "block"
    min_age: str = "block"
    min_age_duration: timedelta = timedelta(hours=48)
    min_age_exclude: tuple[str, ...] = ()
    install_scripts: str = "warn"
    install_scripts_allow: tuple[str, ...] = DEFAULT_SCRIPT_ALLOW
    new_install_script: str = "block"
    trust_downgrade: str = "block"
    #: a dependency npm would fetch from a URL, git or a path: around the registry and the gate
    remote_dependency: str = "block"
    publisher_change: str = "warn"
    #: what a chainwatch scan verdict of malicious / suspicious does
    scan_malicious: str = "block"
    scan_suspicious: str = "warn"
    #: versions published longer ago than this are not scanned (known-bad lists cover them)
    scan_window: timedelta = timedelta(days=30)
    #: also run releases in the sandbox when scanning them ([scan] sandbox = true)
    scan_sandbox: bool = False
    #: what a scan that fails (error, timeout, oversize, unreadable baseline) does: fail closed
    scan_on_error: str = "block"
    exceptions: tuple[Exception_, ...] = field(default_factory=tuple)

    def allowed_scripts(self, name: str) -> bool:
        return any(fnmatch.fnmatch(name, p) for p in self.install_scripts_allow)

    def age_exempt(self, name: str) -> bool:
        return any(fnmatch.fnmatch(name, p) for p in self.min_age_exclude)

    def exception_for(self, name: str, version: str, today: date | None = None) -> Exception_ | None:
        day = today or datetime.now(UTC).date()
        return next((e for e in self.exceptions if e.covers(name, version, day)), None)

    def to_toml(self) -> dict[str, Any]:
        return {
            "known-bad": {"action": self.known_bad},
            "min-age": {"action": self.min_age, "duration": format_duration(self.min_age_duration),
                        "exclude": list(self.min_age_exclude)},
            "install-scripts": {"action": self.install_scripts,
                                "allow": list(self.install_scripts_allow),
                                "new-in-bump": self.new_install_script},
            "trust-downgrade": {"action": self.trust_downgrade},
            "remote-dependency": {"action": self.remote_dependency},
            "publisher-change": {"action": self.publisher_change},
            "scan": {"malicious": self.scan_malicious, "suspicious": self.scan_suspicious,
                     "window": format_duration(self.scan_window),
                     "on_error": self.scan_on_error,
                     **({"sandbox": True} if self.scan_sandbox else {})},
            "exceptions": [{"package": f"{e.package}@{e.range}", "reason": e.reason,
                            "expires": e.expires.isoformat()} for e in self.exceptions],
        }


def _action(table: dict[str, Any], key: str, default: str, where: str) -> str:
    value = str(table.get(key, default))
    if value not in ACTIONS:
        raise UsageError(f"{where}.{key}: must be one of {', '.join(ACTIONS)}, not {value!r}")
    return value


def _flag(table: dict[str, Any], key: str, default: bool, where: str) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise UsageError(f"{where}.{key}: must be true or false, not {value!r}")
    return value


def _on_error(scan: dict[str, Any], default: str) -> str:
    value = str(scan.get("on_error", default))
    if value not in ("block", "warn"):
        raise UsageError(f"scan.on_error: must be block or warn, not {value!r}")
    return value


def load_policy(path: Path | None = None, min_age: str | None = None) -> Policy:
    """The built-in defaults, overridden by a TOML file and then by command-line settings."""
    policy = Policy()
    if path is not None:
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(f"{path}: cannot read the policy: {exc}") from exc
        policy = _apply(policy, doc, str(path))
    if min_age is not None:
        policy = replace(policy, min_age_duration=parse_duration(min_age))
    return policy


def _apply(policy: Policy, doc: dict[str, Any], where: str) -> Policy:
    kb = doc.get("known-bad", {})
    age = doc.get("min-age", {})
    scripts = doc.get("install-scripts", {})
    scan = doc.get("scan", {})
    exceptions = []
    for i, raw in enumerate(doc.get("exceptions", [])):
        spec = str(raw.get("package", ""))
        at = spec.find("@", 1)
        if at <= 0 or not raw.get("reason") or not raw.get("expires"):
            raise UsageError(f"{where}: exceptions[{i}] needs package = 'name@range', a reason "
                             "and an expires date")
        rng = spec[at + 1:]
        if nodesemver.valid_range(rng, False) is None:
            raise UsageError(f"{where}: exceptions[{i}]: {rng!r} is not a version range")
        expires = raw["expires"]
        if isinstance(expires, str):
            expires = date.fromisoformat(expires)
        exceptions.append(Exception_(spec[:at], rng, str(raw["reason"]), expires))
    return Policy(
        known_bad=_action(kb, "action", policy.known_bad, "known-bad"),
        min_age=_action(age, "action", policy.min_age, "min-age"),
        min_age_duration=parse_duration(age["duration"]) if "duration" in age
        else policy.min_age_duration,
        min_age_exclude=tuple(age.get("exclude", policy.min_age_exclude)),
        install_scripts=_action(scripts, "action", policy.install_scripts, "install-scripts"),
        install_scripts_allow=tuple(scripts.get("allow", policy.install_scripts_allow)),
        new_install_script=_action(scripts, "new-in-bump", policy.new_install_script,
                                   "install-scripts"),
        trust_downgrade=_action(doc.get("trust-downgrade", {}), "action", policy.trust_downgrade,
                                "trust-downgrade"),
        remote_dependency=_action(doc.get("remote-dependency", {}), "action",
                                  policy.remote_dependency, "remote-dependency"),
        publisher_change=_action(doc.get("publisher-change", {}), "action",
                                 policy.publisher_change, "publisher-change"),
        scan_malicious=_action(scan, "malicious", policy.scan_malicious, "scan"),
        scan_suspicious=_action(scan, "suspicious", policy.scan_suspicious, "scan"),
        scan_window=parse_duration(scan["window"]) if "window" in scan else policy.scan_window,
        scan_sandbox=_flag(scan, "sandbox", policy.scan_sandbox, "scan"),
        scan_on_error=_on_error(scan, policy.scan_on_error),
        exceptions=tuple(exceptions),
    )
