"""The policy: which releases may be installed. TOML, with sane built-in defaults.

Each rule's action is ``block``, ``warn`` or ``off``; exceptions name a ``package@range``, a
reason and an expiry date, after which they no longer apply.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from chainwatch.errors import UsageError

ACTIONS = ("block", "warn", "off")
#: Packages whose install scripts are well known and expected (native builds, binary fetchers)
#: and that no incident ever went through. Never listed again: ``nx`` (its postinstall ran the
#: s1ngularity credential stealer, August 2025), ``es5-ext`` (protestware in its postinstall,
#: 2022) and ``fsevents`` (1.x fetched its binary from an S3 bucket that was taken over,
#: CVE-2023-45311). An allowed package's *new* install script is still blocked.
DEFAULT_SCRIPT_ALLOW = (
    "esbuild", "@esbuild/*", "sharp", "@swc/core", "bcrypt", "better-sqlite3", "sqlite3",
    "canvas", "puppeteer", "playwright", "electron", "node-sass", "protobufjs",
    "core-js", "core-js-pure", "@parcel/watcher", "msw", "husky", "cypress", "prisma",
    "@prisma/client", "@prisma/engines", "lefthook", "unrs-resolver",
    "bufferutil", "utf-8-validate", "cpu-features", "ssh2", "deasync", "re2",
)
#: how long ``check`` trusts a cached packument before it asks the registry again
DEFAULT_PACKUMENT_TTL = timedelta(minutes=5)
#: the longest a packument may be trusted without asking: new versions and unpublishes matter
MAX_PACKUMENT_TTL = timedelta(days=1)
TTL_ENV = "CHAINWATCH_PACKUMENT_TTL"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")


#: Longer durations are refused (timedelta's own limit is about 2.7 million years).
MAX_DURATION_SECONDS = 100 * 365 * 86400


def parse_duration(text: str) -> timedelta:
    """``48h``, ``7d``, ``30m``, ``2w``, ``90s``."""
    m = _DURATION.match(text)
    if not m:
        raise UsageError(f"not a duration: {text!r} (use e.g. 48h, 7d, 2w)")
    amount, unit = float(m.group(1)), m.group(2)
    seconds = amount * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    if seconds > MAX_DURATION_SECONDS:  # timedelta overflows far beyond any sensible window
        raise UsageError(f"duration too long: {text!r} (at most 100 years)")
    return timedelta(seconds=seconds)


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
        if self.package != name or today > self.expires:
            return False
        import nodesemver  # loaded only by a policy with exceptions (its regexes cost 25 ms)

        return bool(nodesemver.satisfies(version, self.range, False))


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
    #: (in a release's manifest, or locked in the project from another host, git or a folder
    #: outside it: ``Checker.judge_source``)
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
    #: what a version does when the registry cannot be asked (unreachable, 5xx, a stale cached
    #: copy) or the time ran out: ``block`` (the default: a gate that cannot decide fails
    #: closed); ``offline = "warn"`` opts into reporting it and letting the version pass
    offline: str = "block"
    #: how long ``check`` uses a cached packument without asking the registry again
    #: (``[registry] packument_ttl``, CHAINWATCH_PACKUMENT_TTL; 0s asks every time)
    packument_ttl: timedelta = DEFAULT_PACKUMENT_TTL
    exceptions: tuple[Exception_, ...] = field(default_factory=tuple)

    def expired_exceptions(self, today: date | None = None) -> list[Exception_]:
        day = today or datetime.now(UTC).date()
        return [e for e in self.exceptions if e.expires < day]

    def allowed_scripts(self, name: str) -> bool:
        return any(fnmatch.fnmatch(name, p) for p in self.install_scripts_allow)

    def age_exempt(self, name: str) -> bool:
        return any(fnmatch.fnmatch(name, p) for p in self.min_age_exclude)

    def exception_for(self, name: str, version: str, today: date | None = None) -> Exception_ | None:
        day = today or datetime.now(UTC).date()
        return next((e for e in self.exceptions if e.covers(name, version, day)), None)

    def to_toml(self) -> dict[str, Any]:
        return {
            "offline": self.offline,
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
                     "on_error": self.scan_on_error, "sandbox": self.scan_sandbox},
            "registry": {"packument_ttl": format_duration(self.packument_ttl)},
            "exceptions": [{"package": f"{e.package}@{e.range}", "reason": e.reason,
                            "expires": e.expires.isoformat()} for e in self.exceptions],
        }


#: every section and key a policy file may have (anything else is a typo that would silently
#: leave a rule at its default)
SCHEMA: dict[str, tuple[str, ...]] = {
    "known-bad": ("action",),
    "min-age": ("action", "duration", "exclude"),
    "install-scripts": ("action", "allow", "new-in-bump"),
    "trust-downgrade": ("action",),
    "remote-dependency": ("action",),
    "publisher-change": ("action",),
    "scan": ("malicious", "suspicious", "window", "sandbox", "on_error"),
    "registry": ("packument_ttl",),
}
TOP_KEYS = ("offline",)
EXCEPTION_KEYS = ("package", "reason", "expires")


def _did_you_mean(word: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(choices)})"


def validate(doc: dict[str, Any], where: str) -> None:
    """Refuse unknown sections and keys, naming each with the closest known one."""
    for section, table in doc.items():
        if section == "exceptions":
            if not isinstance(table, list):
                raise UsageError(f"{where}: exceptions must be a list of [[exceptions]] tables")
            for i, raw in enumerate(table):
                if not isinstance(raw, dict):
                    raise UsageError(f"{where}: exceptions[{i}] must be a table")
                for key in raw:
                    if key not in EXCEPTION_KEYS:
                        raise UsageError(f"{where}: unknown key exceptions[{i}].{key}"
                                         f"{_did_you_mean(key, EXCEPTION_KEYS)}")
            continue
        if section in TOP_KEYS:
            continue
        if section not in SCHEMA:
            known = (*SCHEMA, "exceptions", *TOP_KEYS)
            raise UsageError(f"{where}: unknown section [{section}]{_did_you_mean(section, known)}")
        if not isinstance(table, dict):
            raise UsageError(f"{where}: [{section}] must be a table, not {table!r}"[:200])
        for key in table:
            if key not in SCHEMA[section]:
                raise UsageError(f"{where}: unknown key {section}.{key}"
                                 f"{_did_you_mean(key, SCHEMA[section])}")


def _choice(table: dict[str, Any], key: str, default: str, where: str,
            choices: tuple[str, ...]) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or value not in choices:
        hint = _did_you_mean(value, choices) if isinstance(value, str) else ""
        name = f"{where}.{key}" if where else key
        raise UsageError(f"{name}: must be one of {', '.join(choices)}, not {value!r}"
                         f"{hint}"[:300])
    return value


def _action(table: dict[str, Any], key: str, default: str, where: str) -> str:
    return _choice(table, key, default, where, ACTIONS)


def _duration(table: dict[str, Any], key: str, default: timedelta, where: str) -> timedelta:
    if key not in table:
        return default
    value = table[key]
    if not isinstance(value, str):
        raise UsageError(f"{where}.{key}: must be a duration string such as \"48h\", not "
                         f"{value!r}"[:200])
    try:
        return parse_duration(value)
    except UsageError as exc:
        raise UsageError(f"{where}.{key}: {exc}") from exc


def _names(table: dict[str, Any], key: str, default: tuple[str, ...], where: str
           ) -> tuple[str, ...]:
    value = table.get(key, default)
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{where}.{key}: must be a list of package names or globs")
    return tuple(value)


def _flag(table: dict[str, Any], key: str, default: bool, where: str) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise UsageError(f"{where}.{key}: must be true or false, not {value!r}")
    return value


def _on_error(scan: dict[str, Any], default: str) -> str:
    return _choice(scan, "on_error", default, "scan", ("block", "warn"))


def load_policy(path: Path | None = None, min_age: str | None = None) -> Policy:
    """The built-in defaults, overridden by a TOML file and then by command-line settings."""
    policy = Policy()
    if path is not None:
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"{path}: cannot read the policy: {exc.strerror or exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{path}: cannot read the policy: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise UsageError(f"{path}: cannot read the policy: not UTF-8 text") from exc
        validate(doc, str(path))
        try:
            policy = _apply(policy, doc, str(path))
        except UsageError as exc:
            text = str(exc)
            raise UsageError(text if text.startswith(f"{path}:") else f"{path}: {text}") from exc
    if min_age is not None:
        policy = replace(policy, min_age_duration=parse_duration(min_age))
    if (ttl := os.environ.get(TTL_ENV)) is not None and ttl.strip():
        try:
            policy = replace(policy, packument_ttl=_ttl(parse_duration(ttl)))
        except UsageError as exc:
            raise UsageError(f"{TTL_ENV}: {exc}") from exc
    return policy


def _ttl(value: timedelta) -> timedelta:
    if value > MAX_PACKUMENT_TTL:
        raise UsageError(f"packument_ttl: at most {format_duration(MAX_PACKUMENT_TTL)}, not "
                         f"{format_duration(value)} (new versions and unpublished ones must "
                         "be seen)")
    return value


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
        import nodesemver

        if nodesemver.valid_range(rng, False) is None:
            raise UsageError(f"{where}: exceptions[{i}]: {rng!r} is not a version range")
        expires = raw["expires"]
        if isinstance(expires, str):
            try:
                expires = date.fromisoformat(expires)
            except ValueError as exc:
                raise UsageError(f"{where}: exceptions[{i}].expires: {expires!r} is not a date "
                                 "(YYYY-MM-DD)"[:200]) from exc
        if isinstance(expires, datetime):
            expires = expires.date()
        if not isinstance(expires, date):
            raise UsageError(f"{where}: exceptions[{i}].expires: must be a date (YYYY-MM-DD)")
        exceptions.append(Exception_(spec[:at], rng, str(raw["reason"]), expires))
    return Policy(
        known_bad=_action(kb, "action", policy.known_bad, "known-bad"),
        min_age=_action(age, "action", policy.min_age, "min-age"),
        min_age_duration=_duration(age, "duration", policy.min_age_duration, "min-age"),
        min_age_exclude=_names(age, "exclude", policy.min_age_exclude, "min-age"),
        install_scripts=_action(scripts, "action", policy.install_scripts, "install-scripts"),
        install_scripts_allow=_names(scripts, "allow", policy.install_scripts_allow,
                                     "install-scripts"),
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
        scan_window=_duration(scan, "window", policy.scan_window, "scan"),
        scan_sandbox=_flag(scan, "sandbox", policy.scan_sandbox, "scan"),
        scan_on_error=_on_error(scan, policy.scan_on_error),
        offline=_choice(doc, "offline", policy.offline, "", ("block", "warn")),
        packument_ttl=_ttl(_duration(doc.get("registry", {}), "packument_ttl",
                                     policy.packument_ttl, "registry")),
        exceptions=tuple(exceptions),
    )
