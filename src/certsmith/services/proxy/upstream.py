"""Keep-alive connections to one upstream app, kept warm in a pool.

A connection carries one request at a time. After a complete response that allows reuse it goes
back to the pool (last in, first out: the warmest connection is used next) and stays open for
as long as the upstream keeps it; there is no per-connection request cap. A connection whose
exchange ended any other way (the client vanished mid-body, a timeout, a malformed response)
is closed, never returned, so the next request can never read the rest of an old response.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httptools

from certsmith.services.proxy import fastpath
from certsmith.services.proxy.config import Upstream
from certsmith.services.proxy.exchange_api import ExchangeSide, TunnelSide

MAX_IDLE = 1024  # per upstream and worker; more idle connections than that are closed


class UpstreamConnection(asyncio.Protocol):
    """One connection to the upstream; ``exchange`` is the request it is serving, if any."""

    __slots__ = (
        "_closed",
        "buf",
        "exchange",
        "extra",
        "finished",
        "parser",
        "pool",
        "reused",
        "transport",
        "tunnel",
    )

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.exchange: ExchangeSide[UpstreamConnection] | None = None
        self.parser = httptools.HttpResponseParser(self)
        # The response head received so far (until llhttp says it is complete); a bytearray,
        # so a head arriving in many pieces is gathered in linear time. At most max_head.
        self.buf = bytearray()
        self.reused = False
        # The response ended inside the bytes being parsed: it is handed on once they all are,
        # and if any came after its end (``extra``: a body longer than its Content-Length, a
        # 204/304 or HEAD response with one) the connection is closed instead of pooled.
        self.finished = False
        self.extra = False
        self.tunnel: TunnelSide | None = None  # the client connection, once this is a tunnel
        self._closed = False

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        ex = self.exchange
        if ex is not None and ex.fast_reply and ex.response is None and not self.buf:
            conn = ex.conn
            fast = fastpath.response(
                data, conn.worker.response_validator, ex.site.tails[conn.keep_alive]
            )
            if fast is not None:
                conn.fast_response(ex, self, fast)
                return
        if self.tunnel is not None:
            self.tunnel.tunnel_data(data)
            return
        ex = self.exchange
        if ex is None:  # an idle connection must not talk: it would poison the next request
            self.close()
            return
        if ex.response is None:
            buf = self.buf
            buf += data
            if len(buf) > ex.conn.worker.limits.max_head and buf.find(b"\r\n\r\n") < 0:
                self.close()
                ex.conn.upstream_failed(ex, "the upstream's response head is too large")
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            rest = data[exc.args[0] :]
            if self.tunnel is not None and rest:
                self.tunnel.tunnel_data(rest)
        except httptools.HttpParserError as exc:
            if not self.finished:
                self.close()
                ex.conn.upstream_failed(ex, f"invalid response from the upstream: {exc}")
                return
            self.extra = True  # garbage after a complete response
        if self.finished:
            self.finished = False
            if self.extra:
                self.extra = False
                self.close()  # (response_done then cannot pool it)
            ex.conn.response_done(ex)
        conn = ex.conn
        if conn.out:
            conn.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.pool.forget(self)
        if self.tunnel is not None:
            self.tunnel.tunnel_closed()
            return
        ex = self.exchange
        if ex is not None:
            self.exchange = None
            ex.conn.upstream_lost(ex, self)

    def pause_writing(self) -> None:
        ex = self.exchange
        if ex is not None:
            ex.conn.pause_reading()
        elif self.tunnel is not None:
            self.tunnel.pause_reading()

    def resume_writing(self) -> None:
        ex = self.exchange
        if ex is not None:
            ex.conn.resume_reading()
        elif self.tunnel is not None:
            self.tunnel.resume_reading()

    # -- httptools callbacks (response) ---------------------------------------------------------

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        ex = self.exchange
        buf = self.buf
        end = buf.find(b"\r\n\r\n") + 4
        if 100 <= status < 200 and status != 101:
            # Interim responses (100, 103) are not forwarded; the final one follows.
            del buf[:end]
            return
        head = bytes(buf[:end])
        more = len(buf) > end
        self.buf = bytearray()
        if ex is None:
            return
        ex.conn.response_head(ex, self, status, head, self.parser.should_keep_alive())
        if ex.method == b"HEAD" and self.exchange is ex:
            # llhttp cannot be told the request was HEAD: it would wait for the body the
            # headers announce. The response is complete; a new parser reads the next one.
            self.parser = httptools.HttpResponseParser(self)
            self.finished = True
            self.extra = more

    def on_message_begin(self) -> None:
        if self.finished:
            self.extra = True  # another response, unasked for

    def on_body(self, body: bytes) -> None:
        ex = self.exchange
        if ex is not None and not self.finished:
            ex.conn.response_body(ex, body)

    def on_message_complete(self) -> None:
        ex = self.exchange
        if ex is not None and ex.response is not None and not self.finished:
            self.finished = True

    # -- used by the client side ----------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def pause_reading(self) -> None:
        if self.transport is not None and not self._closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self._closed:
            self.transport.resume_reading()

    def tunnel_data(self, data: bytes) -> None:
        """Client -> upstream bytes of an upgraded connection."""
        if self.transport is not None:
            self.transport.write(data)

    def tunnel_closed(self) -> None:
        self.close()

    def release(self) -> None:
        """The exchange finished cleanly: back to the pool."""
        self.exchange = None
        self.pool.release(self)

    def close(self) -> None:
        """Close and never reuse (the exchange did not end cleanly)."""
        self.exchange = None
        if not self._closed:
            self._closed = True
            self.pool.forget(self)
            if self.transport is not None:
                self.transport.abort()

    @property
    def closed(self) -> bool:
        return self._closed


class UpstreamPool:
    """Idle connections to one upstream, per worker."""

    def __init__(self, upstream: Upstream, loop: asyncio.AbstractEventLoop) -> None:
        self.upstream = upstream
        self.loop = loop
        self.idle: dict[UpstreamConnection, None] = {}  # insertion-ordered: LIFO via popitem
        self.opened = 0  # connections ever opened (for tests and the benchmark)

    def take(self) -> UpstreamConnection | None:
        """A warm idle connection, or None."""
        idle = self.idle
        while idle:
            conn = idle.popitem()[0]
            if not conn._closed:
                conn.reused = True
                return conn
        return None

    def connect(self, done: Callable[[UpstreamConnection | None, str], None]) -> asyncio.Task[Any]:
        """Open a new connection; ``done(conn, "")`` or ``done(None, reason)`` is called."""
        up = self.upstream
        self.opened += 1
        if up.path:
            coro = self.loop.create_unix_connection(lambda: UpstreamConnection(self), up.path)
        else:
            coro = self.loop.create_connection(lambda: UpstreamConnection(self), up.host, up.port)
        task = self.loop.create_task(coro)

        def finished(t: asyncio.Task[Any]) -> None:
            if t.cancelled():
                done(None, "timed out")
                return
            exc = t.exception()
            if exc is not None:
                done(None, getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
                return
            _transport, conn = t.result()
            if conn.closed:
                # Accepted and closed at once, before this callback ran: connection_lost has
                # been and gone, so an exchange attached now would wait for nothing.
                done(None, "the upstream closed the connection at once")
                return
            done(conn, "")

        task.add_done_callback(finished)
        return task

    def release(self, conn: UpstreamConnection) -> None:
        if conn.closed:
            return
        if len(self.idle) >= MAX_IDLE:
            conn.close()
            return
        self.idle[conn] = None

    def forget(self, conn: UpstreamConnection) -> None:
        self.idle.pop(conn, None)

    def close(self) -> None:
        for conn in list(self.idle):
            conn.close()
        self.idle.clear()
