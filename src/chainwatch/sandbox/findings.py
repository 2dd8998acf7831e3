"""Sandbox events as CW-DYN findings, with capabilities the scoring already weighs."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence

from chainwatch.model import Finding, Severity
from chainwatch.sandbox.bait import HOST_NAME
from chainwatch.sandbox.strace import DOWNLOADERS, INTERPRETERS, SHELLS, Event

REFERENCE = "https://docs.npmjs.com/cli/using-npm/scripts#best-practices"
LIFECYCLE_PHASES = ("preinstall", "install", "postinstall", "gyp")
#: Places where code written today runs again later: shells, CI, editors and AI agents, cron.
PERSISTENCE = re.compile(
    r"/(\.bashrc|\.bash_profile|\.profile|\.zshrc|\.zprofile|\.zshenv|\.config/fish/|"
    r"\.github/workflows/|\.claude/|\.cursor/|\.vscode/tasks\.json|\.vscode/settings\.json|"
    r"\.config/autostart/|\.config/systemd/|\.local/share/systemd/|\.ssh/authorized_keys|"
    r"\.ssh/config|actions-runner/|\.git/hooks/|\.npmrc|\.yarnrc|crontab|cron\.d/)")
WALLET_HOOKS = ("ethereum", "solana")
#: the npm CLI used to publish (worms) or to show tokens
NPM_ABUSE = re.compile(r"\bnpm(?:-cli\.js)?\s+(?:publish|adduser|login|token|whoami|owner|access|"
                       r"dist-tag|unpublish|deprecate)\b")
#: coding-agent CLIs told to skip their permission prompts (s1ngularity asked them to hunt secrets)
AGENT_CLI = re.compile(r"(?:^|\s)--?(?:dangerously-skip-permissions|yolo|trust-all-tools|"
                       r"dangerously-bypass-approvals-and-sandbox|allow-all-tools)(?=[\s=]|$)")
#: a platform binary fetched the way esbuild and others do when optional dependencies are missing
NPM_INSTALL = re.compile(r"^(?:node: \w+ )?(?:/bin/sh -c )?npm (?:install|i|ci|rebuild)\b")
REGISTRY = re.compile(r"(?:^|[\s/.\"])registry\.npmjs\.org\b")


def _finding(rule: str, severity: Severity, capability: str, technique: str, message: str,
             phase: str) -> Finding:
    return Finding(rule=rule, severity=severity, technique=technique, capability=capability,
                   message=f"{message} (sandbox, {phase} phase)", reference=REFERENCE)


def _own_script(detail: str, package_dir: str) -> bool:
    """``node FILE`` with FILE inside the package: the package running more of its own code
    (electron's entry runs its install.js when the binary is missing). What that child does is
    recorded like anything else in the sandbox; only the spawn itself is no evidence."""
    text = detail.removeprefix("node: ").split(" ", 1)[-1] if detail.startswith("node: ") else detail
    args = text.split()
    if len(args) < 2 or posixpath.basename(args[0]) not in ("node", "nodejs"):
        return False
    script = posixpath.normpath(args[1])
    return bool(package_dir) and script.startswith(package_dir.rstrip("/") + "/")


def findings_for(events: Sequence[Event], package_dir: str = "") -> list[Finding]:
    """One finding per rule and phase: the first event that shows it, others counted."""
    out: list[Finding] = []
    seen: set[tuple[str, str]] = set()

    def add(f: Finding, key: str) -> None:
        if (f.rule, key) not in seen:
            seen.add((f.rule, key))
            out.append(f)

    for e in events:
        stolen = [b for b in e.bait if b != HOST_NAME]
        if stolen:
            add(_finding("CW-DYN-EXFIL", Severity.CRITICAL, "exfil", "exfiltration",
                         f"bait secret ({', '.join(stolen)}) sent out: {e.detail}", e.phase),
                e.phase)
        elif e.bait:
            add(_finding("CW-DYN-EXFIL", Severity.HIGH, "exfil", "reconnaissance",
                         f"host facts (the sandbox's {HOST_NAME}) sent out: {e.detail}", e.phase),
                e.phase + "/host")
        if e.kind == "exec" and AGENT_CLI.search(e.detail):
            add(_finding("CW-DYN-SHELL", Severity.HIGH, "exec", "process-execution",
                         f"ran an AI agent CLI with its safety checks off: {e.detail}", e.phase),
                e.phase + "/agent")
        if e.kind == "exec" and NPM_ABUSE.search(e.detail):
            add(_finding("CW-DYN-SHELL", Severity.HIGH, "propagation", "worm",
                         f"used the npm CLI to publish or read tokens: {e.detail}", e.phase),
                e.phase + "/npm")
        if e.kind in ("file", "write") and e.detail.endswith("(by npm)"):
            continue  # the npm CLI reading its own configuration, filling its own cache
        if e.kind == "file" and (e.target.startswith("/proc/") or any(
                e.target.endswith(s) for s in ("/.npmrc", "/credentials", "/id_ed25519",
                                               "/hosts.yml")) or "/keystore/" in e.target):
            add(_finding("CW-DYN-BAIT-READ", Severity.HIGH, "secrets", "credential-theft",
                         f"read a bait secret: {e.detail}", e.phase), e.phase)
        elif e.kind == "env" and "*" not in e.detail:
            add(_finding("CW-DYN-BAIT-ENV", Severity.MEDIUM, "secrets", "credential-theft",
                         f"read a bait token variable: {e.detail}", e.phase), e.phase)
        elif e.kind in ("net", "dns"):
            registry = bool(REGISTRY.search(e.detail))
            add(_finding("CW-DYN-NETWORK", Severity.LOW if registry else Severity.MEDIUM,
                         "network", "network-access", f"network attempt: {e.detail}", e.phase),
                e.phase + ("/registry" if registry else ""))
        elif e.kind == "exec":
            base = e.target or posixpath.basename(e.detail.split(" ", 1)[0])
            own = e.phase not in LIFECYCLE_PHASES and _own_script(e.detail, package_dir)
            if own:
                add(_finding("CW-DYN-SPAWN", Severity.LOW, "exec", "process-execution",
                             f"loading the package ran another of its own scripts: {e.detail}",
                             e.phase), e.phase + "/own")
            elif e.detail.startswith("node: "):  # the preload's view; strace's record decides
                if e.phase not in LIFECYCLE_PHASES:
                    add(_finding("CW-DYN-SPAWN", Severity.MEDIUM, "exec", "process-execution",
                                 f"loading the package started a process: {e.detail}", e.phase),
                        e.phase)
            elif NPM_INSTALL.search(e.detail):
                pass  # what npm runs is seen as it runs, in the same sandbox
            elif (e.by == "node" and base in SHELLS | INTERPRETERS) or base in DOWNLOADERS:
                add(_finding("CW-DYN-SHELL", Severity.HIGH, "exec", "process-execution",
                             f"spawned {base}: {e.detail}", e.phase), e.phase)
            elif e.phase not in LIFECYCLE_PHASES:
                add(_finding("CW-DYN-SPAWN", Severity.MEDIUM, "exec", "process-execution",
                             f"loading the package started a process: {e.detail}", e.phase),
                    e.phase)
        elif e.kind == "write":
            if PERSISTENCE.search(e.target or e.detail):
                add(_finding("CW-DYN-PERSISTENCE", Severity.CRITICAL, "persistence", "persistence",
                             f"wrote a persistence path: {e.detail}", e.phase), e.phase)
            else:
                add(_finding("CW-DYN-WRITE-OUTSIDE", Severity.HIGH, "dropper", "dropper",
                             f"wrote outside the package: {e.detail}", e.phase), e.phase)
        elif e.kind == "hook":
            wallet = any(w in e.detail for w in WALLET_HOOKS)
            add(_finding("CW-DYN-HOOK", Severity.CRITICAL if wallet else Severity.HIGH,
                         "browser-hook", "browser-hijack",
                         f"replaced a browser API: {e.detail}", e.phase),
                e.phase + ("/wallet" if wallet else ""))
        elif e.kind == "eval":
            add(_finding("CW-DYN-EVAL", Severity.LOW, "eval", "dynamic-code",
                         f"ran generated code: {e.detail}", e.phase), e.phase)
        elif e.kind == "limit":
            add(_finding("CW-DYN-LIMIT", Severity.LOW, "", "resource-abuse",
                         f"hit a sandbox limit: {e.detail}", e.phase), e.phase)
        elif e.kind == "tamper":
            add(_finding("CW-DYN-TAMPER", Severity.HIGH, "obfuscation", "anti-analysis",
                         f"the sandbox supervisor did not finish: {e.detail}", e.phase), e.phase)
    return out


def unavailable(reason: str) -> Finding:
    """Dynamic analysis was asked for and could not run: the verdict says so (fail closed)."""
    return Finding(rule="CW-DYN-UNAVAILABLE", severity=Severity.MEDIUM, technique="analysis-gap",
                   capability="dynamic-unavailable",
                   message=f"dynamic analysis was requested but did not run: {reason}",
                   reference=REFERENCE)
