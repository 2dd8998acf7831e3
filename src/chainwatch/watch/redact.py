"""Webhook and Slack URLs are secrets (whoever holds one can post as chainwatch): they live
only in the running configuration. Logs, errors and the database name a sink by its id, the
kind, the host and a short hash (``slack:hooks.slack.com#1a2b3c4d5e6f``)."""

from __future__ import annotations

import hashlib
import logging
import threading
from urllib.parse import urlsplit

#: shorter strings are not scrubbed (they would garble every log line, and no URL is so short)
MIN_SECRET = 6
#: loggers that could print a sink's URL (httpx logs each request's URL at INFO)
LOGGERS = ("httpx", "httpcore", "chainwatch.watch")


def sink_id(kind: str, url: str) -> str:
    try:
        host = urlsplit(url).hostname or "?"
    except ValueError:
        host = "?"
    return f"{kind}:{host}#{hashlib.sha256(url.encode()).hexdigest()[:12]}"


class Redactor(logging.Filter):
    """Replaces each registered secret in a log record (message, arguments and traceback)
    by its sink id."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: dict[str, str] = {}
        self._lock = threading.Lock()

    def add(self, secret: str, replacement: str) -> None:
        with self._lock:
            for variant in _variants(secret):
                if len(variant) >= MIN_SECRET:  # "a" must not vanish from every log line
                    self._secrets[variant] = replacement

    def scrub(self, text: str) -> str:
        with self._lock:
            pairs = sorted(self._secrets.items(), key=lambda p: -len(p[0]))
        for secret, replacement in pairs:
            if secret in text:
                text = text.replace(secret, replacement)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        clean = self.scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        return True


def _variants(secret: str) -> list[str]:
    """The URL, and the part after the host that carries the token (a message may quote
    either)."""
    out = [secret]
    try:
        parts = urlsplit(secret)
    except ValueError:
        return out
    tail = parts.path + (f"?{parts.query}" if parts.query else "")
    if len(tail) > 8:
        out.append(tail)
    if parts.password:
        out.append(parts.password)
    return out


#: the process-wide redactor; sinks register their URLs, the CLI adds it to its log handler
REDACTOR = Redactor()
for _name in LOGGERS:
    logging.getLogger(_name).addFilter(REDACTOR)


def register(kind: str, url: str) -> str:
    """Keep ``url`` out of every log from now on; returns the sink id that stands for it."""
    ident = sink_id(kind, url)
    REDACTOR.add(url, ident)
    return ident
