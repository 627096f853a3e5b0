"""The audit log: one JSON object per line in ``events.jsonl`` (issued, renewed, failed, ...)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from certsmith.errors import StoreError


def record(home: Path, event: str, name: str, **fields: Any) -> None:
    """Append one event; a single O_APPEND write keeps concurrent writers' lines whole."""
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "event": event,
             "name": name, **fields}
    line = (json.dumps(entry, sort_keys=False, default=str) + "\n").encode()
    path = home / "events.jsonl"
    try:
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror}") from exc
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read(home: Path) -> list[dict[str, Any]]:
    try:
        text = (home / "events.jsonl").read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
