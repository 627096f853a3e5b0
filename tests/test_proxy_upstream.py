"""The proxy and an upstream that misbehaves: closes a kept-alive connection without answering,
accepts and closes at once, or sends more than its response's framing says. A real proxy
process in front of the real test upstream (tests/support/upstream.py), raw TLS clients."""

from __future__ import annotations

import json
import socket
import threading
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.net import LOOPBACK
from tests.support.proxy import Proxy, UpstreamApp, tls_request


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamApp]:
    with UpstreamApp(tmp_path_factory.mktemp("upstream")) as app:
        yield app


@pytest.fixture(scope="module")
def proxy(upstream: UpstreamApp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    """One worker: one upstream pool, so a second request reuses the first one's connection."""
    with Proxy(
        tmp_path_factory.mktemp("proxy") / "home",
        ["localhost", "--to", upstream.address, "--workers", "1"],
    ) as server:
        yield server


def upstream_count(upstream: UpstreamApp, path: str) -> int:
    """How many requests for ``path`` reached the upstream (asked of it directly)."""
    with urllib.request.urlopen(f"http://{upstream.address}/stats", timeout=10) as got:
        return int(json.loads(got.read())["requests"].get(path, 0))


def ask(proxy: Proxy, head: bytes) -> bytes:
    return tls_request(proxy.https_port, "localhost", head, timeout=30)


@pytest.mark.parametrize(
    "head",
    [
        b"POST /once HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        b"PATCH /once HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n"
        b"Connection: close\r\n\r\n",
        b"POST /once HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Any: 1\r\n\r\n",
    ],
    ids=["POST", "PATCH with Content-Length 0", "POST, general path"],
)
def test_non_idempotent_request_is_never_sent_twice(
    proxy: Proxy, upstream: UpstreamApp, head: bytes
) -> None:
    """/once answers a connection's first request and closes it, unanswered, on the next one:
    the second request went to the upstream on a pooled connection and got no answer. It may
    have been acted on, so it is not re-sent (RFC 9110 section 9.2.2): 502."""
    before = upstream_count(upstream, "/once")
    first = ask(proxy, head)
    assert first.startswith(b"HTTP/1.1 200 ") and first.endswith(b"once")
    second = ask(proxy, head)
    assert second.startswith(b"HTTP/1.1 502 "), second[:200]
    assert upstream_count(upstream, "/once") == before + 2


def test_idempotent_request_is_retried_once_on_a_new_connection(
    proxy: Proxy, upstream: UpstreamApp
) -> None:
    head = b"GET /once HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    before = upstream_count(upstream, "/once")
    assert ask(proxy, head).endswith(b"once")
    second = ask(proxy, head)
    assert second.startswith(b"HTTP/1.1 200 ") and second.endswith(b"once")
    assert upstream_count(upstream, "/once") == before + 3


# -- responses longer than their framing -------------------------------------------------------


@pytest.mark.parametrize(
    "method, kind, status",
    [
        (b"GET", "long", b"200"),
        (b"GET", "204", b"204"),
        (b"GET", "304", b"304"),
        (b"HEAD", "head", b"200"),
    ],
)
def test_bytes_past_a_response_end_the_upstream_connection_not_the_clients(
    proxy: Proxy, method: bytes, kind: str, status: bytes
) -> None:
    """The response is forwarded as its framing says; what the upstream sent past it is
    dropped with the upstream connection, and the client's next request is answered."""
    got = ask(
        proxy,
        b"%s /misframed?kind=%s HTTP/1.1\r\nHost: localhost\r\n\r\n"
        b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        % (method, kind.encode()),
    )
    first, _, rest = got.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 " + status + b" "), got[:300]
    if kind == "long":
        assert rest.startswith(b"hello")
        rest = rest[5:]
    assert rest.startswith(b"HTTP/1.1 200 ") and rest.endswith(b"\r\n\r\nhello"), got[:600]
    assert b"EXTRA" not in got and b"body" not in got


# -- upstreams that accept and close at once ---------------------------------------------------


class AcceptAndClose(threading.Thread):
    """A listener on loopback that accepts every connection and closes it at once."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_server((LOOPBACK, 0), backlog=1024)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()

    def run(self) -> None:
        with self.sock:
            while not self.stop.is_set():
                try:
                    conn, _ = self.sock.accept()
                except TimeoutError:
                    continue
                conn.close()


def test_upstream_that_accepts_and_closes_gives_502_to_every_request(tmp_path: Path) -> None:
    """Many requests at once, so some connections are closed by the upstream before the
    proxy sees them open: each still gets 502 (not a wait for the upstream timeout, then
    504)."""
    server = AcceptAndClose()
    server.start()
    config = tmp_path / "proxy.toml"
    config.write_text(f"""
workers = 1

[limits]
upstream_timeout = 30

[[site]]
names = ["localhost"]
to = "{LOOPBACK}:{server.port}"
""")
    head = b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    try:
        with (
            Proxy(tmp_path / "home", ["--config", str(config)]) as proxy,
            ThreadPoolExecutor(50) as pool,
        ):
            answers = list(pool.map(lambda _: ask(proxy, head)[:12], range(200)))
    finally:
        server.stop.set()
        server.join(timeout=5)
    statuses = {a: answers.count(a) for a in set(answers)}
    assert statuses == {b"HTTP/1.1 502": 200}
