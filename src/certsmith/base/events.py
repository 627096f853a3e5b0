"""The audit log: one JSON object per line in ``events.jsonl`` (issued, renewed, failed, ...)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from certsmith.base.store import keys as store_keys

EVENTS_KEY = store_keys.EVENTS


def record(home: Path, event: str, name: str, **fields: Any) -> None:
    """Append one event to the store's audit log (one record per line)."""
    from certsmith.base.store import open_store

    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "event": event,
        "name": name,
        **fields,
    }
    line = (json.dumps(entry, sort_keys=False, default=str) + "\n").encode()
    open_store(home).append(EVENTS_KEY, line)


def read(home: Path) -> list[dict[str, Any]]:
    from certsmith.base.store import open_store

    raw = open_store(home).get(EVENTS_KEY)
    out = []
    for line in (raw or b"").decode(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
