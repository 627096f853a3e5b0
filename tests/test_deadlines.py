"""Total deadlines on network calls: a server that trickles one byte every half second (each
read is answered long before any per-read timeout) is cut off after $CERTSMITH_NET_DEADLINE,
with one line naming what did not answer: the ACME CA (over real TLS), a webhook, an SMTP
server. Servers: tests/support/trickle.py on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunCertsmith
from tests.support.trickle import TrickleServer

DEADLINE = {"CERTSMITH_NET_DEADLINE": "3"}


@pytest.fixture
def trickle(tmp_path: Path) -> Iterator[list[TrickleServer]]:
    started: list[TrickleServer] = []
    yield started
    for server in started:
        server.close()


def test_trickling_acme_server_does_not_hang_get(
    trickle: list[TrickleServer], run_certsmith: RunCertsmith, tmp_path: Path, cs_home: Path
) -> None:
    ca = TrickleServer(tmp_path, tls=True).start()
    trickle.append(ca)
    assert ca.ca_file is not None
    directory = f"{ca.url}/dir"
    got = run_certsmith(
        "get",
        "slow.example.com",
        "--standalone",
        "--http-port",
        "1",
        "--server",
        directory,
        "--agree-tos",
        "--ca-bundle",
        ca.ca_file,
        env=DEADLINE,
        timeout=90,
    )
    assert got.returncode == 1
    assert got.stderr.splitlines() == [
        f"certsmith: the CA at {directory} sent no complete answer within 3 s"
    ]
    assert ca.connections >= 1
    assert not (cs_home / "sites").exists() or not list((cs_home / "sites").iterdir())


@pytest.mark.parametrize("kind", ["webhook", "email"])
def test_trickling_alert_receiver_does_not_hang(
    kind: str, trickle: list[TrickleServer], run_certsmith: RunCertsmith, tmp_path: Path
) -> None:
    if kind == "webhook":
        server = TrickleServer(tmp_path).start()
        add = ("webhook", f"{server.url}/hook")
        where = "webhook"
    else:
        server = TrickleServer(tmp_path, answer=b"220 trickle ESMTP\r\n", speak_first=True).start()
        add = ("email", "ops@example.org", "--smtp", f"127.0.0.1:{server.port}")
        where = f"mail server 127.0.0.1:{server.port}"
    trickle.append(server)
    run_certsmith("alerts", "add", *add, check=True, env=DEADLINE)
    got = run_certsmith("alerts", "test", env=DEADLINE, timeout=90)
    assert got.returncode == 1
    lines = got.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("certsmith: 1 "), got.stderr
    assert lines[0].endswith(f": {where} sent no complete answer within 3 s"), got.stderr
