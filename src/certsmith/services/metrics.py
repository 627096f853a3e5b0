"""Prometheus text-format metrics from the per-certificate state files.

``render`` is pure; ``collect``/``write_textfile`` are the I/O around it. The textfile path
(for node-exporter's textfile collector) is remembered in ``metrics.toml`` so that every
``certsmith renew`` (the timer run) rewrites it.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Sequence
from pathlib import Path

import tomli_w

from certsmith.base import events
from certsmith.base.certstate import CertState, load_state
from certsmith.base.sites import lineage_names
from certsmith.base.store import keys as store_keys
from certsmith.base.store import open_store
from certsmith.base.store.fs import atomic_write
from certsmith.errors import StoreError, UsageError

CONFIG_KEY = store_keys.METRICS_CONFIG

_FAMILIES = (
    (
        "certsmith_certificate_expiry_timestamp_seconds",
        "When the live certificate expires (Unix time).",
    ),
    (
        "certsmith_certificate_not_before_timestamp_seconds",
        "When the live certificate became valid (Unix time).",
    ),
    (
        "certsmith_renewal_last_success",
        "1 if the last issuance or renewal attempt succeeded, 0 if it failed.",
    ),
    (
        "certsmith_renewal_last_attempt_timestamp_seconds",
        "When certsmith last tried to issue or renew (Unix time).",
    ),
    (
        "certsmith_renewal_last_success_timestamp_seconds",
        "When certsmith last issued or renewed successfully (Unix time).",
    ),
    ("certsmith_renewal_consecutive_failures", "Failed attempts since the last success."),
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _ts(value: dt.datetime | None) -> str | None:
    return None if value is None else f"{value.timestamp():.0f}"


def render(states: Sequence[tuple[str, CertState]], now: dt.datetime) -> str:
    """The exposition text for ``(name, state)`` pairs."""
    values: dict[str, list[tuple[str, str]]] = {family: [] for family, _ in _FAMILIES}
    for name, st in sorted(states):
        label = _label(name)
        sample = {
            "certsmith_certificate_expiry_timestamp_seconds": _ts(st.not_after),
            "certsmith_certificate_not_before_timestamp_seconds": _ts(st.not_before),
            "certsmith_renewal_last_success": (
                None if st.last_result is None else "0" if st.last_result == "failed" else "1"
            ),
            "certsmith_renewal_last_attempt_timestamp_seconds": _ts(st.last_attempt),
            "certsmith_renewal_last_success_timestamp_seconds": _ts(st.last_success),
            "certsmith_renewal_consecutive_failures": str(st.failures),
        }
        for family, value in sample.items():
            if value is not None:
                values[family].append((label, value))
    lines = []
    for family, help_text in _FAMILIES:
        lines += [f"# HELP {family} {help_text}", f"# TYPE {family} gauge"]
        lines += [f'{family}{{name="{label}"}} {value}' for label, value in values[family]]
    lines += [
        "# HELP certsmith_certificates Certificates certsmith manages.",
        "# TYPE certsmith_certificates gauge",
        f"certsmith_certificates {len(states)}",
        "# HELP certsmith_metrics_generated_timestamp_seconds When this was written.",
        "# TYPE certsmith_metrics_generated_timestamp_seconds gauge",
        f"certsmith_metrics_generated_timestamp_seconds {now.timestamp():.0f}",
    ]
    return "\n".join(lines) + "\n"


def collect(home: Path) -> str:
    store = open_store(home)
    states = [(name, load_state(store, name)) for name in lineage_names(store)]
    return render(states, dt.datetime.now(dt.UTC))


def write_textfile(home: Path, path: Path) -> None:
    """Write atomically (node-exporter must never read half a file); readable by all."""
    if path.suffix != ".prom":
        raise UsageError(f"{path}: node-exporter's textfile collector reads only *.prom files")
    try:
        atomic_write(path, collect(home).encode(), 0o644)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror}") from exc


def remembered_textfile(home: Path) -> Path | None:
    raw = open_store(home).get(CONFIG_KEY)
    if not raw:
        return None
    try:
        value = tomllib.loads(raw.decode()).get("textfile")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"broken metrics.toml: {exc}") from exc
    return Path(value) if value else None


def remember_textfile(home: Path, path: Path | None) -> None:
    store = open_store(home)
    if path is None:
        store.delete(CONFIG_KEY)
    else:
        store.put(CONFIG_KEY, tomli_w.dumps({"textfile": str(path)}).encode())


def refresh_textfile(home: Path) -> None:
    """Rewrite the remembered textfile, if any (the timer run). Never raises."""
    try:
        path = remembered_textfile(home)
        if path is not None:
            write_textfile(home, path)
    except Exception as exc:  # metrics must never fail a renewal
        events.record(home, "metrics-failed", "-", error=f"{type(exc).__name__}: {exc}")
