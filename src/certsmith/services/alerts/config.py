"""Alert channels and thresholds on disk: ``alerts.toml`` (0600: webhook URLs carry tokens)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass

import tomli_w

from certsmith.base.store import keys as store_keys
from certsmith.base.store.base import Store
from certsmith.errors import UsageError
from certsmith.services.alerts.model import DEFAULT_THRESHOLDS, Channel

CONFIG_KEY = store_keys.ALERTS_CONFIG


@dataclass(frozen=True)
class AlertConfig:
    channels: tuple[Channel, ...] = ()
    thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS

    def next_id(self) -> str:
        used = {int(c.id) for c in self.channels if c.id.isdigit()}
        return str(max(used, default=0) + 1)


def load_config(store: Store) -> AlertConfig:
    raw = store.get(CONFIG_KEY)
    if raw is None:
        return AlertConfig()
    try:
        data = tomllib.loads(raw.decode())
        thresholds = tuple(
            sorted({int(t) for t in data.get("thresholds", DEFAULT_THRESHOLDS)}, reverse=True)
        )
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, TypeError, ValueError) as exc:
        raise UsageError(f"broken alerts.toml: {exc}") from exc
    return AlertConfig(tuple(Channel.from_dict(c) for c in data.get("channel", [])), thresholds)


def save_config(store: Store, config: AlertConfig) -> None:
    data = {
        "thresholds": list(config.thresholds),
        "channel": [c.to_dict() for c in config.channels],
    }
    store.put(CONFIG_KEY, tomli_w.dumps(data).encode(), private=True)
