"""Alerts: tell the operator about failed renewals, certificates close to expiry, and problems
``certsmith check --all`` finds. Channels: webhook, e-mail (SMTP), command.

The alerts subscriber (services/root.py) passes a finished run's outcomes in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path

from certsmith.base.certstate import load_state
from certsmith.base.sites import lineage_names
from certsmith.base.store import open_store
from certsmith.services.alerts.config import AlertConfig, load_config, save_config
from certsmith.services.alerts.dispatch import deliver, load_sent, notify, pending
from certsmith.services.alerts.model import Alert, Channel, threshold_due
from certsmith.services.lifecycle import OutcomeLike

__all__ = [
    "Alert",
    "AlertConfig",
    "Channel",
    "after_run",
    "deliver",
    "expiry_alerts",
    "load_config",
    "notify",
    "pending",
    "save_config",
]


def outcome_alerts(outcomes: Iterable[OutcomeLike], what: str) -> list[Alert]:
    out = []
    for o in outcomes:
        if o.action in ("failed", "deploy-failed"):
            out.append(Alert.failure(o.name, o.detail, what))
        elif o.action in ("issued", "renewed"):
            out.append(Alert.success(o.name, o.action, o.not_after))
    return out


def expiry_alerts(home: Path, now: dt.datetime | None = None) -> list[Alert]:
    """Certificates inside an expiry threshold that renewal has not replaced (one per cert)."""
    store = open_store(home)
    config = load_config(store)
    now = now or dt.datetime.now(dt.UTC)
    sent = set(load_sent(store))
    out = []
    for name in lineage_names(store):
        state = load_state(store, name)
        if state.not_after is None or state.not_before is None:
            continue
        days_left = (state.not_after - now).total_seconds() / 86400
        lifetime = (state.not_after - state.not_before).total_seconds() / 86400
        done = {t for t in config.thresholds if f"expiring:{name}:{state.serial}:{t}" in sent}
        threshold = threshold_due(days_left, lifetime, config.thresholds, done)
        if threshold is not None:
            out.append(
                Alert.expiring(
                    name,
                    days_left=days_left,
                    threshold=threshold,
                    not_after=state.not_after,
                    serial=state.serial,
                    last_error=state.last_error,
                )
            )
    return out


def after_run(
    home: Path, outcomes: Iterable[OutcomeLike], *, what: str = "renewal", scan_expiry: bool = True
) -> None:
    """What ``get``/``renew`` call when the service has returned. Never raises."""
    try:
        if not load_config(open_store(home)).channels:
            return
        alerts = outcome_alerts(outcomes, what)
        if scan_expiry:
            alerts += expiry_alerts(home)
    except Exception as exc:
        from certsmith.base import events

        events.record(home, "alert-error", "-", error=f"{type(exc).__name__}: {exc}")
        return
    notify(home, alerts)
