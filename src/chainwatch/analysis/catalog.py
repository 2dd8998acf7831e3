"""Every finding id chainwatch emits from code rather than from a rule file, in one place.

Rule files (``rules/*.yml``) describe themselves. The findings below come from the archive
reader, the scan itself, metadata signals, the diff, the sandbox and the outputs; ``rules list``
shows them beside the rule files, and a test holds that every ``CW-`` id written anywhere in
``src/`` is listed here or in a rule file. A family (``CW-POLICY-*``, ``CW-VERDICT-*``) is one
entry whose id ends with ``*``.
"""

from __future__ import annotations

from dataclasses import dataclass

from chainwatch.model import Severity


@dataclass(frozen=True)
class CodeFinding:
    id: str
    #: the highest severity the finding is given (``policy`` for gate decisions, which carry an
    #: action instead)
    severity: str
    technique: str
    #: where it is emitted
    source: str
    description: str


def _f(rule: str, severity: Severity | str, technique: str, source: str,
       description: str) -> CodeFinding:
    level = severity.value if isinstance(severity, Severity) else severity
    return CodeFinding(rule, level, technique, source, description)


#: severities, short (N: info)
C, H, M, L, N = Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.INFO

CODE_FINDINGS: tuple[CodeFinding, ...] = (
    # the archive reader: whatever cannot be read as npm writes it
    _f("CW-ARCHIVE-BOMB", C, "archive-tampering", "archive",
       "Compression ratio beyond chainwatch's or node-tar's bound: not read further."),
    _f("CW-ARCHIVE-CORRUPT", C, "archive-tampering", "archive",
       "Corrupt or truncated gzip/tar, or data npm's extraction fails on."),
    _f("CW-ARCHIVE-UNREADABLE", C, "archive-tampering", "archive",
       "Something chainwatch cannot read the way npm does (critical in a tarball, low for a "
       "file of a local folder)."),
    _f("CW-ARCHIVE-LIMIT", C, "archive-tampering", "archive",
       "A bound on entries, headers, per-file or total bytes left something unread."),
    _f("CW-ARCHIVE-UNSAFE-PATH", C, "archive-tampering", "archive",
       "Path traversal, an absolute path or a name npm or the file system refuses."),
    _f("CW-ARCHIVE-LINK", H, "archive-tampering", "archive",
       "A symbolic or hard link (never followed; npm skips it)."),
    _f("CW-ARCHIVE-DEVICE", H, "archive-tampering", "archive",
       "A device, FIFO or other special entry."),
    _f("CW-ARCHIVE-INVALID-HEADER", H, "archive-tampering", "archive",
       "A tar header with a bad checksum or a forbidden link name (skipped, as node-tar does)."),
    _f("CW-ARCHIVE-DUPLICATE", M, "archive-tampering", "archive",
       "An entry that appears twice; the last copy is the one npm writes."),
    _f("CW-ARCHIVE-SKIPPED", M, "archive-tampering", "archive",
       "An entry npm does not write (root-level file, skipped type)."),
    # the scan itself
    _f("CW-KNOWN-BAD", C, "known-bad", "scan",
       "The version is in the known-bad store or the built-in list."),
    _f("CW-TARBALL-GONE", N, "known-bad", "scan",
       "The registry no longer serves a known-bad version: the verdict rests on the list."),
    _f("CW-INTEGRITY-MISMATCH", C, "tampering", "scan",
       "Tarball bytes differ from the registry's integrity, or the integrity holds two hashes "
       "of one algorithm."),
    _f("CW-MANIFEST-FIELD-TYPE", N, "manifest-anomaly", "scan",
       "package.json fields of the wrong type, read as absent as npm does."),
    _f("CW-DIFF-INJECTED-OBFUSCATION", C, "code-injection", "diff",
       "Strong obfuscation injected into an existing clean file of a patch or minor release "
       "(critical in a file run at install)."),
    # metadata signals (full packuments)
    _f("CW-META-NEW-PUBLISHER", M, "metadata", "metadata",
       "Published by an account that published none of the previous releases."),
    _f("CW-META-EMAIL-DOMAIN", M, "metadata", "metadata",
       "The publisher's e-mail domain changed."),
    _f("CW-META-MAINTAINERS", L, "metadata", "metadata",
       "The maintainer list changed."),
    _f("CW-META-DORMANT", L, "metadata", "metadata",
       "Published after a year or more without a release."),
    _f("CW-META-PROVENANCE-LOST", H, "metadata", "metadata",
       "Earlier versions had npm provenance, this one has none."),
    _f("CW-META-TRUSTED-PUBLISHING-LOST", H, "metadata", "metadata",
       "Earlier versions were published by trusted publishing, this one was not."),
    _f("CW-META-GITHEAD-MISSING", L, "metadata", "metadata",
       "Earlier versions recorded a gitHead, this one does not."),
    _f("CW-META-MANIFEST-CONFUSION", H, "metadata", "metadata",
       "The tarball's package.json differs from the registry document."),
    _f("CW-META-YOUNG-DEPENDENCY", M, "metadata", "metadata",
       "A new dependency whose package is only days old."),
    _f("CW-META-DEPENDENCY-CONFUSION", H, "metadata", "metadata",
       "An internal-looking name with a version of 90 or more and few releases: a "
       "dependency-confusion probe."),
    _f("CW-META-TYPOSQUAT", M, "metadata", "metadata",
       "A name that imitates one of the 1,000 most-downloaded packages."),
    # the sandbox (--sandbox)
    _f("CW-DYN-EXFIL", C, "exfiltration", "sandbox",
       "A bait secret left in a DNS name, a request or a TLS server name."),
    _f("CW-DYN-PERSISTENCE", C, "persistence", "sandbox",
       "A write to shell start files, CI workflows, editor or agent settings, autostart, "
       "authorized_keys, .npmrc, cron or a runner folder."),
    _f("CW-DYN-HOOK", C, "browser-hijack", "sandbox",
       "A browser API replaced in the browser phase (critical for ethereum/solana, else high)."),
    _f("CW-DYN-BAIT-READ", H, "credential-theft", "sandbox",
       "A bait secret file (or /proc/*/environ) opened."),
    _f("CW-DYN-SHELL", H, "process-execution", "sandbox",
       "Package code started a shell or interpreter, or anything started a downloader "
       "(process-execution); anything used the npm CLI to publish or read tokens (worm)."),
    _f("CW-DYN-WRITE-OUTSIDE", H, "dropper", "sandbox",
       "Any other write outside the package and /tmp."),
    _f("CW-DYN-TAMPER", H, "anti-analysis", "sandbox",
       "The sandbox supervisor did not finish."),
    _f("CW-DYN-NETWORK", M, "network-access", "sandbox",
       "Any DNS, HTTP, TLS or socket attempt (low when it is the npm registry)."),
    _f("CW-DYN-SPAWN", M, "process-execution", "sandbox",
       "Loading the package (not installing it) started a process."),
    _f("CW-DYN-BAIT-ENV", M, "credential-theft", "sandbox",
       "A bait token variable read by name."),
    _f("CW-DYN-UNAVAILABLE", M, "analysis-gap", "sandbox",
       "--sandbox was asked for and could not run; nothing ran."),
    _f("CW-DYN-EVAL", L, "dynamic-code", "sandbox", "Generated code was run."),
    _f("CW-DYN-LIMIT", L, "resource-abuse", "sandbox", "A sandbox phase stopped at a bound."),
    # outputs
    _f("CW-EXPOSURE-KNOWN-BAD", H, "known-bad", "exposure (SARIF)",
       "An environment holds a known-bad version."),
    _f("CW-POLICY-*", "policy", "gate", "check (SARIF)",
       "A gate decision, one id per policy rule: CW-POLICY-KNOWN-BAD, -MIN-AGE, "
       "-INSTALL-SCRIPTS, -NEW-INSTALL-SCRIPT, -REMOTE-DEPENDENCY, -TRUST-DOWNGRADE, "
       "-PUBLISHER-CHANGE, -SCAN-MALICIOUS, -SCAN-SUSPICIOUS, -SCAN-ERROR, -GATE-ERROR, "
       "-REGISTRY, -TIMEOUT, -EXCEPTION; its level is the policy's action."),
    _f("CW-VERDICT-*", C, "known-bad", "verdict memory",
       "A record of chainwatch's own malicious verdict (CW-VERDICT-name@version) in the "
       "known-bad store; matched versions get CW-KNOWN-BAD."),
    # second wave (issue 13 A): release signals, dependencies, provenance, normalisation
    _f("CW-DIFF-NEW-INSTALL-SCRIPT", M, "install-script", "diff",
       "An install script in a package whose earlier versions never had one, running a local file."),
    _f("CW-DIFF-ENTRY-PAYLOAD", H, "code-injection", "diff",
       "New behaviour in an entry point (main, module, exports, browser, bin) of a patch or minor "
       "release: it runs on require or import, with no install script. Critical in a patch "
       "release when that behaviour hooks a page or wallet API or runs a download."),
    _f("CW-DEP-CHAIN", C, "dependency-chain", "scan",
       "A dependency new in this release is flagged when scanned itself "
       "(release → dependency@version → finding)."),
    _f("CW-DEP-PHANTOM", M, "phantom-dependency", "diff",
       "A dependency new in this release that no file imports (medium with an install script)."),
    _f("CW-DEP-UNSCANNED", N, "dependency-chain", "scan",
       "A dependency new in this release could not be fetched or scanned."),
    _f("CW-META-PROVENANCE-DRIFT", H, "metadata", "metadata",
       "Provenance names another repository (high), workflow file or trigger (medium) than the "
       "package's earlier releases."),
    _f("CW-REGISTRY-HISTORY", N, "baseline", "scan",
       "A local tarball whose sha512 equals the registry's release was judged against its "
       "registry history."),
    # benign install shapes within bounds (analysis/install_profile.py)
    _f("CW-INSTALL-PLATFORM-BINARY", N, "install-time-execution", "analysis",
       "An install hook fetches a platform binary within bounds (hooks unchanged from the "
       "previous release, only the registry or the declared repository, nothing but fetch, "
       "write and run): its download findings weigh low."),
    _f("CW-DIFF-INSTALL-NEW-HOST", M, "install-time-execution", "diff",
       "A new or changed file that runs at install names a host the previous release's "
       "install-time files never named (places: host, or host/owner on GitHub, GitLab, the "
       "npm registry; data files the install files read count). Critical when that file "
       "downloads and runs something in a patch or minor release."),
    _f("CW-DIFF-INSTALL-ENV-CHILD", H, "install-time-execution", "diff",
       "A changed file that runs at install, fetching, writing and running a file, now starts "
       "a process with the whole environment (env: process.env)."),
    _f("CW-ANALYSIS-LIMIT", M, "obfuscation", "analysis",
       "A file nests deeper than 500 levels (real code: 200 at most): the structural "
       "(tree-sitter) search, whose time grows with the nesting, did not look below that, so "
       "the file was not analysed whole and the release is not benign."),
    _f("CW-NORMALIZE-LIMIT", N, "obfuscation", "analysis",
       "A bound of the normaliser (size, depth, folds, time) left part of a file unfolded."),
)

BY_ID = {f.id: f for f in CODE_FINDINGS}


def listed(rule_id: str) -> bool:
    """Whether ``rule_id`` is one of the code findings above (a family by its prefix)."""
    if rule_id in BY_ID:
        return True
    return any(f.id.endswith("*") and rule_id.startswith(f.id[:-1]) for f in CODE_FINDINGS)
