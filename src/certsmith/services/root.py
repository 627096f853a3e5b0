"""The composition root: the one place that assembles certsmith's services.

The CLI, the proxy's certificate job and any later front end (a dashboard's "renew now") call
:func:`build` and get the same store, the same lifecycle bus with the same subscribers (the
audit log, alerts, the metrics textfile) and a :class:`~certsmith.services.manager.Manager` on
them. Nothing else decides which subscribers a renewal has, so a renewal done anywhere is alerted
and counted the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from certsmith.base.store import Store, open_store
from certsmith.services.lifecycle import Bus, EventLog, Message, RunDone
from certsmith.services.manager import Manager, Progress


class AlertsOnRun:
    """Alerts for a finished run: failures, successes if asked for, expiry thresholds."""

    label = "alerts"

    def __init__(self, home: Path) -> None:
        self.home = home

    def __call__(self, message: Message) -> None:
        if isinstance(message, RunDone):
            from certsmith.services.alerts import after_run

            after_run(
                self.home, message.outcomes, what=message.what, scan_expiry=message.scan_expiry
            )
        elif message.kind in ("check-problem", "served-differs"):
            from certsmith.services.alerts import Alert, notify

            f = message.fields
            notify(
                self.home,
                [Alert.check_problem(message.name, f["target"], f["status"], f["reason"])],
            )


class MetricsOnRun:
    """Rewrite the remembered metrics textfile after every run."""

    label = "metrics"

    def __init__(self, home: Path) -> None:
        self.home = home

    def __call__(self, message: Message) -> None:
        if isinstance(message, RunDone):
            from certsmith.services.metrics import refresh_textfile

            refresh_textfile(self.home)


@dataclass
class Services:
    home: Path
    store: Store
    bus: Bus
    manager: Manager


def subscribers(home: Path, *, alerts: bool = True) -> Bus:
    """The bus every front end uses: the audit log, alerts (unless ``alerts`` is false: a
    process that must not block on a webhook), the metrics textfile."""
    bus = Bus([EventLog(home)])
    if alerts:
        bus.subscribe(AlertsOnRun(home))
    bus.subscribe(MetricsOnRun(home))
    return bus


def build(home: Path, *, progress: Progress | None = None, alerts: bool = True) -> Services:
    home = Path(home)
    store = open_store(home)
    bus = subscribers(home, alerts=alerts)
    return Services(home, store, bus, Manager(home, progress, store=store, bus=bus))
