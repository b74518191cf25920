"""Outgoing mail for data subject requests: verification codes and download links.

With ``TROTH_SMTP_URL`` set (``smtp://user:password@host:587`` uses STARTTLS,
``smtps://...`` implicit TLS, ``smtp://host:25?tls=none`` plain, for a local relay),
messages go through :mod:`smtplib`. Without it they are written to the outbox directory
(``TROTH_OUTBOX``, default ``./troth-outbox``), one ``.eml`` file per message, readable
by its owner only: good for development, tests, and hosts whose MTA picks files up.
"""

from __future__ import annotations

import datetime as dt
import os
import smtplib
import ssl
import uuid
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from troth.rights.requests_errors import RequestError

__all__ = ["Mailer", "OutboxMailer", "SmtpMailer", "make_mailer"]


class Mailer(Protocol):
    def send(self, to: str, subject: str, body: str) -> None:
        """Send one plain-text message; raise :class:`RequestError` (503) if it cannot go."""


def _message(sender: str, to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "troth.invalid")
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body)
    return message


class OutboxMailer:
    """Writes each message to ``directory`` as ``<time>-<random>.eml`` (mode 0600)."""

    def __init__(self, directory: Path, sender: str) -> None:
        self.directory = directory
        self.sender = sender

    def send(self, to: str, subject: str, body: str) -> None:
        data = _message(self.sender, to, subject, body).as_bytes()
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = self.directory / f"{stamp}-{uuid.uuid4().hex[:12]}.eml"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise RequestError(
                503, "Mail not sent", f"mail: the outbox cannot be written ({exc.strerror})"
            ) from None


class SmtpMailer:
    """Sends through an SMTP server given as a URL (see the module docstring)."""

    def __init__(self, url: str, sender: str, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("TROTH_SMTP_URL: expected smtp://[user:password@]host[:port]")
        self.implicit_tls = parts.scheme == "smtps"
        self.host = parts.hostname
        self.port = parts.port or (465 if self.implicit_tls else 587)
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.starttls = not self.implicit_tls and parse_qs(parts.query).get("tls") != ["none"]
        self.sender = sender
        self.timeout = timeout

    def send(self, to: str, subject: str, body: str) -> None:
        message = _message(self.sender, to, subject, body)
        context = ssl.create_default_context()
        try:
            smtp: smtplib.SMTP
            if self.implicit_tls:
                smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if self.starttls:
                    smtp.starttls(context=context)
                if self.user is not None:
                    smtp.login(self.user, self.password or "")
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            # the server's reply may quote the address: name only the kind of failure
            raise RequestError(
                503,
                "Mail not sent",
                f"mail: the SMTP server refused or failed ({type(exc).__name__})",
            ) from None


def make_mailer(smtp_url: str | None, outbox: Path, sender: str) -> Mailer:
    return SmtpMailer(smtp_url, sender) if smtp_url else OutboxMailer(outbox, sender)
