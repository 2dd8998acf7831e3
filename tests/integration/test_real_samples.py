"""Every real malicious sample in ../shared is flagged; read in memory, never extracted or run."""

from __future__ import annotations

import zipfile

import pytest

from chainwatch.archive import read_tarball
from chainwatch.model import Level, PackageFile, PackageFiles, Verdict
from chainwatch.scan import Scanner
from tests.helpers import SAMPLES_ZIP, missing_part


@pytest.fixture(autouse=True)
def _corpus() -> None:
    if not SAMPLES_ZIP.is_file():
        missing_part("shared corpus not present")


SCANNER = Scanner(None)


def _names() -> list[str]:
    if not SAMPLES_ZIP.is_file():
        return []
    with zipfile.ZipFile(SAMPLES_ZIP) as z:
        return [i.filename for i in z.infolist() if not i.is_dir()]


def _verdict(name: str) -> Verdict:
    with zipfile.ZipFile(SAMPLES_ZIP) as z:
        data = z.read(name, pwd=b"infected")
    if name.endswith(".tgz"):
        files = read_tarball(data, name)
    else:
        files = PackageFiles(name, (PackageFile("index.js", data),))
    return SCANNER.analyze(SCANNER._with_metadata(files, None), None)


@pytest.mark.parametrize("name", _names())
def test_sample_is_flagged(name: str) -> None:
    v = _verdict(name)
    assert v.level is not Level.BENIGN, v.explanation
    assert v.findings and v.findings[0].severity.rank >= 3


def test_nearly_all_samples_are_malicious() -> None:
    names = _names()
    malicious = sum(_verdict(n).level is Level.MALICIOUS for n in names)
    assert malicious / len(names) >= 0.95
