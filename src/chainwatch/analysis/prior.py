"""Whether a release scanned without a baseline is *established*: then it needs strong evidence.

A framework's latest release judged alone holds every capability it ever had (a bundler's
``new Function``, a CLI's binary download, a polyfill's long lines); with no baseline, nothing
says which of them are new. An established release is one whose bytes are the registry's (a
registry fetch, or a local tarball whose sha512 matches), at a plain ``x.y.z`` version, without a
preinstall/install/postinstall hook, of a package that is among the 1,000 most-downloaded or
has a long public history (``ESTABLISHED_VERSIONS`` versions over ``ESTABLISHED_AGE``). Nothing a
tarball says of itself counts: a local ``react`` that is not the registry's ``react`` is judged
like any unknown package. Scoring halves its evidence (``analysis/scoring.py``); critical
findings and the malicious combinations are untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from chainwatch.analysis.metadata import parse_time, top_packages
from chainwatch.versions import parse

ESTABLISHED_VERSIONS = 20
ESTABLISHED_AGE = timedelta(days=365)
MAX_VERSIONS_READ = 50_000
#: the hooks npm runs when a package is installed from the registry
RUN_ON_INSTALL = ("preinstall", "install", "postinstall")


def established(name: str, version: str, scripts: Mapping[str, str],
                packument: Mapping[str, Any] | None, verified: bool) -> str | None:
    """Why the release counts as established (words for the report), or None."""
    if not verified:
        return None
    parsed = parse(version)
    if parsed is None or parsed.prerelease or parsed.build or version.startswith(("v", "=")):
        return None
    if any(hook in scripts for hook in RUN_ON_INSTALL):
        return None
    if name in top_packages():
        return "one of the 1,000 most-downloaded packages"
    if not isinstance(packument, Mapping):
        return None
    versions = packument.get("versions")
    times = packument.get("time")
    if not isinstance(versions, Mapping) or not isinstance(times, Mapping):
        return None
    published = parse_time(times.get(version))
    # the first release's own publish time ("created" is not always kept); at most
    # MAX_VERSIONS_READ stamps are parsed, so a hostile packument cannot make this slow
    stamps = (parse_time(times.get(v)) for v in list(versions)[:MAX_VERSIONS_READ])
    created = min((t for t in stamps if t is not None), default=None)
    if created is None or published is None:
        return None
    if len(versions) >= ESTABLISHED_VERSIONS and published - created >= ESTABLISHED_AGE:
        years = (published - created).days / 365.25
        return f"{len(versions)} versions over {years:.1f} years"
    return None
