"""The lifecycle bus (no servers): every subscriber hears every message, one that fails is
skipped and reported once, never raised; the audit log is a subscriber like the others."""

from __future__ import annotations

import json
from pathlib import Path

from certsmith.errors import StoreError
from certsmith.services.lifecycle import Bus, Event, EventLog, Message, RunDone
from certsmith.services.root import build, subscribers


def test_a_failing_subscriber_never_stops_the_others(tmp_path: Path) -> None:
    heard: list[Message] = []

    def broken(message: Message) -> None:
        raise RuntimeError("boom")

    def disk_full(message: Message) -> None:
        raise StoreError("cannot write /x/events.jsonl: No space left on device")

    bus = Bus([broken, disk_full, heard.append])
    bus.emit("renewed", "a.example", serial="01")
    bus.emit("renewed", "b.example", serial="02")
    bus.run_done("renewal", [])
    assert [type(m).__name__ for m in heard] == ["Event", "Event", "RunDone"]
    assert heard[0] == Event("renewed", "a.example", {"serial": "01"})
    # One line per distinct failure; certsmith's own errors as they are, others named.
    assert bus.failures == [
        ("a.example", "broken failed: RuntimeError: boom"),
        ("a.example", "cannot write /x/events.jsonl: No space left on device"),
    ]


def test_event_log_writes_events_only(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "home")
    log(Event("issued", "a.example", {"version": 1}))
    log(RunDone("issuance", ()))
    [line] = (tmp_path / "home" / "events.jsonl").read_text().splitlines()
    entry = json.loads(line)
    assert (entry["event"], entry["name"], entry["version"]) == ("issued", "a.example", 1)


def test_the_root_wires_the_same_subscribers_everywhere(tmp_path: Path) -> None:
    services = build(tmp_path / "home")
    assert services.manager.bus is services.bus
    assert services.manager.store is services.store
    labels = [getattr(s, "label", None) for s in services.bus.subscribers]
    assert labels == ["the event log", "alerts", "metrics"]
    quiet = [getattr(s, "label", None) for s in subscribers(tmp_path, alerts=False).subscribers]
    assert quiet == ["the event log", "metrics"]
