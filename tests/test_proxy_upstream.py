"""The proxy and an upstream that misbehaves: closes a kept-alive connection without answering,
accepts and closes at once, or sends more than its response's framing says. A real proxy
process in front of the real test upstream (tests/support/upstream.py), raw TLS clients."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from tests.support.proxy import Proxy, UpstreamApp, tls_request


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamApp]:
    with UpstreamApp(tmp_path_factory.mktemp("upstream")) as app:
        yield app


@pytest.fixture(scope="module")
def proxy(upstream: UpstreamApp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    """One worker: one upstream pool, so a second request reuses the first one's connection."""
    with Proxy(tmp_path_factory.mktemp("proxy") / "home",
               ["localhost", "--to", upstream.address, "--workers", "1"]) as server:
        yield server


def upstream_count(upstream: UpstreamApp, path: str) -> int:
    """How many requests for ``path`` reached the upstream (asked of it directly)."""
    with urllib.request.urlopen(f"http://{upstream.address}/stats", timeout=10) as got:
        return int(json.loads(got.read())["requests"].get(path, 0))


def ask(proxy: Proxy, head: bytes) -> bytes:
    return tls_request(proxy.https_port, "localhost", head, timeout=30)


@pytest.mark.parametrize("head", [
    b"POST /once HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    b"PATCH /once HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    b"POST /once HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Any: 1\r\n\r\n",
], ids=["POST", "PATCH with Content-Length 0", "POST, general path"])
def test_non_idempotent_request_is_never_sent_twice(proxy: Proxy, upstream: UpstreamApp,
                                                    head: bytes) -> None:
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
        proxy: Proxy, upstream: UpstreamApp) -> None:
    head = b"GET /once HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    before = upstream_count(upstream, "/once")
    assert ask(proxy, head).endswith(b"once")
    second = ask(proxy, head)
    assert second.startswith(b"HTTP/1.1 200 ") and second.endswith(b"once")
    assert upstream_count(upstream, "/once") == before + 3
