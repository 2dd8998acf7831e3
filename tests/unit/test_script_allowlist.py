"""The default install-script allow-list holds no package whose install script was ever the way
in (issue 12, new-user pass): an allowed name is never asked about its install script again."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import yaml

from chainwatch.gate.policy import DEFAULT_SCRIPT_ALLOW, Policy
from tests.unit.test_gate import checker

#: Packages whose own install script carried an incident, with the public record of it.
SCRIPT_INCIDENTS = {
    "nx": "https://github.com/nrwl/nx/security/advisories/GHSA-cxm3-wv7p-598c",  # s1ngularity
    "es5-ext": "https://github.com/medikoo/es5-ext/issues/116",  # protestware postinstall
    "fsevents": "https://github.com/advisories/GHSA-8r6j-v8pm-fqw3",  # S3 bucket takeover
}


def _known_bad_names() -> set[str]:
    text = (resources.files("chainwatch") / "data" / "known-bad.yml").read_text(encoding="utf-8")
    return {name for campaign in yaml.safe_load(text)["campaigns"]
            for name in campaign.get("packages") or {}}


def test_no_package_of_a_documented_compromise_is_allowed_by_default() -> None:
    names = _known_bad_names()
    assert "nx" in names and len(names) > 20  # the list the test leans on is the real one
    assert sorted(n for n in names if Policy().allowed_scripts(n)) == []


@pytest.mark.parametrize("name", sorted(SCRIPT_INCIDENTS))
def test_packages_whose_install_script_was_an_incident_are_not_allowed(name: str) -> None:
    assert not Policy().allowed_scripts(name)


def test_the_allow_list_still_holds_the_well_known_native_builds() -> None:
    for name in ("esbuild", "@esbuild/linux-x64", "sharp", "better-sqlite3", "electron"):
        assert Policy().allowed_scripts(name), name
    assert len(DEFAULT_SCRIPT_ALLOW) == len(set(DEFAULT_SCRIPT_ALLOW))


@pytest.mark.parametrize(("name", "reported"), [("nx", True), ("es5-ext", True),
                                                ("esbuild", False)])
def test_the_gate_reports_the_install_script_of_a_package_off_the_list(
        tmp_path: Path, name: str, reported: bool) -> None:
    decisions = {d.rule: d.action for d in checker(tmp_path).evaluate(name, "1.3.0")}
    assert ("install-scripts" in decisions) is reported
    if reported:
        assert decisions["install-scripts"] == "warn"
