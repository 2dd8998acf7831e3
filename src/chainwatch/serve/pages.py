"""The server-rendered pages (Jinja2, autoescaped, no external assets, strict CSP)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from chainwatch.serve.auth import Auth
from chainwatch.serve.queries import ReadModel


def routes(model: ReadModel, auth: Auth) -> list[BaseRoute]:
    """Every page route, including ``/login`` and ``/logout``."""
    return []
