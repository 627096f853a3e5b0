"""Deliver alerts to every channel: deduplicated, retried from an outbox, never raising.

State (under ``state/``, 0600): ``alerts-sent.json`` maps dedup keys to when they were sent
(expiry keys include the certificate serial, so each threshold fires once per certificate);
``alerts-outbox.json`` holds deliveries that failed, retried at the next run.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from certsmith.base import events
from certsmith.base.store import Store, open_store
from certsmith.base.store import keys as store_keys
from certsmith.errors import CertsmithError
from certsmith.services.alerts import command, smtp, webhook
from certsmith.services.alerts.config import AlertConfig, load_config
from certsmith.services.alerts.model import REMIND_AFTER, Alert, Channel

SENT_KEY = store_keys.ALERTS_SENT
OUTBOX_KEY = store_keys.ALERTS_OUTBOX
MAX_ATTEMPTS = 20
GIVE_UP_AFTER = dt.timedelta(days=7)
FORGET_AFTER = dt.timedelta(days=400)

Sender = Callable[[Channel, Alert, dt.datetime], None]
SENDERS: dict[str, Sender] = {"webhook": webhook.send, "email": smtp.send, "command": command.send}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _load_json(store: Store, key: str, default: Any) -> Any:
    raw = store.get(key)
    if not raw:
        return default
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return default


def load_sent(store: Store) -> dict[str, str]:
    data = _load_json(store, SENT_KEY, {})
    return data if isinstance(data, dict) else {}


def deliver(home: Path, channel: Channel, alert: Alert) -> None:
    """Send one alert on one channel now; raises CertsmithError if it cannot be delivered."""
    SENDERS[channel.kind](channel, alert, _now())


def _wants(channel: Channel, alert: Alert) -> bool:
    return alert.kind != "renewed" or channel.on_success


def _attempt(home: Path, channel: Channel, alert: Alert) -> str | None:
    try:
        deliver(home, channel, alert)
    except CertsmithError as exc:
        events.record(
            home, "alert-failed", alert.name, channel=channel.id, alert=alert.kind, error=str(exc)
        )
        return str(exc)
    events.record(
        home, "alerted", alert.name, channel=channel.id, alert=alert.kind, subject=alert.subject
    )
    return None


def _flush(home: Path, store: Store, config: AlertConfig, now: dt.datetime) -> None:
    outbox = _load_json(store, OUTBOX_KEY, [])
    if not outbox:
        return
    channels = {c.id: c for c in config.channels}
    keep = []
    for entry in outbox:
        channel = channels.get(entry.get("channel"))
        try:
            alert = Alert.from_dict(entry["alert"])
            first = dt.datetime.fromisoformat(entry["first_failed"])
        except (KeyError, TypeError, ValueError):
            continue
        if channel is None:
            continue  # the channel was removed
        error = _attempt(home, channel, alert)
        if error is None:
            continue
        entry["attempts"] = int(entry.get("attempts", 1)) + 1
        entry["last_error"] = error
        if entry["attempts"] >= MAX_ATTEMPTS or now - first > GIVE_UP_AFTER:
            events.record(
                home,
                "alert-dropped",
                alert.name,
                channel=channel.id,
                alert=alert.kind,
                attempts=entry["attempts"],
                error=error,
            )
            continue
        keep.append(entry)
    store.put(OUTBOX_KEY, json.dumps(keep, indent=1).encode(), private=True)


def notify(home: Path, alerts: Sequence[Alert]) -> int:
    """Flush the outbox, then send ``alerts`` not already sent; returns how many were sent
    (or queued). Never raises: alerting must not change the outcome of what it reports."""
    try:
        return _notify(home, alerts)
    except Exception as exc:
        events.record(home, "alert-error", "-", error=f"{type(exc).__name__}: {exc}")
        return 0


def _notify(home: Path, alerts: Sequence[Alert]) -> int:
    store = open_store(home)
    config = load_config(store)
    if not config.channels:
        return 0
    now = _now()
    count = 0
    with store.lock(store_keys.ALERTS_LEASE):
        _flush(home, store, config, now)
        sent = load_sent(store)
        outbox = _load_json(store, OUTBOX_KEY, [])
        for alert in alerts:
            if alert.key is not None and alert.key in sent:
                last = dt.datetime.fromisoformat(sent[alert.key])
                if alert.once or now - last < REMIND_AFTER:
                    continue
            for channel in config.channels:
                if not _wants(channel, alert):
                    continue
                error = _attempt(home, channel, alert)
                if error is not None:
                    outbox.append(
                        {
                            "channel": channel.id,
                            "alert": alert.to_dict(),
                            "attempts": 1,
                            "first_failed": now.isoformat(),
                            "last_error": error,
                        }
                    )
            if alert.key is not None:
                sent[alert.key] = now.isoformat()
            count += 1
        sent = {k: v for k, v in sent.items() if now - dt.datetime.fromisoformat(v) < FORGET_AFTER}
        store.put(SENT_KEY, json.dumps(sent, indent=1).encode(), private=True)
        store.put(OUTBOX_KEY, json.dumps(outbox, indent=1).encode(), private=True)
    return count


def pending(home: Path) -> list[dict[str, Any]]:
    data = _load_json(open_store(home), OUTBOX_KEY, [])
    return data if isinstance(data, list) else []
