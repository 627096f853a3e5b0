"""Pipelined requests on one client connection, against a real proxy and upstream: every
request is answered, in order, up to the one that closes the connection or the first that
cannot be read."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.support.proxy import Proxy, UpstreamApp, tls_request

PAD = b"X-Pad: " + b"p" * 1000 + b"\r\n"
HELLO = b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n"
HELLO_CLOSE = b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamApp]:
    with UpstreamApp(tmp_path_factory.mktemp("upstream")) as app:
        yield app


@pytest.fixture(scope="module")
def proxy(upstream: UpstreamApp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    with Proxy(
        tmp_path_factory.mktemp("proxy") / "home",
        ["localhost", "--to", upstream.address, "--workers", "1"],
    ) as server:
        yield server


def ask(proxy: Proxy, raw: bytes) -> bytes:
    return tls_request(proxy.https_port, "localhost", raw, timeout=60)


def statuses(got: bytes) -> list[bytes]:
    return re.findall(rb"HTTP/1\.1 (\d{3}) ", got)


def test_pipelined_requests_are_all_answered_in_order(proxy: Proxy) -> None:
    """The bound on the pipelining queue pauses reading; it loses no request."""
    count = 300
    raw = b"".join(
        (
            b"GET /slow?s=0.2 HTTP/1.1\r\nHost: localhost\r\n\r\n",
            *(
                b"GET /headers?i=%d HTTP/1.1\r\nHost: localhost\r\n%s\r\n" % (i, PAD)
                for i in range(count)
            ),
            HELLO_CLOSE,
        )
    )
    got = ask(proxy, raw)
    assert got.count(b"HTTP/1.1 200 ") == count + 2
    positions = [got.find(b'"target": "/headers?i=%d"' % i) for i in range(count)]
    assert -1 not in positions and positions == sorted(positions)
    assert got.endswith(b"hello")


def test_connection_close_behind_others_closes_after_its_own_answer(proxy: Proxy) -> None:
    """``Connection: close`` on the third request: the first two are answered (without
    ``Connection: close``), then the third, then the connection closes; what came after it is
    not processed (RFC 9112 section 9.6)."""
    got = ask(
        proxy, b"GET /slow?s=0.2 HTTP/1.1\r\nHost: localhost\r\n\r\n" + HELLO + HELLO_CLOSE + HELLO
    )
    assert statuses(got) == [b"200", b"200", b"200"]
    assert got.count(b"Connection: close") == 1 and got.endswith(b"hello")


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01garbage\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: localhost\r\n" + PAD * 80 + b"\r\n",
    ],
    ids=["not HTTP", "refused head", "head too large"],
)
def test_valid_requests_before_garbage_get_their_answers_then_400(
    proxy: Proxy, garbage: bytes
) -> None:
    got = ask(proxy, b"GET /slow?s=0.2 HTTP/1.1\r\nHost: localhost\r\n\r\n" + HELLO + garbage)
    codes = statuses(got)
    assert codes[:2] == [b"200", b"200"] and len(codes) == 3, got[:600]
    assert codes[2] in (b"400", b"431")
    assert got.index(b"slow") < got.index(b"hello") < got.index(b"HTTP/1.1 4")
