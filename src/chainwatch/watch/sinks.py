"""Where alerts go: the log, a JSON webhook, a Slack-compatible webhook, a JSON-lines feed file.

Each sink has a stable name (stored with each delivery, so a restart knows what is owed) and a
``send`` that raises ``DeliveryError`` when the alert was not accepted.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
from pathlib import Path
from typing import Any, Protocol

import httpx

from chainwatch.output.escape import plain
from chainwatch.output.words import plural
from chainwatch.watch.redact import REDACTOR, register

log = logging.getLogger("chainwatch.watch")


class DeliveryError(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Sink(Protocol):
    name: str

    def send(self, alert: dict[str, Any]) -> None: ...


def headline(alert: dict[str, Any]) -> str:
    if alert.get("kind") == "scan-failed":
        return (f"SCAN FAILED: {alert.get('package')}@{alert.get('version')} could not be "
                f"analysed after {plural(int(alert.get('attempts') or 0), 'attempt')} "
                f"({alert.get('error')})")
    if alert.get("kind") == "burst":
        who = alert.get("publisher") or "an unknown publisher"
        return (f"{alert['verdict'].upper()} release burst: {who} "
                f"published {plural(len(alert.get('releases', [])), 'package')} within "
                f"{alert.get('window_minutes')} min")
    return (f"{alert['verdict'].upper()}: {alert['package']}@{alert['version']} "
            f"(score {alert.get('score')})")


class LogSink:
    name = "log"

    def send(self, alert: dict[str, Any]) -> None:
        top = (alert.get("evidence") or [{}])[0]
        log.warning("ALERT %s — %s %s", plain(headline(alert)),
                    plain(str(top.get("rule", ""))),
                    plain(str(top.get("message", ""))[:200]))


class _Http:
    """A POST to a URL that is a secret: the sink is named by its id, never its URL, and
    error messages are scrubbed of it before they reach a log or the database."""

    kind = "webhook"

    def __init__(self, url: str, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._url = url
        self.name = register(self.kind, url)
        self.http = httpx.Client(timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    def post(self, body: dict[str, Any], alert_id: str) -> None:
        try:
            r = self.http.post(self._url, json=body, headers={"Idempotency-Key": alert_id})
        except httpx.HTTPError as exc:
            raise DeliveryError(REDACTOR.scrub(f"{type(exc).__name__}: {exc}")) from None
        if r.status_code >= 300:
            after = r.headers.get("retry-after", "")
            raise DeliveryError(f"HTTP {r.status_code}",
                                float(after) if after.isdigit() else None)


class WebhookSink(_Http):
    """POSTs the alert document as JSON (schema ``chainwatch.alert/1``)."""

    kind = "webhook"

    def send(self, alert: dict[str, Any]) -> None:
        self.post(alert, alert["id"])


def slack_escape(text: str) -> str:
    """Slack mrkdwn control characters (``<``, ``>``, ``&``): author text cannot make links
    or mentions."""
    return plain(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackSink(_Http):
    """A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat)."""

    kind = "slack"

    def send(self, alert: dict[str, Any]) -> None:
        lines = [f"*{slack_escape(headline(alert))}*"]
        for item in (alert.get("evidence") or [])[:3]:
            where = f"{item.get('file')}:{item.get('line')}" if item.get("file") else ""
            lines.append(f"• `{slack_escape(str(item.get('rule')))}` "
                         f"{slack_escape(str(item.get('message', ''))[:200])} "
                         f"{slack_escape(where)}")
        if alert.get("environments"):
            lines.append(f"Held by {plural(len(alert['environments']), 'recorded environment')}: "
                         + ", ".join(slack_escape(e["label"]) for e in alert["environments"][:5]))
        if alert.get("action"):
            lines.append(f"Action: {slack_escape(alert['action'])}")
        self.post({"text": "\n".join(lines)}, alert["id"])


class FeedSink:
    """Appends one JSON line per alert; rolls the file over at ``max_bytes`` (keeps one old)."""

    def __init__(self, path: Path, max_bytes: int = 50 * 1024 * 1024) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.name = f"feed:{path}"

    def send(self, alert: dict[str, Any]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists() and self.path.stat().st_size > self.max_bytes:
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            with self.path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(alert, sort_keys=True) + "\n")
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            raise DeliveryError(str(exc)) from exc


class SmtpSink:
    """E-mail through an SMTP relay: ``smtp://[user:password@]host[:port]?from=a@x&to=b@y``
    (``smtps://`` for TLS from the start; STARTTLS is used when the server offers it). TLS is
    verified (``ssl.create_default_context()``: the system's CAs, or ``SSL_CERT_FILE``); a
    password is never sent without TLS unless ``insecure`` (``--smtp-insecure``)."""

    def __init__(self, url: str, timeout: float = 20.0, insecure: bool = False,
                 context: ssl.SSLContext | None = None) -> None:
        from urllib.parse import parse_qs, unquote, urlparse

        parts = urlparse(url)
        query = parse_qs(parts.query)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname or not query.get("to"):
            raise ValueError("--smtp wants smtp://host[:port]?from=ADDR&to=ADDR[,ADDR]")
        self.host = parts.hostname
        self.port = parts.port or (465 if parts.scheme == "smtps" else 25)
        self.tls = parts.scheme == "smtps"
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.sender = (query.get("from") or ["chainwatch@localhost"])[0]
        self.to = [a for v in query["to"] for a in v.split(",") if a]
        self.timeout = timeout
        self.insecure = insecure
        self.context = context
        self.name = f"smtp:{self.host}:{self.port}:{','.join(self.to)}"
        if self.password:
            REDACTOR.add(self.password, "***")

    def send(self, alert: dict[str, Any]) -> None:
        import smtplib
        from email.message import EmailMessage

        msg = EmailMessage()
        msg["Subject"] = f"[chainwatch] {plain(headline(alert))}"[:200]
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg["Message-ID"] = f"<{alert['id'].replace(' ', '_')}@chainwatch>"
        msg.set_content(json.dumps(alert, indent=2, sort_keys=True))
        context = self.context or ssl.create_default_context()
        try:
            smtp = (smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
                    if self.tls else smtplib.SMTP(self.host, self.port, timeout=self.timeout))
            with smtp:
                encrypted = self.tls
                if not self.tls:
                    smtp.ehlo_or_helo_if_needed()
                    if smtp.has_extn("starttls"):
                        smtp.starttls(context=context)
                        encrypted = True
                if self.user:
                    if not encrypted and not self.insecure:
                        raise DeliveryError(
                            f"{self.host}:{self.port} offers no TLS (no STARTTLS): refusing to "
                            "send the SMTP password in plaintext; use smtps://, a relay with "
                            "STARTTLS, or --smtp-insecure")
                    smtp.login(self.user, self.password or "")
                smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(REDACTOR.scrub(f"{type(exc).__name__}: {exc}")) from None
