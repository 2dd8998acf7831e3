"""``[scan] sandbox = true`` in the policy runs scans of the gate in the real sandbox.

``check`` (and the proxy, which builds its scan gate the same way) judges a recent release by
scanning it; with the policy switch on, that scan runs the release in the sandbox too and the
stored verdict carries what it did. The release is an inert replica served by a loopback fake
registry (its payload writes ~/.bashrc inside the sandbox's tmpfs home)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chainwatch.verdicts import VerdictStore
from tests.helpers import make_tgz, manifest
from tests.hostile.test_verdicts_poisoning import FakeRegistry, project, run
from tests.sandbox_support import need_sandbox

pytestmark = pytest.mark.integration

PERSISTER = make_tgz({
    "package.json": manifest(name="rc-helper", version="1.0.1",
                             scripts={"postinstall": "node p.js"}),
    "index.js": "module.exports = 1;\n",
    "p.js": "require('fs').appendFileSync(require('os').homedir() + '/.bashrc', '\\nnode ~/.x.js\\n');\n",
})


@pytest.mark.parametrize("sandbox", [True, False])
def test_policy_sandbox_switch_runs_checks_scans_in_the_sandbox(tmp_path: Path,
                                                                sandbox: bool) -> None:
    if sandbox:
        need_sandbox()
    fake = FakeRegistry()
    try:
        fake.publish("rc-helper", "1.0.1", PERSISTER, days_ago=1)
        policy = tmp_path / "policy.toml"
        policy.write_text(f"[scan]\nsandbox = {'true' if sandbox else 'false'}\n")
        db = f"sqlite:///{tmp_path / 'cw.db'}"
        app = project(tmp_path / "app", "rc-helper", "1.0.1")
        check = run("check", str(app), "--policy", str(policy), "--db", db, "--registry",
                    fake.url, "--format", "json", home=tmp_path)
    finally:
        fake.close()
    assert check.returncode == 1, check.stdout + check.stderr
    assert any(d["action"] == "block" for d in json.loads(check.stdout)["decisions"])
    (stored,) = VerdictStore(db).for_package("rc-helper")
    rules = {f["rule"] for f in stored.document["findings"]}
    if sandbox:
        assert stored.document["dynamic"]["ran"] is True
        assert "CW-DYN-PERSISTENCE" in rules
    else:
        assert "dynamic" not in stored.document and not {r for r in rules if r.startswith("CW-DYN")}
