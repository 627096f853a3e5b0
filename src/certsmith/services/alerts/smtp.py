"""E-mail channel: a readable text message through an SMTP server (STARTTLS, AUTH optional)."""

from __future__ import annotations

import datetime as dt
import email.message
import email.utils
import os
import smtplib
import socket
import ssl
import stat
from pathlib import Path

from certsmith.base.deadline import Deadline, watch
from certsmith.errors import CertsmithError, UsageError
from certsmith.services.alerts.model import Alert, Channel

TIMEOUT = 10.0  # per read; the whole delivery is bounded by base.deadline


class _SMTP(smtplib.SMTP):
    """SMTP whose socket is under the current deadline from the moment it connects (also
    under SMTP_SSL's handshake: see the class order of ``_SMTPS``)."""

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        watch(sock)
        return sock  # type: ignore[no-any-return]


class _SMTPS(smtplib.SMTP_SSL, _SMTP):
    pass


PASSWORD_ENV = "CERTSMITH_SMTP_PASSWORD"


def password_for(channel: Channel) -> str | None:
    """The SMTP password: $CERTSMITH_SMTP_PASSWORD, else the channel's 0600 password file."""
    if not channel.user:
        return None
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if not channel.password_file:
        raise UsageError(
            f"SMTP user {channel.user} needs a password: set {PASSWORD_ENV} or --password-file"
        )
    path = Path(channel.password_file)
    try:
        st = path.stat()
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise UsageError(f"{path} is readable by others: chmod 600 {path}")
        return path.read_text().strip()
    except OSError as exc:
        raise UsageError(f"cannot read SMTP password file {path}: {exc.strerror}") from None


def render(channel: Channel, alert: Alert, now: dt.datetime) -> email.message.EmailMessage:
    host = socket.gethostname()
    msg = email.message.EmailMessage()
    msg["Subject"] = f"[certsmith] {alert.subject}"
    msg["From"] = channel.sender or f"certsmith@{host}"
    msg["To"] = channel.target
    msg["Date"] = email.utils.format_datetime(now)
    msg["Message-ID"] = email.utils.make_msgid(domain=host)
    lines = [
        alert.text,
        "",
        f"certificate: {alert.name}",
        f"event:       {alert.kind}",
        f"severity:    {alert.severity}",
        f"host:        {host}",
        f"time:        {now:%Y-%m-%d %H:%M:%S} UTC",
    ]
    for key, value in alert.details.items():
        if value is not None:
            lines.append(f"{key + ':':<12} {value}")
    lines += ["", "-- ", "certsmith alerts ('certsmith alerts list' shows where alerts go)"]
    msg.set_content("\n".join(lines) + "\n")
    return msg


def send(channel: Channel, alert: Alert, now: dt.datetime) -> None:
    assert channel.smtp_host is not None
    msg = render(channel, alert, now)
    where = f"{channel.smtp_host}:{channel.smtp_port}"
    deadline = Deadline()
    try:
        password = password_for(channel)
        smtp: smtplib.SMTP
        with deadline:
            if channel.smtp_port == 465:  # implicit TLS ("smtps")
                smtp = _SMTPS(
                    channel.smtp_host,
                    channel.smtp_port,
                    timeout=TIMEOUT,
                    context=ssl.create_default_context(),
                )
            else:
                smtp = _SMTP(channel.smtp_host, channel.smtp_port, timeout=TIMEOUT)
            with smtp:
                if channel.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if channel.user and password is not None:
                    smtp.login(channel.user, password)
                smtp.send_message(msg)
    except (smtplib.SMTPException, OSError) as exc:
        if deadline.expired:
            raise CertsmithError(
                f"mail server {where} sent no complete answer within {deadline.seconds:g} s"
            ) from None
        if not isinstance(exc, smtplib.SMTPException):
            raise CertsmithError(
                f"mail server {where} unreachable: {getattr(exc, 'strerror', None) or exc}"
            ) from None
        raise CertsmithError(f"mail server {where} refused the alert: {exc}") from None
