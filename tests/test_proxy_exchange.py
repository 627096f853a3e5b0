"""The HTTPS connection's exchanges in memory: no sockets, no processes, no TLS.

A real :class:`~certsmith.services.proxy.connection.HttpsConnection` on a fake client transport,
with real :class:`~certsmith.services.proxy.upstream.UpstreamConnection` objects on fake
transports behind it, from a pool whose ``connect`` waits for the test to open the connection
(:meth:`Pool.open`). Client bytes go in through ``data_received`` as TLS would deliver them,
upstream bytes through the upstream connection's ``data_received``; the assertions are on the
bytes the client (and the upstream) would receive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from certsmith.services.proxy import config
from certsmith.services.proxy.connection import HttpsConnection
from certsmith.services.proxy.runtime import Runtime
from certsmith.services.proxy.states import IDLE
from certsmith.services.proxy.upstream import UpstreamConnection, UpstreamPool

FORWARDED = (
    b"X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: localhost\r\n"
)


class Transport:
    """An event-loop transport that keeps what is written, and whether it was closed."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.paused = False

    def write(self, data: bytes) -> None:
        self.sent.append(bytes(data))

    def writelines(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self.write(piece)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def take(self) -> bytes:
        """What was written since the last call."""
        out = b"".join(self.sent)
        self.sent.clear()
        return out


class Contexts:
    """The part of ``certs.SiteContexts`` a worker's state uses."""

    home = "/nonexistent"

    def attach(self, runtimes: Any) -> None:
        pass


class Pool(UpstreamPool):
    """An upstream pool whose ``connect`` waits: :meth:`open` completes the oldest attempt."""

    def __init__(self, upstream: Any, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(upstream, loop)
        self.waiting: list[Callable[[UpstreamConnection | None, str], None]] = []

    def connect(self, done: Callable[[UpstreamConnection | None, str], None]) -> Any:
        self.opened += 1
        self.waiting.append(done)
        return None

    def new(self) -> tuple[UpstreamConnection, Transport]:
        up = UpstreamConnection(self)
        transport = Transport()
        up.connection_made(transport)  # type: ignore[arg-type]
        return up, transport

    def open(self) -> tuple[UpstreamConnection, Transport]:
        """The connection ``connect`` was waiting for, now open."""
        up, transport = self.new()
        self.waiting.pop(0)(up, "")
        return up, transport

    def warm(self) -> tuple[UpstreamConnection, Transport]:
        """An idle kept-alive connection, as if left by an earlier exchange."""
        up, transport = self.new()
        self.release(up)
        return up, transport


class Proxy:
    """One worker's state, one site, and one client connection on a fake transport."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        async def build() -> Runtime:
            return Runtime(config.from_cli(["localhost"], "127.0.0.1:9"), Contexts())  # type: ignore[arg-type]

        self.runtime = loop.run_until_complete(build())
        site = self.runtime.sites[0]
        self.pool = site.pool = Pool(site.site.upstream, loop)
        self.conn = HttpsConnection(self.runtime)
        self.client = Transport()
        self.conn.connection_made(self.client)  # type: ignore[arg-type]

    def send(self, data: bytes) -> None:
        """Client -> proxy bytes (decrypted, as the TLS layer hands them on)."""
        self.conn.data_received(data)


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    loop = asyncio.new_event_loop()
    try:
        yield Proxy(loop)
    finally:
        loop.close()


def forwarded(method: bytes, target: bytes, fields: bytes = b"") -> bytes:
    """The request head the upstream gets for a client's ``method target`` with ``fields``."""
    return b"%s %s HTTP/1.1\r\nHost: localhost\r\n%s%s\r\n" % (method, target, fields, FORWARDED)


def test_pipelined_requests_in_one_read_are_answered_in_order(proxy: Proxy) -> None:
    """Two requests in one ``data_received``: the second waits for the first's response, then
    goes out on the same (released) upstream connection; the responses keep their order."""
    up, up_side = proxy.pool.warm()
    proxy.send(
        b"GET /a HTTP/1.1\r\nHost: localhost\r\n\r\nGET /b HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    assert up_side.take() == forwarded(b"GET", b"/a")
    assert proxy.client.take() == b""

    up.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na")
    assert proxy.client.take() == b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"
    assert up_side.take() == forwarded(b"GET", b"/b")

    up.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb")
    assert proxy.client.take() == b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"
    assert proxy.pool.opened == 0 and proxy.pool.idle == {up: None}
    assert proxy.conn.state == IDLE and not proxy.client.closed


@pytest.mark.parametrize("warm", [True, False], ids=["pooled", "connecting"])
def test_expect_100_continue_is_answered_by_the_proxy(proxy: Proxy, warm: bool) -> None:
    """``Expect: 100-continue``: the proxy sends the 100 itself as soon as the head is read
    (whether or not the upstream connection is open yet), the Expect field is not forwarded,
    and the upstream's own interim 100 is not relayed: the client sees one 100, then the
    final response."""
    if warm:
        up, up_side = proxy.pool.warm()
    proxy.send(
        b"POST /u HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    assert proxy.client.take() == b"HTTP/1.1 100 Continue\r\n\r\n"
    if not warm:
        assert proxy.pool.waiting
        up, up_side = proxy.pool.open()
    assert up_side.take() == forwarded(b"POST", b"/u", b"Content-Length: 5\r\n")

    up.data_received(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert proxy.client.take() == b""
    proxy.send(b"hello")
    assert up_side.take() == b"hello"
    up.data_received(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
    assert proxy.client.take() == b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
    assert not proxy.client.closed and proxy.conn.state == IDLE


def test_early_upstream_response_closes_after_it(proxy: Proxy) -> None:
    """The upstream answers before the request body is all there (an early 413): the response
    is forwarded, then the client connection closes; the upstream connection, with part of a
    request in it, is closed rather than pooled, and the rest of the body goes nowhere."""
    up, up_side = proxy.pool.warm()
    proxy.send(b"POST /big HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n012")
    assert up_side.take() == forwarded(b"POST", b"/big", b"Content-Length: 10\r\n") + b"012"

    up.data_received(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\n\r\ntoo big\n")
    assert (
        proxy.client.take()
        == b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\n\r\ntoo big\n"
    )
    assert proxy.client.closed
    assert up.closed and up_side.aborted and not proxy.pool.idle

    proxy.send(b"3456789")
    assert up_side.take() == b"" and proxy.client.take() == b""


def test_refused_upgrade_stays_http(proxy: Proxy) -> None:
    """An Upgrade request the upstream answers without 101: the answer goes to the client as
    an HTTP response, no tunnel is made (the bytes the client sent after the head are never
    forwarded), and the connection closes after it, since what the client sends next is not
    HTTP."""
    up, up_side = proxy.pool.warm()
    proxy.send(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
        b"Upgrade: websocket\r\n\r\nframe"
    )
    assert up_side.take() == forwarded(
        b"GET", b"/ws", b"Connection: upgrade\r\nUpgrade: websocket\r\n"
    )

    up.data_received(b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 4\r\n\r\nnope")
    assert proxy.client.take() == b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 4\r\n\r\nnope"
    assert proxy.client.closed
    assert proxy.conn.tunnel is None and up.tunnel is None
    proxy.send(b"more frames")
    assert up_side.take() == b""


def test_stale_pooled_connection_is_retried_once_on_a_fresh_one(proxy: Proxy) -> None:
    """A pooled upstream connection that turns out closed (it goes away without answering):
    an idempotent request without a body is sent once more, on a new connection, and the
    client sees only that one's response."""
    stale, stale_side = proxy.pool.warm()
    proxy.send(b"GET /r HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert stale_side.take() == forwarded(b"GET", b"/r")
    stale.connection_lost(None)
    assert proxy.client.take() == b""
    assert proxy.pool.opened == 1

    fresh, fresh_side = proxy.pool.open()
    assert fresh_side.take() == forwarded(b"GET", b"/r")
    fresh.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
    assert proxy.client.take() == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    assert proxy.conn.state == IDLE and not proxy.client.closed


def test_stale_retry_happens_once_and_never_for_post(proxy: Proxy) -> None:
    """The retry is for idempotent requests, once: a POST on a stale connection gets 502, and
    so does a GET whose fresh connection goes away too."""
    stale, _ = proxy.pool.warm()
    proxy.send(b"GET /r HTTP/1.1\r\nHost: localhost\r\n\r\n")
    stale.connection_lost(None)
    fresh, _ = proxy.pool.open()
    fresh.connection_lost(None)
    first = proxy.client.take()
    assert first.startswith(b"HTTP/1.1 502 ") and proxy.pool.opened == 1
    assert not proxy.client.closed

    stale, stale_side = proxy.pool.warm()
    proxy.send(b"POST /p HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n")
    assert stale_side.take() == forwarded(b"POST", b"/p")  # (an empty body: no length sent)
    stale.connection_lost(None)
    assert proxy.client.take().startswith(b"HTTP/1.1 502 ") and proxy.pool.opened == 1
