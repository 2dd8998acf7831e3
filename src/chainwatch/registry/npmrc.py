"""Registry URL and credentials, found the way npm finds them.

Precedence, highest first: an explicit ``--registry``; ``npm_config_registry`` in the
environment; the project ``.npmrc`` (nearest one at or above the working folder); the user
``.npmrc`` (``$NPM_CONFIG_USERCONFIG`` or ``~/.npmrc``). Scoped registries
(``@scope:registry=…``) and per-host credentials (``//host/path/:_authToken=…``) follow npm's
"nerf dart" matching: the longest ``//host/path/`` prefix of the request URL wins.
``${VAR}`` references are expanded from the environment, as npm does.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_REGISTRY = "https://registry.npmjs.org/"
_ENV_REF = re.compile(r"\$\{([^}]+)\}")


def _expand(value: str, env: dict[str, str]) -> str:
    return _ENV_REF.sub(lambda m: env.get(m.group(1), ""), value)


def parse_npmrc(text: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """Parse the ini-like ``.npmrc`` syntax into a flat dict (later keys win)."""
    env = dict(os.environ) if env is None else env
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out[_expand(key.strip(), env)] = _expand(value, env)
    return out


def _check_url(where: str, url: str) -> None:
    """A registry setting that is not an http(s) URL is a usage error (exit 2), said once."""
    from chainwatch.errors import UsageError
    from chainwatch.specs import redact_credentials

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a bad port raises here
    except ValueError as exc:
        raise UsageError(f"{where}: not a URL: {redact_credentials(url)!r} ({exc})") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{where}: not an http(s) URL: {redact_credentials(url)!r}")


def _with_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def _nerf_dart(url: str) -> str:
    parts = urlsplit(url)
    path = parts.path if parts.path.endswith("/") else parts.path.rsplit("/", 1)[0] + "/"
    return f"//{parts.netloc}{path}"


@dataclass
class NpmConfig:
    registry: str = DEFAULT_REGISTRY
    scoped: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        registry: str | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> NpmConfig:
        env = dict(os.environ) if env is None else env
        merged: dict[str, str] = {}
        user_rc = Path(env.get("NPM_CONFIG_USERCONFIG") or Path.home() / ".npmrc")
        project_rc = _find_project_npmrc(cwd or Path.cwd())
        for rc in (user_rc, project_rc):
            if rc is not None and rc.is_file():
                try:
                    merged.update(parse_npmrc(rc.read_text(errors="replace"), env))
                except OSError:
                    continue
        for key, value in env.items():
            low = key.lower()
            if low.startswith("npm_config_") and value:
                merged[low[len("npm_config_") :]] = value
        scoped = {
            k.split(":", 1)[0]: _with_slash(v)
            for k, v in merged.items()
            if k.startswith("@") and k.endswith(":registry")
        }
        chosen = registry or merged.get("registry") or DEFAULT_REGISTRY
        for where, url in (("registry", chosen), *((f"{s}:registry", u) for s, u in scoped.items())):
            _check_url(where, url)
        return cls(registry=_with_slash(chosen), scoped=scoped, settings=merged)

    def registry_for(self, package: str) -> str:
        if package.startswith("@"):
            scope = package.split("/", 1)[0]
            if scope in self.scoped:
                return self.scoped[scope]
        return self.registry

    def auth_header(self, url: str) -> str | None:
        """The Authorization header npm would send to ``url``, if any."""
        target = _nerf_dart(url)
        best: tuple[int, str] | None = None
        for key, value in self.settings.items():
            if not key.startswith("//") or ":" not in key:
                continue
            prefix, _, setting = key.rpartition(":")
            prefix = _with_slash(prefix)
            if not target.startswith(prefix):
                continue
            header = None
            if setting == "_authToken" and value:
                header = f"Bearer {value}"
            elif setting == "_auth" and value:
                header = f"Basic {value}"
            if header and (best is None or len(prefix) > best[0]):
                best = (len(prefix), header)
        return best[1] if best else None


def _find_project_npmrc(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        candidate = folder / ".npmrc"
        if candidate.is_file():
            return candidate
        if (folder / "package.json").is_file():
            return None
    return None
