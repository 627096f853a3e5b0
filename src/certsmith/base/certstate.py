"""Per-certificate renewal state (``state/<name>.json``): what is live, ARI cache, failures."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from certsmith.base.store.base import Store


def _ts(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _dt(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


_TIMES = ("not_before", "not_after", "ari_start", "ari_end", "ari_next_check", "last_attempt",
          "last_success", "last_failure", "retry_after")


@dataclass(frozen=True)
class CertState:
    serial: str | None = None
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    issuer: str | None = None
    ari_id: str | None = None
    ari_supported: bool = False
    ari_start: dt.datetime | None = None
    ari_end: dt.datetime | None = None
    ari_next_check: dt.datetime | None = None
    failures: int = 0
    last_attempt: dt.datetime | None = None
    last_success: dt.datetime | None = None
    last_failure: dt.datetime | None = None
    last_error: str | None = None
    retry_after: dt.datetime | None = None
    last_result: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        data = asdict(self)
        for key in _TIMES:
            data[key] = _ts(getattr(self, key))
        return json.dumps(data, indent=1).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> CertState:
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return cls()
        kwargs = {k: v for k, v in data.items() if k in _FIELDS}
        for key in _TIMES:
            kwargs[key] = _dt(kwargs.get(key))
        return cls(**kwargs)

    def update(self, **changes: Any) -> CertState:
        return replace(self, **changes)


_FIELDS = frozenset(f.name for f in fields(CertState))


def state_key(name: str) -> str:
    return f"state/{name}.json"


def load_state(store: Store, name: str) -> CertState:
    raw = store.get(state_key(name))
    return CertState.from_json(raw) if raw else CertState()


def save_state(store: Store, name: str, state: CertState) -> None:
    store.put(state_key(name), state.to_json(), private=True)
