"""Renewals done inside ``certsmith proxy`` are told to the same subscribers as ``certsmith
renew``: a real Pebble, a real webhook receiver and the metrics textfile show that a renewal in
the proxy's own job alerts on failure (the CA stopped) and refreshes the metrics either way, for
an ACME site and for a local-CA site's re-issue, while the previous certificate stays served."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from certsmith.base.store import open_store
from tests.conftest import PebbleFactory, RunCertsmith
from tests.support.net import wait_until
from tests.support.proxy import Proxy, UpstreamApp, served_certificate
from tests.support.receivers import WebhookReceiver

NAME = "lifecycle.example.com"
FAST_JOB = {"CERTSMITH_PROXY_CHECK_INTERVAL": "1"}  # the proxy's own job runs every second


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.close()


def metric(prom: Path, family: str, name: str) -> str | None:
    if not prom.exists():
        return None
    found = re.search(
        rf'^{family}\{{name="{re.escape(name)}"\}} (\S+)$', prom.read_text(), re.MULTILINE
    )
    return found.group(1) if found else None


def _atomic_json(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_name(f".{path.name}.test")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def make_due(home: Path, name: str) -> None:
    """Two and a half days left, the CA's renewal window passed: due at the next scan.
    (Under the lineage's lock, replaced whole: the proxy's job reads it meanwhile.)"""
    now = dt.datetime.now(dt.UTC)
    with open_store(home).lock(f"cert-{name}"):
        path = home / "state" / f"{name}.json"
        state = json.loads(path.read_text())
        state.update(
            not_after=(now + dt.timedelta(days=2.5)).isoformat(),
            not_before=(now - dt.timedelta(days=87.5)).isoformat(),
            ari_start=(now - dt.timedelta(hours=2)).isoformat(),
            ari_end=(now - dt.timedelta(hours=1)).isoformat(),
            ari_next_check=(now + dt.timedelta(days=1)).isoformat(),
        )
        _atomic_json(path, state)


def age_local(home: Path, name: str) -> None:
    """The live local-CA certificate looks as if issued long ago (its meta.json, which the
    proxy's re-issue check reads): due at the next job."""
    now = dt.datetime.now(dt.UTC)
    with open_store(home).lock(f"cert-{name}"):
        path = (home / "live" / name).resolve() / "meta.json"
        meta = json.loads(path.read_text())
        meta.update(
            not_before=(now - dt.timedelta(days=100)).isoformat(),
            not_after=(now + dt.timedelta(days=1)).isoformat(),
        )
        _atomic_json(path, meta)


def served(port: int, host: str, root: Path) -> x509.Certificate | None:
    try:
        return x509.load_der_x509_certificate(served_certificate(port, host, root))
    except (OSError, ssl.SSLError):
        return None


def actions(hook: WebhookReceiver) -> list[tuple[str, str | None]]:
    return [(p["event"], p["details"].get("action")) for p in hook.payloads]


def test_acme_renewal_in_the_proxy_alerts_and_updates_metrics(
    run_certsmith: RunCertsmith,
    pebble_factory: PebbleFactory,
    cs_home: Path,
    tmp_path: Path,
    hook: WebhookReceiver,
) -> None:
    ca = pebble_factory()
    run_certsmith("alerts", "add", "webhook", hook.url, "--on-success", check=True)
    prom = tmp_path / "textfile" / "certsmith.prom"
    run_certsmith("metrics", "--textfile", prom, check=True)
    root = ca.write_root(tmp_path / "pebble-root.pem")
    env = {"REQUESTS_CA_BUNDLE": str(ca.ca_bundle), **FAST_JOB}
    with (
        UpstreamApp(tmp_path).start() as app,
        Proxy(
            cs_home,
            [NAME, "--to", app.address, "--server", ca.directory, "--agree-tos", "--workers", "1"],
            http_port=ca.http_port,
            https_port=ca.tls_port,
            env=env,
        ) as proxy,
    ):
        first = wait_until(
            lambda: served(proxy.https_port, NAME, root),
            what="the first certificate",
            timeout=60,
            proc=proxy.proc,
            log=proxy.logs,
        )
        wait_until(
            lambda: ("renewed", "issued") in actions(hook) or None,
            what="the issuance alert",
            timeout=30,
            log=proxy.logs,
        )
        wait_until(
            lambda: metric(prom, "certsmith_renewal_last_success", NAME) == "1" or None,
            what="metrics after the first order",
            timeout=30,
            log=proxy.logs,
        )

        # Due: the proxy's own job renews it, serves it, and the textfile follows.
        make_due(cs_home, NAME)
        second = wait_until(
            lambda: (
                c
                if (c := served(proxy.https_port, NAME, root)) is not None
                and c.serial_number != first.serial_number
                else None
            ),
            what="the renewed certificate",
            timeout=60,
            proc=proxy.proc,
            log=proxy.logs,
        )
        expiry = f"{second.not_valid_after_utc.timestamp():.0f}"
        wait_until(
            lambda: (
                metric(prom, "certsmith_certificate_expiry_timestamp_seconds", NAME) == expiry
                or None
            ),
            what="the renewed certificate's expiry in the textfile",
            timeout=30,
            log=proxy.logs,
        )
        wait_until(
            lambda: ("renewed", "renewed") in actions(hook) or None,
            what="the renewal alert",
            timeout=30,
            log=proxy.logs,
        )
        assert metric(prom, "certsmith_renewal_last_success", NAME) == "1"

        # The CA is gone and it is due again: the failure is alerted and counted.
        ca.stop()
        make_due(cs_home, NAME)
        failure = wait_until(
            lambda: next((p for p in hook.payloads if p["event"] == "failed"), None),
            what="the failure alert",
            timeout=60,
            log=proxy.logs,
        )
        assert failure["name"] == NAME and failure["details"]["error"]
        wait_until(
            lambda: metric(prom, "certsmith_renewal_last_success", NAME) == "0" or None,
            what="the failure in the textfile",
            timeout=30,
            log=proxy.logs,
        )
        assert metric(prom, "certsmith_renewal_consecutive_failures", NAME) == "1"
        still = served(proxy.https_port, NAME, root)
        assert still is not None and still.serial_number == second.serial_number
        assert proxy.proc is not None and proxy.proc.poll() is None


def test_local_ca_reissue_in_the_proxy_alerts_and_updates_metrics(
    run_certsmith: RunCertsmith, cs_home: Path, tmp_path: Path, hook: WebhookReceiver
) -> None:
    run_certsmith("alerts", "add", "webhook", hook.url, "--on-success", check=True)
    prom = tmp_path / "textfile" / "certsmith.prom"
    run_certsmith("metrics", "--textfile", prom, check=True)
    with (
        UpstreamApp(tmp_path).start() as app,
        Proxy(cs_home, ["localhost", "--to", app.address, "--workers", "1"], env=FAST_JOB) as proxy,
    ):
        (name,) = os.listdir(cs_home / "live")
        first = served(proxy.https_port, "localhost", proxy.root)
        assert first is not None
        # Issued by the supervisor at start: already in the textfile and alerted.
        assert metric(prom, "certsmith_renewal_last_success", name) == "1"
        assert ("renewed", "issued") in actions(hook)

        age_local(cs_home, name)
        second = wait_until(
            lambda: (
                c
                if (c := served(proxy.https_port, "localhost", proxy.root)) is not None
                and c.serial_number != first.serial_number
                else None
            ),
            what="the re-issued local certificate",
            timeout=30,
            proc=proxy.proc,
            log=proxy.logs,
        )
        expiry = f"{second.not_valid_after_utc.timestamp():.0f}"
        wait_until(
            lambda: (
                metric(prom, "certsmith_certificate_expiry_timestamp_seconds", name) == expiry
                or None
            ),
            what="the re-issued certificate's expiry in the textfile",
            timeout=30,
            log=proxy.logs,
        )
        wait_until(
            lambda: ("renewed", "renewed") in actions(hook) or None,
            what="the re-issue alert",
            timeout=30,
            log=proxy.logs,
        )

        # The local CA is damaged: the re-issue fails, is alerted and counted; the
        # certificate already live stays served.
        (cs_home / "ca" / "intermediate.pem").write_bytes(b"damaged\n")
        age_local(cs_home, name)
        failure = wait_until(
            lambda: next((p for p in hook.payloads if p["event"] == "failed"), None),
            what="the failure alert",
            timeout=30,
            log=proxy.logs,
        )
        assert "intermediate.pem is damaged" in failure["details"]["error"]
        wait_until(
            lambda: metric(prom, "certsmith_renewal_last_success", name) == "0" or None,
            what="the failure in the textfile",
            timeout=30,
            log=proxy.logs,
        )
        still = served(proxy.https_port, "localhost", proxy.root)
        assert still is not None and still.serial_number == second.serial_number
        assert proxy.proc is not None and proxy.proc.poll() is None
