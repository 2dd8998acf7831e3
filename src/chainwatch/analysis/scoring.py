"""The one place where findings become a verdict: level, 0-100 score and a short explanation.

A malicious verdict needs strong evidence: a critical finding (integrity mismatch, unsafe
archive, DNS beacon, env-keyed decryption), or new dangerous capability together with at
least two of concealment / theft / exfiltration / attack behaviour, one of them high; or an
install-time script whose file does something high-severity. Findings for capabilities the
baseline already had weigh little, so popular libraries' ordinary code stays benign.

Without a baseline (``standalone``) nothing weighs less for being old, so two calibrations keep
a framework's thousands of files from adding up to an attack (docs/detection.md has the
figures): in a large package the score is that of the most incriminating file (or region of a
bundle) plus a bounded share of the rest (capabilities spread over unrelated files saturate),
and an *established*
release (analysis/prior.py: a registry-verified, long-lived or top package at a plain version
with no install hook) needs twice the evidence, and more than one high finding, to be
suspicious. The malicious combinations are the same in every mode.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from chainwatch.model import Finding, Level, Severity

CATEGORY: dict[str, str] = {
    "obfuscation": "concealment",
    "secrets": "theft",
    "wallet": "theft",
    "fingerprint": "theft",
    "exfil": "exfiltration",
    "browser-hook": "attack",
    "dropper": "attack",
    "propagation": "attack",
    "persistence": "attack",
    "sabotage": "attack",
    "hidden-process": "attack",
    # code fetched and run at once (curl | sh, iwr | iex, npx -y pkg@latest): never in the package
    "remote-exec": "attack",
    # behaviour new in an entry file: it runs on require/import (analysis/release_signals.py)
    "load-time": "attack",
    "publisher-change": "trust",
    "trust-downgrade": "trust",
    "manifest-confusion": "trust",
    "typosquat": "trust",
    "dependency-confusion": "trust",
    "new-dependency": "trust",
    "archive-anomaly": "integrity",
    "integrity": "integrity",
    "known-bad": "integrity",
    # scan --sandbox asked for and could not run: not decided, so not benign (fail closed)
    "dynamic-unavailable": "trust",
    # a file the structural search could not finish (engine.ANALYSIS_LIMIT): not clean either
    "analysis-incomplete": "trust",
}
BEHAVIOUR = {"concealment", "theft", "exfiltration", "attack"}
DANGER_CAPABILITIES = {
    "install-script", "exec", "eval", "network", "browser-hook", "dropper", "binary",
    "propagation", "persistence", "sabotage", "hidden-process", "exfil", "load-time",
    "remote-exec",
}
WEIGHT = {Severity.INFO: 0.0, Severity.LOW: 4.0, Severity.MEDIUM: 12.0,
          Severity.HIGH: 30.0, Severity.CRITICAL: 60.0}
PREEXISTING_FACTOR = 0.15
#: standalone, large package: what the files other than the most incriminating one may add
#: (a share of their score, at most half a medium finding)
SPREAD_SHARE = 0.25
SPREAD_CAP = 6.0
#: standalone, large package: findings of one file more lines apart than this are two places
REGION_GAP = 300
#: standalone, established release: its evidence weighs half (strong evidence needed)
ESTABLISHED_FACTOR = 0.5
BAND = {Level.BENIGN: (0, 24), Level.SUSPICIOUS: (25, 69), Level.MALICIOUS: (70, 100)}
BUMP_FACTOR = {"patch": 1.5, "prerelease": 1.5, "minor": 1.0, "major": 0.5, "unknown": 1.0}


@dataclass(frozen=True)
class Scored:
    level: Level
    score: int
    explanation: str


def rank(f: Finding) -> int:
    """Severity as weighed: evidence in code that runs at install counts one step higher.

    Not a finding on a lifecycle command line itself (``file`` package.json): script rules only
    ever see install-time commands, so their severity already says what running at install
    means (``node -e "require('./banner')"`` stays medium)."""
    r = f.severity.rank
    if (f.install_time and f.capability != "install-script" and r in (1, 2)
            and f.file != "package.json"):
        return r + 1
    return r


_BY_RANK = {s.rank: s for s in Severity}


def evidence_order(f: Finding) -> tuple[bool, int, int, str, int]:
    """How a verdict lists its findings: new before old, by severity, then what the code does
    (attack, theft, exfiltration) before how it hides or what it merely can (concealment, a
    computed require, eval) at the same severity, then by place."""
    acts = CATEGORY.get(f.capability) in ("attack", "theft", "exfiltration")
    return (f.preexisting, -f.severity.rank, 0 if acts else 1, f.file or "", f.line or 0)


def _raw_score(findings: Sequence[Finding]) -> float:
    """Each rule once, at its strongest, a little more when it fires again in another file (at
    most double). The lines of one match are one place: a rule whose strings sit on three
    lines (``detached: true`` / ``stdio: 'ignore'`` / ``.unref()``) is not three findings."""
    per_rule: dict[str, list[Finding]] = {}
    for f in findings:
        per_rule.setdefault(f.rule, []).append(f)
    total = 0.0
    for group in per_rule.values():
        strongest = max(group, key=lambda f: (not f.preexisting, rank(f)))
        weight = WEIGHT[_BY_RANK[rank(strongest)]]
        if strongest.preexisting:
            weight *= PREEXISTING_FACTOR
        places = len({f.file for f in group})
        total += weight * min(2.0, 1.0 + 0.1 * (places - 1))
    return total


def _places(findings: Sequence[Finding]) -> list[list[Finding]]:
    """Findings grouped by file and, within a file, into runs of lines at most
    ``REGION_GAP`` apart: a bundle is many modules in one file (playwright-core's 3.6 MB
    coreBundle.js holds its daemon launcher 58,000 lines from an eval in its selector engine),
    so places that far apart are as unrelated as two files. A minified bundle (one long line)
    stays one place."""
    per_file: dict[str, list[Finding]] = {}
    for f in findings:
        per_file.setdefault(f.file or "package.json", []).append(f)
    out: list[list[Finding]] = []
    for group in per_file.values():
        ordered = sorted(group, key=lambda f: f.line or 0)
        run = [ordered[0]]
        for f in ordered[1:]:
            if (f.line or 0) - (run[-1].line or 0) > REGION_GAP:
                out.append(run)
                run = []
            run.append(f)
        out.append(run)
    return out


def _concentrated_score(findings: Sequence[Finding]) -> float:
    """The most incriminating place's score plus a bounded share of all the others.

    Package-level findings (manifest, metadata, archive) count as one more "file". A payload
    concentrates its behaviour in one place; eval in a template engine, a long line in a
    vendored decoder and an entropy blob in a hash table are unrelated and saturate at
    ``SPREAD_CAP`` together, however many files (or distant parts of a bundle) hold them.
    """
    scores = sorted((_raw_score(group) for group in _places(findings)), reverse=True)
    if not scores:
        return 0.0
    return scores[0] + min(SPREAD_CAP, SPREAD_SHARE * sum(scores[1:]))


HIGH = Severity.HIGH.rank
#: Rules of analysis/chains.py (rules/chains.yml): source -> transform -> sink in one file.
CHAIN_PREFIX = "CW-CHAIN-"
MEDIUM = Severity.MEDIUM.rank


def _combination(findings: Sequence[Finding], small_package: bool,
                 new_danger: bool) -> tuple[str, list[str]] | None:
    """Strong evidence in one place: a file, or the whole package when it is small.

    Either two behaviour categories (concealment, theft, exfiltration, attack), one of them high,
    where the code also has a dangerous capability (new to the package, or used in that very
    changed file: key theft over the network a library always had); or a high-severity new
    dangerous capability beside a behaviour of another category. A payload concentrates its
    behaviour; in a framework of thousands of files, a polyfill here and a wordlist there are
    unrelated and must not add up to one attack.
    """
    groups: dict[str, list[Finding]] = {}
    danger_in: dict[str, bool] = {}
    for f in findings:
        where = f.file or "package.json"
        if f.capability in DANGER_CAPABILITIES:
            danger_in[where] = True
        if not f.preexisting and rank(f) >= MEDIUM and (
                CATEGORY.get(f.capability) in BEHAVIOUR or f.capability in DANGER_CAPABILITIES):
            groups.setdefault(where, []).append(f)
    if small_package:
        groups["the package"] = [f for group in groups.values() for f in group]
        danger_in["the package"] = any(danger_in.values())
    for where, group in groups.items():
        behaviour = [f for f in group if CATEGORY.get(f.capability) in BEHAVIOUR]
        cats = {CATEGORY[f.capability] for f in behaviour}
        if (len(cats) >= 2 and any(rank(f) >= HIGH for f in behaviour)
                and (new_danger or danger_in.get(where, False))):
            return where, sorted(cats)
        for danger in (f for f in group if f.capability in DANGER_CAPABILITIES and rank(f) >= HIGH):
            # a second technique of the same kind (a downloader beside a detached process in one
            # bundle) is not yet concealment, theft or exfiltration
            own = CATEGORY.get(danger.capability)
            other = [f for f in behaviour if f.rule != danger.rule and CATEGORY[f.capability] != own]
            if other:
                return where, sorted({danger.capability, *(CATEGORY[f.capability] for f in other)})
    return None


def score(
    findings: Sequence[Finding],
    capabilities_added: Iterable[str] = (),
    bump: str = "unknown",
    small_package: bool = True,
    standalone: bool = False,
    established: bool = False,
) -> Scored:
    """``standalone``: judged without a baseline; ``established``: see analysis/prior.py
    (only weighed standalone: with a baseline, the diff already says what is new)."""
    new = [f for f in findings if not f.preexisting]
    added_danger = sorted(set(capabilities_added) & DANGER_CAPABILITIES)
    new_danger = bool(added_danger) or any(
        f.capability in DANGER_CAPABILITIES for f in new)
    high_cats = {CATEGORY.get(f.capability, "") for f in new if rank(f) >= HIGH}
    med_cats = {CATEGORY.get(f.capability, "") for f in new if rank(f) >= MEDIUM}
    critical = [f for f in new if f.severity is Severity.CRITICAL]
    install_hook = any(f.capability == "install-script" for f in new)
    install_time_behaviour = [f for f in new if f.install_time and rank(f) >= MEDIUM
                              and CATEGORY.get(f.capability) in BEHAVIOUR]
    # strong evidence by the rule's own severity: one minified line in a preinstall bundle is
    # not; theft, exfiltration or concealment rated high are; downloading a platform binary at
    # install is common (esbuild, sharp), so attack needs two techniques, one of them high
    install_time_bad = [f for f in install_time_behaviour if f.severity.rank >= HIGH
                        and CATEGORY[f.capability] != "attack"]
    # ...but running a download (curl | sh) at install is never a platform binary, nor is planting
    # a foothold in the developer's tools (an agent hook, a folder-open task): one high is enough
    install_time_bad += [f for f in install_time_behaviour
                         if f.capability in ("remote-exec", "persistence")
                         and f.severity.rank >= HIGH]
    attack = [f for f in install_time_behaviour if CATEGORY[f.capability] == "attack"]
    if not install_time_bad and len({f.rule for f in attack}) >= 2 and any(
            f.severity.rank >= HIGH for f in attack):
        install_time_bad = sorted(attack, key=lambda f: -f.severity.rank)

    # a full source -> transform -> sink chain (analysis/chains.py) is one strong finding: critical
    # by itself; high where the code runs at install or the package is small (a payload)
    chains = [f for f in new if f.rule.startswith(CHAIN_PREFIX) and rank(f) >= HIGH
              and (f.severity is Severity.CRITICAL or f.install_time or small_package)]

    concentrate = standalone and not small_package
    established = established and standalone
    raw = (_concentrated_score(findings) if concentrate else _raw_score(findings)) \
        + 8.0 * BUMP_FACTOR.get(bump, 1.0) * len(added_danger)
    if established:
        raw *= ESTABLISHED_FACTOR
        # one high finding somewhere in an established framework is a capability, not yet an
        # attack: it takes two highs in one file (or a critical, or a combination) to flag
        high_cats = set()
    reasons: list[str] = []
    if critical:
        level = Level.MALICIOUS
        reasons.append(f"critical finding: {critical[0].message}")
    elif chains:
        level = Level.MALICIOUS
        reasons.append(f"behaviour chain in {chains[0].file}: {chains[0].message}")
    elif combo := _combination(findings, small_package, new_danger):
        level = Level.MALICIOUS
        where, cats = combo
        reasons.append(f"new dangerous capability with {' and '.join(cats)} in {where}")
    elif install_hook and install_time_bad:
        level = Level.MALICIOUS
        reasons.append(f"install script runs {install_time_bad[0].file}, which shows "
                       f"{CATEGORY[install_time_bad[0].capability]}")
    elif raw >= BAND[Level.SUSPICIOUS][0] or high_cats - {""} or (med_cats & {"trust"}):
        level = Level.SUSPICIOUS
        cats = sorted((med_cats | high_cats) - {""})
        reasons.append("unusual for this package: " + (", ".join(cats) or "several weak signals"))
    else:
        level = Level.BENIGN
        reasons.append("no new dangerous behaviour" if findings else "nothing found")
    if established and level is not Level.MALICIOUS:
        reasons.append("an established release without a baseline needs strong evidence")
    elif concentrate and level is not Level.MALICIOUS and findings:
        reasons.append("no baseline: scored by the most incriminating file")
    if added_danger:
        reasons.append("capabilities new since the baseline: " + ", ".join(added_danger))
    low, high = BAND[level]
    value = round(min(max(raw, low), high))
    return Scored(level, value, "; ".join(reasons))
