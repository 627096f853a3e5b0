"""Per-certificate renewal state (``state/<name>.json``): what is live, ARI cache, failures."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from certsmith.base.store import keys as store_keys
from certsmith.base.store.base import Lease, Store


def _ts(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _strict_time(key: str, value: Any) -> dt.datetime | None:
    if value is None or value == "":
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} is not a time") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{key} has no time zone")
    return parsed


_TIMES = (
    "not_before",
    "not_after",
    "ari_start",
    "ari_end",
    "ari_next_check",
    "last_attempt",
    "last_success",
    "last_failure",
    "retry_after",
)


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
        """Lenient: a damaged file reads as "nothing known" (see ``parse`` for the reason)."""
        try:
            return cls.parse(raw)
        except ValueError:
            return cls()

    @classmethod
    def parse(cls, raw: bytes) -> CertState:
        """Strict: raises ``ValueError`` saying what is wrong with the file's content."""
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError("not JSON") from None
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        kwargs = {k: v for k, v in data.items() if k in _FIELDS}
        for key in _TIMES:
            kwargs[key] = _strict_time(key, kwargs.get(key))
        for key, kind in (
            ("serial", str),
            ("issuer", str),
            ("ari_id", str),
            ("last_error", str),
            ("last_result", str),
        ):
            if kwargs.get(key) is not None and not isinstance(kwargs[key], kind):
                raise ValueError(f"{key} is not a string")
        if not isinstance(kwargs.get("failures", 0), int):
            raise ValueError("failures is not a number")
        if not isinstance(kwargs.get("extra", {}), dict):
            raise ValueError("extra is not an object")
        return cls(**kwargs)

    def update(self, **changes: Any) -> CertState:
        return replace(self, **changes)


_FIELDS = frozenset(f.name for f in fields(CertState))


def state_key(name: str) -> str:
    return store_keys.state(name)


def load_state(store: Store, name: str) -> CertState:
    """Lenient, for readers that only report (metrics, alerts): damage reads as unknown."""
    raw = store.get(state_key(name))
    return CertState.from_json(raw) if raw else CertState()


def load_state_checked(store: Store, name: str) -> tuple[CertState, str | None]:
    """The state and, if the file exists but cannot be used, why (the manager repairs it)."""
    raw = store.get(state_key(name))
    if raw is None:
        return CertState(), None
    if not raw.strip():
        return CertState(), "empty"
    try:
        return CertState.parse(raw), None
    except ValueError as exc:
        return CertState(), str(exc)


def save_state(store: Store, name: str, state: CertState, *, fence: Lease | None = None) -> None:
    store.put(state_key(name), state.to_json(), private=True, fence=fence)
