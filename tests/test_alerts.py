"""Alerts with real receivers: an SMTP server (aiosmtpd) gets the failure and expiry mails, an
HTTP endpoint gets the webhook JSON, a closed port shows that an undeliverable alert changes
nothing and is retried; expiry thresholds fire once each across runs; metrics stay fresh."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PebbleFactory, RunCertsmith
from tests.support.net import free_port
from tests.support.pebble import Pebble
from tests.support.receivers import SmtpReceiver, WebhookReceiver
from tests.support.tlsserver import TlsServer


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    server = SmtpReceiver().start()
    yield server
    server.close()


@pytest.fixture
def hooks() -> Iterator[list[WebhookReceiver]]:
    started: list[WebhookReceiver] = []
    yield started
    for r in started:
        r.close()


def receiver(hooks: list[WebhookReceiver], port: int | None = None) -> WebhookReceiver:
    r = WebhookReceiver(port).start()
    hooks.append(r)
    return r


def set_expiry(home: Path, name: str, days_left: float, lifetime: float = 90) -> None:
    path = home / "state" / f"{name}.json"
    state = json.loads(path.read_text())
    now = dt.datetime.now(dt.UTC)
    state["not_after"] = (now + dt.timedelta(days=days_left)).isoformat()
    state["not_before"] = (now + dt.timedelta(days=days_left - lifetime)).isoformat()
    path.write_text(json.dumps(state))


def events(home: Path) -> list[dict[str, object]]:
    lines = (home / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_failure_and_expiry_alerts(
    run_certsmith: RunCertsmith,
    pebble_factory: PebbleFactory,
    cs_home: Path,
    smtp: SmtpReceiver,
    hooks: list[WebhookReceiver],
) -> None:
    ca: Pebble = pebble_factory()
    name = "alerts.example.org"
    run_certsmith(
        "get",
        name,
        "--standalone",
        "--http-port",
        str(ca.http_port),
        "--server",
        ca.directory,
        "--agree-tos",
        server=ca,
        check=True,
    )
    hook = receiver(hooks)
    closed = free_port()  # nothing listens here: every delivery fails
    for args in (
        ("email", "ops@example.org", "--smtp", f"127.0.0.1:{smtp.port}"),
        ("webhook", hook.url),
        ("webhook", f"http://127.0.0.1:{closed}/down"),
    ):
        run_certsmith("alerts", "add", *args, server=ca, check=True)
    config = cs_home / "alerts.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    listed = run_certsmith("alerts", "list", server=ca, check=True).stdout
    assert f"1  email ops@example.org via 127.0.0.1:{smtp.port}" in listed
    assert f"2  webhook {hook.url}" in listed

    # Two and a half days left, and the CA is gone: the renewal fails.
    set_expiry(cs_home, name, 2.5)
    ca.stop()
    failed = run_certsmith("renew", server=ca)
    assert failed.returncode == 1  # what it is without alerts: the undeliverable one is moot
    [line] = failed.stderr.splitlines()
    assert line.startswith(f"certsmith: {name}: ")
    ca_error = line.removeprefix(f"certsmith: {name}: ")

    subjects = sorted(m["Subject"] for m in smtp.messages)
    assert subjects == [
        f"[certsmith] {name} expires in 2.5 days",
        f"[certsmith] renewal of {name} failed",
    ]
    assert smtp.recipients() == [["ops@example.org"], ["ops@example.org"]]
    failure_mail = next(m for m in smtp.messages if "failed" in m["Subject"])
    body = failure_mail.get_content()
    assert f"the renewal of {name} failed: {ca_error}" in body
    assert "certificate: " + name in body
    expiry_mail = next(m for m in smtp.messages if "expires" in m["Subject"])
    assert "is not getting renewed. The last renewal attempt failed: " in expiry_mail.get_content()

    assert sorted(p["event"] for p in hook.payloads) == ["expiring", "failed"]
    for p in hook.payloads:
        assert p["content_type"] == "application/json"
        assert p["name"] == name and p["text"].startswith("certsmith: ")
    failure = next(p for p in hook.payloads if p["event"] == "failed")
    assert failure["details"]["error"] == ca_error and failure["severity"] == "critical"
    expiring = next(p for p in hook.payloads if p["event"] == "expiring")
    assert expiring["details"]["threshold_days"] == 3

    log = events(cs_home)
    assert sum(1 for e in log if e["event"] == "alert-failed") == 2
    assert sum(1 for e in log if e["event"] == "alerted") == 4
    outbox = json.loads((cs_home / "state" / "alerts-outbox.json").read_text())
    assert [(o["channel"], o["alert"]["kind"]) for o in outbox] == [
        ("3", "failed"),
        ("3", "expiring"),
    ]

    # Later runs: the same failure and the same threshold are not sent again.
    for _ in range(2):
        again = run_certsmith("renew", server=ca)
        assert again.returncode in (0, 1)
    assert len(smtp.messages) == 2 and len(hook.payloads) == 2

    # Half a day left: the 1-day threshold fires, once.
    set_expiry(cs_home, name, 0.5)
    for _ in range(2):
        run_certsmith("renew", server=ca)
    assert len(smtp.messages) == 3
    assert smtp.messages[2]["Subject"] == f"[certsmith] {name} expires in 0.5 days"
    assert [
        p["details"].get("threshold_days") for p in hook.payloads if p["event"] == "expiring"
    ] == [3, 1]

    # The receiver comes back on the closed port: the outbox is delivered at the next run.
    late = receiver(hooks, closed)
    run_certsmith("renew", server=ca)
    assert sorted(p["event"] for p in late.payloads) == ["expiring", "expiring", "failed"]
    assert json.loads((cs_home / "state" / "alerts-outbox.json").read_text()) == []


def test_success_alerts_command_test_and_metrics(
    run_certsmith: RunCertsmith,
    pebble: Pebble,
    cs_home: Path,
    tmp_path: Path,
    hooks: list[WebhookReceiver],
    smtp: SmtpReceiver,
) -> None:
    name = "notify.example.org"
    hook = receiver(hooks)
    out = tmp_path / "alert.json"
    run_certsmith("alerts", "add", "webhook", hook.url, "--on-success", check=True)
    run_certsmith(
        "alerts",
        "add",
        "command",
        f'cat > {out}; test "$CERTSMITH_ALERT_NAME"',
        "--on-success",
        check=True,
    )
    run_certsmith(
        "alerts", "add", "webhook", f"http://127.0.0.1:{free_port()}/", "--on-success", check=True
    )
    prom = tmp_path / "textfile" / "certsmith.prom"
    run_certsmith("metrics", "--textfile", prom, check=True)
    got = run_certsmith(
        "get",
        name,
        "--standalone",
        "--http-port",
        str(pebble.http_port),
        "--server",
        pebble.directory,
        "--agree-tos",
    )
    assert got.returncode == 0 and got.stderr == ""  # the dead webhook changes nothing
    assert [(p["event"], p["details"]["action"]) for p in hook.payloads] == [("renewed", "issued")]
    assert hook.payloads[0]["text"].startswith(f"certsmith: {name} issued, valid until ")
    assert json.loads(out.read_text())["name"] == name
    waiting = run_certsmith("alerts", "list", check=True).stdout
    assert "1 alert(s) waiting to be retried" in waiting

    # The timer run rewrote the textfile.
    text = prom.read_text()
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644
    check_exposition(text)
    assert f'certsmith_renewal_last_success{{name="{name}"}} 1' in text
    assert f'certsmith_renewal_consecutive_failures{{name="{name}"}} 0' in text
    assert "certsmith_certificates 1" in text
    expiry = re.search(
        rf'certsmith_certificate_expiry_timestamp_seconds\{{name="{name}"\}} '
        r"(\d+)",
        text,
    )
    assert expiry and int(expiry.group(1)) > dt.datetime.now(dt.UTC).timestamp() + 86400 * 300
    stdout = run_certsmith("metrics", check=True).stdout
    check_exposition(stdout)

    # alerts test: every channel; the unreachable one is named on stderr, exit 1.
    run_certsmith(
        "alerts", "add", "email", "me@example.org", "--smtp", f"127.0.0.1:{smtp.port}", check=True
    )
    tested = run_certsmith("alerts", "test")
    assert tested.returncode == 1
    assert re.fullmatch(
        r"certsmith: 3 webhook http://127\.0\.0\.1:\d+/: webhook unreachable: "
        r".*\n",
        tested.stderr,
    )
    assert "sent  4  email me@example.org" in tested.stdout
    assert smtp.messages[-1]["Subject"] == "[certsmith] test alert"
    removed = run_certsmith("alerts", "remove", "3", check=True)
    assert removed.stdout.startswith("removed 3  webhook")
    assert run_certsmith("alerts", "test", check=True).stderr == ""
    bad = run_certsmith("alerts", "add", "email", "me@example.org")
    assert (
        bad.returncode == 2 and bad.stderr == "certsmith: e-mail alerts need --smtp HOST[:PORT]\n"
    )


_SAMPLE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
    r'(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*\})? '
    r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$"
)


def check_exposition(text: str) -> None:
    """A strict line check of the Prometheus text format: HELP/TYPE before samples, each
    family typed once, samples well-formed, a final newline."""
    assert text.endswith("\n")
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ")
            assert kind in ("gauge", "counter") and family not in typed
            typed.add(family)
            continue
        assert _SAMPLE.match(line), line
        assert line.split("{")[0].split(" ")[0] in typed, line


def test_check_all_spots_missed_reload(
    run_certsmith: RunCertsmith,
    pebble: Pebble,
    cs_home: Path,
    tmp_path: Path,
    hooks: list[WebhookReceiver],
) -> None:
    name = "reload.example.org"
    run_certsmith(
        "get",
        name,
        "--standalone",
        "--http-port",
        str(pebble.http_port),
        "--server",
        pebble.directory,
        "--agree-tos",
        check=True,
    )
    old = tmp_path / "old"
    shutil.copytree(cs_home / "live" / name, old)
    hook = receiver(hooks)
    run_certsmith("alerts", "add", "webhook", hook.url, check=True)
    root = pebble.write_root(tmp_path / "root.pem")
    server = TlsServer(old / "fullchain.pem", old / "privkey.pem").start()
    try:
        base = (
            "check",
            "--all",
            "--connect",
            f"127.0.0.1:{server.port}",
            "--ca",
            root,
            "--no-http",
        )
        ok = run_certsmith(*base)
        assert ok.returncode == 0 and ok.stdout.startswith(f"OK {name} {name}:{server.port}: ")
        run_certsmith("renew", "--force", check=True)  # the server is not reloaded
        stale = run_certsmith(*base)
        assert stale.returncode == 2
        old_serial = format(int(json.loads((old / "meta.json").read_text())["serial"], 16), "x")
        first = stale.stdout.splitlines()[0]
        assert first.startswith(
            f"CRITICAL {name} {name}:{server.port}: serves serial "
            f"{old_serial}, not the live certificate "
        )
        assert first.endswith(": reload the server")
        [alert] = hook.payloads
        assert alert["event"] == "check" and alert["details"]["reason"] in first
        run_certsmith(*base)  # deduplicated: no second alert
        assert len(hook.payloads) == 1
    finally:
        server.close()
    assert os.path.exists(cs_home / "events.jsonl")
