"""The abbreviated packument never carries ``"modified": null`` (issue 12 B, item 8).

Before: an upstream packument with no ``time`` (private registries, mirrors) was served to
clients as ``{"modified": null, ...}``; ``bun add`` refused it with PackageFailedToParse, so
teams using bun bypassed the proxy.
"""

from __future__ import annotations

from typing import Any

import pytest

from chainwatch.gate.proxy import abbreviate
from tests.hostile.fake_registry import FakeRegistry, make_proxy, serve

VERSIONS = {"1.0.0": {"name": "p", "version": "1.0.0", "dist": {"tarball": "x"}}}


@pytest.mark.parametrize("time", [None, {}, {"modified": None}, "garbage", {"created": 5}])
def test_no_time_means_no_modified_field_never_null(time: Any) -> None:
    doc: dict[str, Any] = {"name": "p", "versions": VERSIONS}
    if time is not None:
        doc["time"] = time
    out = abbreviate(doc)
    assert "modified" not in out and None not in out.values()
    assert out["versions"]["1.0.0"]["version"] == "1.0.0"


def test_modified_falls_back_to_the_newest_version_time() -> None:
    out = abbreviate({"name": "p", "versions": VERSIONS,
                      "time": {"1.0.0": "2026-01-02T00:00:00.000Z", "9.9.9": "2099-01-01"}})
    assert out["modified"] == "2026-01-02T00:00:00.000Z"  # unlisted versions do not count


def test_the_proxy_serves_a_timeless_packument_without_null(tmp_path: Any) -> None:
    reg = FakeRegistry()
    reg.publish("timeless", "1.0.0")
    del reg.docs["timeless"]["time"]
    proxy = make_proxy(reg)
    (response,) = serve(proxy, ("GET", "/timeless", {
        "accept": "application/vnd.npm.install-v1+json"}))
    assert response.status_code == 200, response.text
    doc = response.json()
    assert "time" not in doc  # the abbreviated form, as bun asks for it
    assert doc.get("modified", "absent") is not None
    # with no publish time its age cannot be judged: hidden by min-age, and said so
    assert doc["versions"] == {}
    assert any(d["rule"] == "min-age" and "no publish time" in d["reason"]
               for d in proxy.decisions)
