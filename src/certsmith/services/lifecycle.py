"""Lifecycle events: what happened to a certificate, told to every subscriber.

The service layer emits (:class:`~certsmith.services.manager.Manager`, the lineage writer, the
proxy's job); subscribers react: the audit log ``events.jsonl``, alerts and the metrics textfile,
wired together by :mod:`certsmith.services.root`. So a renewal done anywhere (``certsmith renew``
from the timer, ``get``, inside ``certsmith proxy``, a later dashboard) alerts and updates the
metrics the same way.

Two kinds of message: an :class:`Event` for one certificate (issued, renewed, failed, deployed,
deploy-failed, damaged, revoked, ...) and :class:`RunDone` when a whole run (one ``get``, one
renewal scan) has finished, on which alerts and metrics act once.

A subscriber that fails never changes the outcome of what emitted the event: the bus catches it
and keeps one line per distinct failure in :attr:`Bus.failures`, which the caller reports (the
CLI prints them and exits non-zero: a renewal whose audit record could not be written did
happen, but the operator must hear that the record did not).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from certsmith.base import events
from certsmith.errors import CertsmithError


class OutcomeLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def detail(self) -> str: ...
    @property
    def not_after(self) -> dt.datetime | None: ...


@dataclass(frozen=True)
class Event:
    kind: str  # issued | renewed | failed | deployed | deploy-failed | damaged | revoked | ...
    name: str  # the lineage ("-" for none)
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunDone:
    """A run finished: ``what`` is "issuance" (get, first orders) or "renewal" (a scan, which
    also looks for certificates close to expiry)."""

    what: str
    outcomes: tuple[OutcomeLike, ...]
    scan_expiry: bool = False


Message = Event | RunDone
Subscriber = Callable[[Message], None]


class Bus:
    def __init__(self, subscribers: Iterable[Subscriber] = ()) -> None:
        self.subscribers: list[Subscriber] = list(subscribers)
        # (lineage, one line) per distinct subscriber failure, for the caller to report
        self.failures: list[tuple[str, str]] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.append(subscriber)

    def emit(self, kind: str, name: str, **fields: Any) -> None:
        self.publish(Event(kind, name, fields))

    def run_done(
        self, what: str, outcomes: Sequence[OutcomeLike], *, scan_expiry: bool = False
    ) -> None:
        self.publish(RunDone(what, tuple(outcomes), scan_expiry))

    def publish(self, message: Message) -> None:
        for subscriber in list(self.subscribers):
            try:
                subscriber(message)
            except Exception as exc:  # a subscriber never changes the outcome
                label = getattr(subscriber, "label", None) or getattr(
                    subscriber, "__name__", type(subscriber).__name__
                )
                line = (
                    str(exc)
                    if isinstance(exc, CertsmithError)
                    else f"{label} failed: {type(exc).__name__}: {exc}"
                )
                if all(seen != line for _, seen in self.failures):
                    name = message.name if isinstance(message, Event) else "-"
                    self.failures.append((name, line))


class EventLog:
    """The audit log: every :class:`Event` as one line of ``events.jsonl``."""

    label = "the event log"

    def __init__(self, home: Path) -> None:
        self.home = Path(home)

    def __call__(self, message: Message) -> None:
        if isinstance(message, Event):
            events.record(self.home, message.kind, message.name, **message.fields)


def event_log_bus(home: Path) -> Bus:
    """A bus with only the audit log (what a service uses when no root gave it one)."""
    return Bus([EventLog(home)])
