"""Building inert test packages in memory."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any, NoReturn

import pytest

#: The shared test corpus: $CHAINWATCH_SHARED, else `shared/` beside the checkout.
SHARED = Path(os.environ.get("CHAINWATCH_SHARED") or Path(__file__).resolve().parents[2] / "shared")
SAMPLES_ZIP = SHARED / "corpus" / "malware" / "real-samples.zip"
FIXTURES = Path(__file__).parent / "fixtures"


def manifest(name: str = "left-padder", version: str = "1.0.0", **extra: Any) -> str:
    return json.dumps({"name": name, "version": version, "main": "index.js", **extra}, indent=2)


def make_tgz(files: dict[str, str | bytes], prefix: str = "package/") -> bytes:
    """A gzipped tarball, byte-for-byte the same for the same files (gzip mtime 0)."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:
        for path, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(prefix + path)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_package(folder: Path, files: dict[str, str | bytes]) -> Path:
    for path, content in files.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
    return folder


BENIGN_INDEX = """'use strict';
module.exports = function leftPad(str, len, ch) {
  str = String(str);
  ch = ch === undefined ? ' ' : String(ch);
  while (str.length < len) str = ch + str;
  return str;
};
"""

def clipper_source() -> str:
    """The benign index with the inert Qix clipper replica appended (tests/fixtures/replicas)."""
    from bench.corpus.replica import SPECS, appended_code, load

    return BENIGN_INDEX + "\n" + appended_code(load(SPECS / "qix.yml"))


#: Set by `.ci/run`: the parts it installs (node, npm, PostgreSQL, ../shared) must be present, so a
#: test that would skip for want of one fails instead of passing silently.
REQUIRE_PARTS = os.environ.get("CHAINWATCH_REQUIRE_PARTS") == "1"


def missing_part(reason: str) -> NoReturn:
    """Skip for a missing external part, or fail where `.ci/run` promised to install it."""
    if REQUIRE_PARTS:
        pytest.fail(f"required part missing (CHAINWATCH_REQUIRE_PARTS=1): {reason}", pytrace=False)
    pytest.skip(reason)
