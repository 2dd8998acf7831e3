"""Dynamic analysis of one release: plan its phases, run them in the sandbox, read the trace,
and turn what happened into events and CW-DYN findings. If the sandbox cannot start, nothing
runs: the result says ``ran: false`` and why."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from chainwatch.model import Dynamic, DynamicEvent, Finding, PackageFiles, PackageRef
from chainwatch.sandbox.bait import HOME, USER, make_bait
from chainwatch.sandbox.cgroup import Cgroup
from chainwatch.sandbox.findings import findings_for, unavailable
from chainwatch.sandbox.launcher import (
    LOG_DIR,
    NODE_DIR,
    RUN_DIR,
    Limits,
    Tools,
    launch,
    node_dirs,
    outer_argv,
    prepare,
    sink_certificate,
    system_layout,
)
from chainwatch.sandbox.phases import Phase, plan
from chainwatch.sandbox.strace import Event, Parser

PROJECT = f"{HOME}/project"
SETTLE_MS = 1000


@dataclass(frozen=True)
class Outcome:
    dynamic: Dynamic
    findings: tuple[Finding, ...]


def _safe_name(name: str) -> str:
    """The folder name under node_modules; a hostile name cannot leave it."""
    parts = [p for p in name.split("/") if p not in ("", ".", "..")][:2]
    cleaned = "/".join("".join(c for c in p if c.isalnum() or c in "-_.@") or "pkg" for p in parts)
    return cleaned or "pkg"


def _phase_env(phase: Phase, ref: PackageRef, package_dir: str, bait_env: dict[str, str],
               path: str) -> dict[str, str]:
    env = {
        "HOME": HOME, "USER": USER, "LOGNAME": USER, "SHELL": "/bin/sh", "LANG": "C.UTF-8",
        "PATH": f"{PROJECT}/node_modules/.bin:{path}", "TMPDIR": "/tmp",
        "INIT_CWD": PROJECT, "npm_package_name": ref.name, "npm_package_version": ref.version,
        "npm_package_json": f"{package_dir}/package.json", "npm_config_user_agent":
        "npm/10.8.2 node/v20.20.2 linux x64 workspaces/false", "npm_execpath":
        "/usr/lib/node_modules/npm/bin/npm-cli.js", "npm_node_execpath": "/usr/bin/node",
        "NODE": "/usr/bin/node", "CI": "true",
        # a nested npm (platform binaries fetched at postinstall) gives up at once offline
        "npm_config_fetch_retries": "0", "npm_config_fetch_timeout": "5000",
        "npm_config_update_notifier": "false", "npm_config_audit": "false",
        # without guard regions WebAssembly fits the address-space bound (fetch needs it:
        # undici parses HTTP in WebAssembly, and crashed before sending anything)
        "NODE_OPTIONS": f"--require {NODE_DIR}/preload.js --disable-wasm-trap-handler",
        # the sink completes TLS with a throw-away certificate, so what is sent over https is
        # read like plain http (Node's https and fetch only)
        "NODE_TLS_REJECT_UNAUTHORIZED": "0",
        **bait_env, **phase.env,
    }
    return env


def run_dynamic(files: PackageFiles, ref: PackageRef, tools: Tools | None = None,
                limits: Limits | None = None) -> Outcome:
    """Run the release in the sandbox (never outside it) and report what it did."""
    started = time.monotonic()
    tools = tools or Tools()
    limits = limits or Limits()

    def not_run(reason: str) -> Outcome:
        return Outcome(Dynamic(False, round(time.monotonic() - started, 3), reason),
                       (unavailable(reason),))

    why = tools.missing()
    if why:
        return not_run(why)
    phases = plan(files, dict(files.manifest.raw))  # parsed once, under limits
    if not phases:
        return Outcome(Dynamic(True, 0.0, "nothing to run: no install scripts and no entry point"),
                       ())
    assert tools.node
    extra = node_dirs(tools.node)
    path = ":".join([*(f"{d}/bin" for d in extra), "/usr/local/bin", "/usr/bin", "/bin"])
    package_dir = f"{PROJECT}/node_modules/{_safe_name(ref.name)}"
    bait = make_bait()
    token = secrets.token_hex(16)
    config_phases = []
    for phase in phases:
        argv = [a.replace("{js}", NODE_DIR).replace("{pkg}", package_dir) for a in phase.argv]
        if argv[0] == "node":
            argv[0] = os.path.realpath(tools.node)
        config_phases.append({"name": phase.name, "argv": argv, "cwd": package_dir,
                              "env": _phase_env(phase, ref, package_dir, bait.env, path)})
    binds = ["/usr", *extra]
    sys_binds, links = system_layout()
    config = {
        "token": token, "home": HOME, "hostname": bait.hostname, "package_dir": package_dir,
        "stage": f"{RUN_DIR}/stage",
        "js_dir": NODE_DIR, "log_dir": LOG_DIR, "bait_files": bait.files, "baits": bait.values,
        "project_files": {"project/package.json": '{"name":"app","version":"1.0.0","private":true}\n'},
        "phases": config_phases, "limits": limits.as_dict(),
        "ro_binds": sorted(set(sys_binds + binds)), "symlinks": links,
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "run").mkdir()
        if sink_certificate(work / "run"):
            config["tls"] = {"cert": f"{RUN_DIR}/sink.crt", "key": f"{RUN_DIR}/sink.key"}
        # the harness reads its settings from a file beside it, never from the environment
        prepare(work, config, {f.path: (f.data, f.mode) for f in files.files},
                {"dir": package_dir, "env": sorted(bait.env), "settle": SETTLE_MS})
        log = work / "trace.log"
        deadline = len(phases) * (limits.phase_seconds + 3) + 15
        group = Cgroup(f"chainwatch-{token[:16]}", limits.sandbox_tasks,
                       limits.sandbox_memory_bytes)
        bounded = group.limits_tasks
        try:
            raw = launch(group.enter_command() + outer_argv(tools, work, log, limits, extra, bait.hostname),
                         log, deadline)
        finally:
            group.close()
        keep = os.environ.get("CHAINWATCH_SANDBOX_TRACE")
        if keep and log.exists():  # debugging: keep the raw trace
            shutil.copyfile(log, keep)
        parser = Parser(token, HOME, package_dir, bait.paths, bait.values)
        if log.exists():
            with log.open(encoding="utf-8", errors="replace") as fh:
                run = parser.feed(fh)
        else:
            run = parser.run
    if not run.ready:
        detail = raw.killed or (raw.stderr.strip().splitlines() or ["no output"])[-1]
        return not_run(f"the sandbox did not start: {detail[:300]}")
    events: list[Event] = list(run.events)
    for end in run.phases:
        if end.get("timed_out"):
            events.append(Event("limit", f"stopped after {limits.phase_seconds} s",
                                str(end.get("name"))))
    if raw.killed:
        events.append(Event("limit", f"run stopped: {raw.killed}", "all"))
    if not run.done and not raw.killed:
        events.append(Event("tamper", "the supervisor was killed before all phases ran", "all"))
    if run.dropped:
        events.append(Event("limit", f"{run.dropped} further events not kept", "all"))
    seconds = round(time.monotonic() - started, 3)
    problems = list(run.problems)
    if not bounded and os.geteuid() == 0:
        problems.append("process count not bounded: no cgroup, and RLIMIT_NPROC does not hold "
                        "for root (" + "; ".join(group.problems) + ")")
    reason = "; ".join(problems)
    dynamic = Dynamic(True, seconds, reason,
                      tuple(DynamicEvent(e.kind, e.detail, e.phase) for e in events))
    return Outcome(dynamic, tuple(findings_for(events, package_dir)))
