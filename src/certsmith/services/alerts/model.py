"""Alerts and channels as values; message texts and dedup keys (pure)."""

from __future__ import annotations

import datetime as dt
import hashlib
import socket
from dataclasses import dataclass, field
from typing import Any, Literal

from certsmith.errors import UsageError

Kind = Literal["failed", "expiring", "renewed", "check", "test"]
CHANNEL_KINDS = ("webhook", "email", "command")
DEFAULT_THRESHOLDS = (14, 7, 3, 1)
REMIND_AFTER = dt.timedelta(hours=24)  # a failure that persists is reported again after this


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Alert:
    """One thing to tell the operator. ``key`` identifies duplicates; ``once`` alerts are never
    repeated for the same key, the others at most every ``REMIND_AFTER``."""

    kind: Kind
    name: str
    subject: str
    text: str
    severity: Literal["critical", "warning", "info"]
    key: str | None = None
    once: bool = False
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def failure(cls, name: str, error: str, action: str = "renewal") -> Alert:
        return cls(
            "failed",
            name,
            f"{action} of {name} failed",
            f"certsmith: the {action} of {name} failed: {error}\n"
            "The current certificate (if any) stays in place; certsmith retries with "
            "back-off at the next timer run. Fix the cause, then run "
            f"'certsmith renew --force {name}'.",
            "critical",
            key=f"failed:{name}:{_digest(error)}",
            details={"error": error, "action": action},
        )

    @classmethod
    def expiring(
        cls,
        name: str,
        *,
        days_left: float,
        threshold: int,
        not_after: dt.datetime,
        serial: str | None,
        last_error: str | None,
    ) -> Alert:
        why = (
            f"The last renewal attempt failed: {last_error}"
            if last_error
            else "It has not been renewed."
        )
        return cls(
            "expiring",
            name,
            f"{name} expires in {days_left:.1f} days",
            f"certsmith: the certificate {name} expires in {days_left:.1f} days "
            f"({not_after:%Y-%m-%d %H:%M} UTC) and is not getting renewed. {why}\n"
            f"Run 'certsmith renew --force {name}' once the cause is fixed.",
            "critical" if threshold <= 3 else "warning",
            key=f"expiring:{name}:{serial}:{threshold}",
            once=True,
            details={
                "days_left": round(days_left, 2),
                "threshold_days": threshold,
                "not_after": not_after.isoformat(),
                "serial": serial,
                "last_error": last_error,
            },
        )

    @classmethod
    def success(cls, name: str, action: str, not_after: dt.datetime | None) -> Alert:
        until = f", valid until {not_after:%Y-%m-%d}" if not_after else ""
        return cls(
            "renewed",
            name,
            f"{name} {action}",
            f"certsmith: {name} {action}{until}.",
            "info",
            details={"action": action, "not_after": not_after.isoformat() if not_after else None},
        )

    @classmethod
    def check_problem(cls, name: str, target: str, status: str, reason: str) -> Alert:
        return cls(
            "check",
            name,
            f"{name}: {status} at {target}",
            f"certsmith check: {name} at {target}: {status}: {reason}",
            "critical" if status == "CRITICAL" else "warning",
            key=f"check:{name}:{target}:{_digest(reason)}",
            details={"target": target, "status": status, "reason": reason},
        )

    @classmethod
    def test(cls) -> Alert:
        return cls(
            "test",
            "-",
            "test alert",
            f"certsmith: test alert from {socket.gethostname()}; alerts reach you.",
            "info",
        )

    def payload(self, now: dt.datetime) -> dict[str, Any]:
        """Webhook JSON: ``text`` is what chat tools (Slack, Mattermost, Rocket.Chat) show."""
        return {
            "text": self.text,
            "event": self.kind,
            "name": self.name,
            "severity": self.severity,
            "subject": self.subject,
            "host": socket.gethostname(),
            "time": now.isoformat(timespec="seconds"),
            "details": self.details,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "subject": self.subject,
            "text": self.text,
            "severity": self.severity,
            "key": self.key,
            "once": self.once,
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alert:
        return cls(
            kind=data["kind"],
            name=data["name"],
            subject=data["subject"],
            text=data["text"],
            severity=data["severity"],
            key=data.get("key"),
            once=bool(data.get("once")),
            details=data.get("details", {}),
        )


@dataclass(frozen=True)
class Channel:
    """Where alerts go: a webhook URL, an e-mail address via SMTP, or a command."""

    id: str
    kind: Literal["webhook", "email", "command"]
    target: str  # URL, address or command line
    on_success: bool = False
    smtp_host: str | None = None
    smtp_port: int = 25
    starttls: bool = False
    user: str | None = None
    password_file: str | None = None
    sender: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in CHANNEL_KINDS:
            raise UsageError(f"unknown alert channel {self.kind!r}: use {', '.join(CHANNEL_KINDS)}")
        if self.kind == "webhook" and not self.target.startswith(("https://", "http://")):
            raise UsageError(f"webhook URL {self.target!r} must start with https:// or http://")
        if self.kind == "email":
            if "@" not in self.target or any(c in self.target for c in " \r\n<>,"):
                raise UsageError(f"invalid e-mail address {self.target!r}")
            if not self.smtp_host:
                raise UsageError("e-mail alerts need --smtp HOST[:PORT]")
            if not 0 < self.smtp_port < 65536:
                raise UsageError(f"invalid SMTP port {self.smtp_port}")
        if self.kind == "command" and not self.target.strip():
            raise UsageError("empty alert command")

    def describe(self) -> str:
        if self.kind == "email":
            extra = " starttls" if self.starttls else ""
            user = f" user {self.user}" if self.user else ""
            return f"email {self.target} via {self.smtp_host}:{self.smtp_port}{extra}{user}"
        return f"{self.kind} {self.target}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "target": self.target,
            "on_success": self.on_success,
        }
        if self.kind == "email":
            out.update(
                {
                    "smtp_host": self.smtp_host,
                    "smtp_port": self.smtp_port,
                    "starttls": self.starttls,
                }
            )
            for key in ("user", "password_file", "sender"):
                if getattr(self, key):
                    out[key] = getattr(self, key)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Channel:
        try:
            return cls(
                id=str(data["id"]),
                kind=data["kind"],
                target=data["target"],
                on_success=bool(data.get("on_success", False)),
                smtp_host=data.get("smtp_host"),
                smtp_port=int(data.get("smtp_port", 25)),
                starttls=bool(data.get("starttls", False)),
                user=data.get("user"),
                password_file=data.get("password_file"),
                sender=data.get("sender"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"invalid alert channel in alerts.toml: {exc}") from exc


def threshold_due(
    days_left: float, lifetime_days: float, thresholds: tuple[int, ...], sent: set[int]
) -> int | None:
    """The expiry threshold to announce now, if any: the smallest one crossed and not yet sent.

    Only thresholds below a third of the lifetime count: before that point a certificate is
    simply not due yet (renewal starts when a third is left), so a 6-day certificate is not
    announced at "3 days left" in its normal course.
    """
    crossed = [t for t in thresholds if days_left <= t and t < lifetime_days / 3]
    if not crossed:
        return None
    smallest = min(crossed)
    return None if smallest in sent else smallest
