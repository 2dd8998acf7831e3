"""Fixtures built once from the npm registry (cached); tests skip cleanly when it is unreachable."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from chainwatch.errors import ChainwatchError
from chainwatch.registry import RegistryClient
from chainwatch.scan import Scanner

FIXTURE_CACHE = Path(os.environ.get("CHAINWATCH_TEST_CACHE",
                                    Path.home() / ".cache" / "chainwatch-tests"))
#: An npm package that ships the SARIF 2.1.0 JSON schema as a data file (never run).
SARIF_SCHEMA_PACKAGE = "@microsoft/jest-sarif@1.0.0-beta.0"
SARIF_SCHEMA_MEMBER = "package/lib/schemas/sarif-2.1.0-rtm.5.json"


@pytest.fixture(scope="session")
def sarif_schema() -> dict[str, Any]:
    try:
        with RegistryClient(cache_dir=FIXTURE_CACHE, retries=1, timeout=20) as client:
            loaded = Scanner(client, workers=1).load(SARIF_SCHEMA_PACKAGE)
    except ChainwatchError as exc:
        pytest.skip(f"npm registry unreachable, SARIF schema not available: {exc}")
    schema = loaded.files.get(SARIF_SCHEMA_MEMBER.removeprefix("package/"))
    assert schema is not None, "the schema package changed its layout"
    return dict(json.loads(schema.data))

