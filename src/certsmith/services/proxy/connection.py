"""Client connections (uvloop + httptools): request-head parsing with limits and deadlines
(:class:`ClientConnection`, shared with the HTTP listener's :mod:`.redirect`), and the HTTPS
connection that proxies its requests to the site's upstream (:class:`HttpsConnection`).

Everything here runs on one event loop thread, with callbacks rather than tasks on the hot path:
a keep-alive request costs a parse, a few list operations and two writes. Timeouts are deadlines
stored on the connection and checked by the worker's sweep, so a request arms no timer.

A request flows client -> :class:`~.tls.TlsTransport` (decrypt) -> :class:`HttpsConnection`
(parse, :func:`http.forward_request`) -> :class:`~.upstream.UpstreamConnection` (write head,
stream body) and the response comes back the same way, body pieces forwarded as they arrive.
Back-pressure goes both ways: a slow reader pauses the other side's reads, so neither a 100 MB
upload nor a download is ever held in memory.

The usual keep-alive exchange (a whole head without a body, then a whole ``Content-Length``
response) skips the parser callbacks and the state steps in between: see
:mod:`~.fastpath` and ``HttpsConnection.data_received`` / ``fast_response``. Anything else, or
anything the fast path is unsure of, takes the general path from the first byte.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import httptools

from certsmith.services.proxy import fastpath, http
from certsmith.services.proxy.exchange import Exchange, SiteRuntime
from certsmith.services.proxy.runtime import DRAIN_GRACE, Runtime
from certsmith.services.proxy.states import (
    BODY,
    CLOSED,
    CONNECTING,
    HEAD,
    IDLE,
    KEEP,
    RESPONDING,
    TIMEOUTS,
    TUNNEL,
    WAITING,
    State,
)
from certsmith.services.proxy.upstream import UpstreamConnection

MAX_BUFFERED_BODY = 256 * 1024  # request body held while the upstream connection opens
# What one client connection may make a worker hold before its reading pauses (it resumes
# when that is drained): requests pipelined behind the one being answered, their heads and
# bodies, and bytes sent after an Upgrade the upstream has not answered yet. A client that
# does not read its responses is not read from either (see pause_writing).
MAX_PIPELINED = 32
MAX_QUEUED = 256 * 1024
MAX_TUNNEL_BUF = 64 * 1024
# Methods a request may be repeated with (RFC 9110 section 9.2.2); never POST, PATCH, ...
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})

# (The connection states and the timeout of each: see .states. The two transitions every
# request makes, _attach's and _next's, are _enter written out, with the limits named here.)
assert TIMEOUTS[WAITING] == "upstream_timeout" and TIMEOUTS[IDLE] == "idle_timeout"


class ClientConnection(asyncio.Protocol):
    """Request-head parsing with limits and deadlines, shared by both listeners."""

    # (Slots: thousands of these live at once, and attribute access is on the hot path.)
    __slots__ = (
        "client_ip",
        "deadline",
        "head_bytes",
        "headers",
        "parser",
        "state",
        "transport",
        "url",
        "worker",
    )

    transport: Any
    state: State  # what the connection waits for, and so what its deadline means
    deadline: float  # (both set by _enter)

    def __init__(self, worker: Runtime) -> None:
        self.worker = worker
        self.transport = None
        self.client_ip = ""
        self._enter(HEAD)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        # The general path's parser; HTTPS connections make theirs when they first need it
        # (most never do: a parser is the largest Python object of an idle connection).
        self.parser: httptools.HttpRequestParser | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        worker = self.worker
        if len(worker.connections) >= worker.limits.max_connections:
            transport.abort()  # type: ignore[attr-defined]
            self._enter(CLOSED)
            return
        worker.connections.add(self)
        if worker.draining:  # accepted before the listener closed: one request, then close
            self.drain()
        peer = transport.get_extra_info("peername")
        ip = peer[0] if isinstance(peer, tuple) else "unix"
        self.client_ip = ip[7:] if ip.startswith("::ffff:") else ip

    def connection_lost(self, exc: Exception | None) -> None:
        self._enter(CLOSED)
        self.worker.connections.discard(self)

    def _enter(self, state: State, timer: State | None = None) -> None:
        """The one place a connection's state and deadline are set: enter ``state`` and arm
        the deadline with the timeout of state ``timer`` (by default the state's own, see
        :data:`.states.TIMEOUTS`). A state without a timeout arms nothing, and the running
        deadline stays: ``_enter(X, KEEP)`` changes the state only; ``_enter(self.state, X)``
        re-arms X's timeout in the same state. (No allocation, one index; only the two
        transitions of every request are written out instead, in _attach and _next.)"""
        self.state = state
        worker = self.worker
        seconds = worker.timeouts[state if timer is None else timer]
        if seconds is not None:
            self.deadline = worker.now + seconds

    # httptools callbacks for the request head
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        if self.state <= HEAD:  # not while a previous (pipelined) request is being answered
            self._enter(HEAD)

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.worker.limits.max_request_line:
            raise Refuse(414, "request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def _check_head(self) -> None:
        if len(self.headers) > self.worker.limits.max_headers:
            raise Refuse(431, "too many header fields")

    def _count_head(self, data: bytes) -> None:
        """Bytes received while reading a head: a never-ending header is cut off here, before
        the parser buffers it."""
        self.head_bytes += len(data)
        limit = self.worker.limits.max_head
        if self.head_bytes > limit:
            end = data.find(b"\r\n\r\n")
            if end < 0 or self.head_bytes - len(data) + end > limit:
                raise Refuse(431, "request header too large")

    def refuse_callback_error(self, exc: Exception) -> None:
        """A parser callback raised: refuse with the status it chose, or re-raise a bug."""
        cause = exc.__context__
        if not isinstance(cause, (Refuse, http.HttpError)):
            raise exc
        self.refuse(cause.status, cause.reason)

    def refuse(self, status: int, reason: str) -> None:
        """Answer an error the client caused and close (its stream cannot be trusted now)."""
        self.worker.log_refusal(self, status, reason)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(http.error_page(status, reason, close=True))
            self.transport.close()
        self._enter(CLOSED)

    def timeout(self) -> None:
        if self.state == HEAD and self.head_bytes:
            self.refuse(408, "request header not received in time")
        elif self.transport is not None:
            self.transport.abort()

    def drain(self) -> None:
        """SIGTERM: a kept-alive connection between requests closes now (its client retries
        elsewhere); a new one may still send its first request, promptly; any other closes
        after its current response."""
        if self.state == IDLE and self.transport is not None:
            self.transport.close()
        elif self.state == HEAD and not self.head_bytes:
            # (Not a state change: the head's deadline only comes sooner.)
            self.deadline = min(self.deadline, self.worker.now + DRAIN_GRACE)


class Refuse(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class HttpsConnection(ClientConnection):
    """A client connection on the HTTPS port: requests proxied to the site's upstream."""

    __slots__ = (
        "current",
        "held",
        "in_message",
        "keep_alive",
        "out",
        "parsing",
        "queue",
        "queued",
        "read_paused",
        "refusal",
        "tls_site",
        "tunnel",
        "tunnel_buf",
        "tunnel_size",
        "up_out",
        "write_paused",
    )

    def __init__(self, worker: Runtime) -> None:
        super().__init__(worker)
        self.tls_site: SiteRuntime | None = None
        self.current: Exchange | None = None  # the exchange being answered
        self.parsing: Exchange | None = None  # the exchange whose request is being read
        self.queue: deque[Exchange] | None = None  # pipelined requests waiting their turn
        self.queued = 0  # bytes of their heads and bodies
        self.write_paused = False  # the client is not reading what we send
        self.held = False  # the next exchange waits for the client to read (resume_writing)
        # A later pipelined request was refused: (status, reason), answered after the ones
        # before it.
        self.refusal: tuple[int, str] | None = None
        self.out: list[bytes] = []
        self.up_out: list[bytes] = []
        self.keep_alive = True
        self.read_paused = False
        self.tunnel: UpstreamConnection | None = None
        self.tunnel_buf: list[bytes] | None = None
        self.tunnel_size = 0
        self.in_message = False  # the parser is inside a request

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """The TCP connection (a :class:`~.tls.TlsTransport`): the header deadline set at
        creation also bounds the TLS handshake."""
        super().connection_made(transport)

    def tls_ready(self) -> None:
        """Handshake done: the site whose certificate the client got, and a fresh deadline."""
        sslobj = self.transport.get_extra_info("ssl_object")
        self.tls_site = getattr(sslobj.context, "site", None)
        if self.state == HEAD:
            self._enter(HEAD)

    # -- client bytes in ------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if (
            self.current is None
            and data[-4:] == b"\r\n\r\n"
            and not self.in_message
            and self.tunnel is None
            and self.tunnel_buf is None
            and self._fast_request(data)
        ):
            return
        if self.tunnel is not None:
            self._enter(TUNNEL)
            self.tunnel.tunnel_data(data)
            return
        if self.tunnel_buf is not None:  # upgrade asked, upstream has not switched yet
            self._hold_for_tunnel(data)
            return
        if self.refusal is not None:
            return  # (bytes after a refused request: the parser has stopped, they are void)
        try:
            parsing = self.parsing
            if parsing is None:
                self._count_head(data)
            else:
                if self.state == BODY:
                    self._enter(BODY)
                if parsing.req.body == http.CHUNKED:
                    # Chunk-size lines and trailers: reset by each piece of body (on_body),
                    # so only a run of them without data counts against the head limit.
                    self.head_bytes += len(data)
            parser = self.parser
            if parser is None:
                parser = self.parser = httptools.HttpRequestParser(self)
            parser.feed_data(data)
            if self.head_bytes > self.worker.limits.max_head and self.parsing is not None:
                raise Refuse(431, "chunk header or trailer too large")
        except httptools.HttpParserUpgrade as exc:
            self.tunnel_buf = []
            self.tunnel_size = 0
            if len(data) > exc.args[0]:
                self._hold_for_tunnel(data[exc.args[0] :])
        except Refuse as exc:
            self.refuse(exc.status, exc.reason)
        except httptools.HttpParserCallbackError as exc:
            self.refuse_callback_error(exc)
        except httptools.HttpParserError as exc:
            self.refuse(http.parser_error_status(str(exc)), str(exc) or "malformed request")
        # (A refusal deferred behind requests being answered leaves their bytes to send.)
        if self.up_out and self.state != CLOSED:
            self._flush_upstream()

    def _hold_for_tunnel(self, data: bytes) -> None:
        """Bytes after an Upgrade request, kept until the upstream answers it."""
        assert self.tunnel_buf is not None
        self.tunnel_buf.append(data)
        self.tunnel_size += len(data)
        if self.tunnel_size > MAX_TUNNEL_BUF:
            self.pause_reading()

    def refuse(self, status: int, reason: str) -> None:
        ex = self.current
        if ex is not None and self.parsing is None and self.refusal is None:
            # The bad bytes come after whole requests still being answered: those get their
            # answers first (in _next), then this refusal, then the connection closes.
            self.refusal = (status, reason)
            self.in_message = False
            self.pause_reading()
            return
        if ex is not None and ex.response is not None:
            # A response is on its way: an error page cannot follow part of it. Cut it.
            self.worker.log_refusal(self, status, reason)
            self.abort()
            return
        super().refuse(status, reason)

    def _fast_request(self, data: bytes) -> bool:
        """Between requests, with the parser at a message boundary: a whole head without a
        body takes the fast path if :func:`fastpath.request` takes it. (A wildcard name or a
        misdirected request is left to the general path, which decides.)"""
        worker = self.worker
        fast = fastpath.request(
            data,
            self.client_ip.encode(),
            worker.request_validator,
            worker.fast_limits,
            worker.want_agent,
        )
        if fast is None:
            return False
        method, target, req = fast
        site = worker.by_host.get(req.host)
        if site is None or (site is not self.tls_site and self.tls_site is not None):
            return False
        ex = self.current = Exchange(self, method, target, "1.1", req, site)
        ex.request_sent()
        if not req.keep_alive:
            self.keep_alive = False
        self._start(ex)
        if self.up_out:
            self._flush_upstream()
        return True

    def on_message_begin(self) -> None:
        self.in_message = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self.head_bytes = 0
        self._check_head()
        parser = self.parser
        assert parser is not None
        method = parser.get_method()
        version = parser.get_http_version()
        req = http.forward_request(method, self.url, version, self.headers, self.client_ip)
        site = self.worker.route(req.host, self.tls_site)
        if site is None:
            raise http.HttpError(421, f"this server does not serve {req.host or 'that host'}")
        ex = Exchange(self, method, self.url, version, req, site)
        self.parsing = ex
        if self.current is None:
            if not req.keep_alive:
                self.keep_alive = False
            self.current = ex
            self._enter(BODY if req.body else WAITING, KEEP)  # (_start arms the deadline)
            self._start(ex)
        else:  # pipelined: answered after the current one (and its Connection then applies)
            queue = self.queue
            if queue is None:
                queue = self.queue = deque()
            queue.append(ex)
            ex.body_buf = []
            self.queued += len(req.head)
            if len(queue) >= MAX_PIPELINED or self.queued > MAX_QUEUED:
                self.pause_reading()
        if req.expect_continue and self.current is ex:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        if ex is None:
            return
        self.head_bytes = 0
        if ex.upstream is not None and ex.body_buf is None:
            if ex.req.body == http.CHUNKED:
                self.up_out += (b"%x\r\n" % len(body), body, b"\r\n")
            else:
                self.up_out.append(body)
        elif ex.response is not None:
            return  # answered already (an error, or the upstream did not wait): discarded
        else:
            buf = ex.body_buf
            if buf is None:
                buf = ex.body_buf = []
            buf.append(body)
            ex.buffered += len(body)
            if ex is not self.current:
                self.queued += len(body)
            if ex.buffered > MAX_BUFFERED_BODY or self.queued > MAX_QUEUED:
                self.pause_reading()

    def on_message_complete(self) -> None:
        self.in_message = False
        ex = self.parsing
        if ex is None:
            return
        self.parsing = None
        ex.request_sent()
        if ex.upstream is not None and ex.body_buf is None:
            if ex.req.body == http.CHUNKED:
                self.up_out.append(b"0\r\n\r\n")
            if self.state == BODY:
                self._enter(WAITING)
        elif self.state == BODY:  # (the connect deadline _start armed still runs)
            self._enter(CONNECTING if ex is self.current else WAITING, KEEP)

    # -- upstream -------------------------------------------------------------------------------

    def _start(self, ex: Exchange) -> None:
        up = ex.site.pool.take()
        if up is not None:
            self._attach(ex, up)
            return
        if ex.request_done or ex.req.body == http.NONE:
            self._enter(CONNECTING)
        else:  # the body is still coming: read under the connect deadline until attached
            self._enter(BODY, CONNECTING)
        if ex.body_buf is None:
            ex.body_buf = []
        ex.site.pool.connect(lambda conn, why: self._connected(ex, conn, why))

    def _connected(self, ex: Exchange, up: UpstreamConnection | None, why: str) -> None:
        if self.current is not ex or self.state == CLOSED:
            if up is not None:
                up.release()
            return
        if up is None:
            self._answer_error(
                ex, 502, f"the upstream {ex.site.site.upstream} is unreachable ({why})"
            )
            return
        self._attach(ex, up)
        if self.up_out:
            self._flush_upstream()

    def _attach(self, ex: Exchange, up: UpstreamConnection) -> None:
        ex.upstream = up
        up.exchange = ex
        if ex.request_done and ex.req.body == http.NONE and not self.up_out:
            # Most requests: read whole, no body. The head goes out now.
            if ex.body_buf is not None:
                ex.body_buf = None
            # _enter(WAITING), written out: every request passes here and in _next, and a
            # call is half a percent of a request's cost (bench/proxy_hotpath.py --callgrind).
            self.state = WAITING
            self.deadline = self.worker.now + self.worker.limits.upstream_timeout
            up.write(ex.req.head)
            return
        self.up_out.append(ex.req.head)
        buf = ex.body_buf
        ex.body_buf = None
        if buf:
            if ex.req.body == http.CHUNKED:
                for piece in buf:
                    self.up_out += (b"%x\r\n" % len(piece), piece, b"\r\n")
            else:
                self.up_out += buf
            self.resume_reading()
        if ex.request_done:
            if ex.req.body == http.CHUNKED:
                self.up_out.append(b"0\r\n\r\n")
            self._enter(WAITING)
        elif ex.req.body:
            self._enter(BODY)
        if ex.req.upgrade is not None:
            self._enter(WAITING)

    def _flush_upstream(self) -> None:
        out = self.up_out
        self.up_out = []
        ex = self.current
        if ex is None or ex.upstream is None:
            return
        ex.upstream.write(out[0] if len(out) == 1 else b"".join(out))

    def response_head(
        self,
        ex: Exchange,
        up: UpstreamConnection,
        status: int,
        head: bytes,
        upstream_keep_alive: bool,
    ) -> None:
        try:
            resp = http.forward_response(
                head,
                status,
                head_request=ex.method == b"HEAD",
                request_keep_alive=self.keep_alive,
                client_version=ex.version,
                upstream_keep_alive=upstream_keep_alive,
                hsts=ex.site.hsts,
                upgrade=ex.req.upgrade is not None,
            )
        except http.HttpError as exc:
            up.close()
            self._answer_error(ex, exc.status, exc.reason)
            return
        ex.response = resp
        ex.status = status
        self.out.append(resp.head)
        if ex.req.upgrade is not None:
            if status == 101:
                self._start_tunnel(ex, up)
                return
            self.keep_alive = False  # refused upgrade: what the client sends next is not HTTP
        if not ex.request_done:
            # The upstream answers before the body is all there (an early 413, or streaming
            # both ways): the connection closes after this response, and body that arrives
            # once the response is complete is discarded.
            self.keep_alive = False
        self._enter(RESPONDING)
        if not resp.keep_alive:
            self.keep_alive = False

    def fast_response(
        self, ex: Exchange, up: UpstreamConnection, fast: fastpath.FastResponse
    ) -> None:
        """A whole response read in one piece (see :func:`fastpath.response`)."""
        ex.status, out, ex.sent, reusable = fast
        ex.upstream = None
        if reusable:
            up.release()
        else:
            up.close()
        if self.out:
            self.flush()
        self.transport.write(out)
        self.worker.log_access(self, ex)
        self._next()

    def response_body(self, ex: Exchange, body: bytes) -> None:
        resp = ex.response
        if resp is None:
            return
        ex.sent += len(body)
        if resp.to_client == http.CHUNKED:
            self.out += (b"%x\r\n" % len(body), body, b"\r\n")
        else:
            self.out.append(body)
        self._enter(self.state, RESPONDING)  # (re-armed by each piece)

    def response_done(self, ex: Exchange) -> None:
        resp = ex.response
        up = ex.upstream
        if resp is None or self.current is not ex:
            return
        if resp.to_client == http.CHUNKED:
            self.out.append(b"0\r\n\r\n")
        ex.upstream = None
        if up is not None:
            if resp.upstream_reusable and ex.request_done:
                up.release()
            else:
                up.close()
        self.flush()
        self.worker.log_access(self, ex)
        self._next()

    def _next(self) -> None:
        """The current exchange is over: close, or go on with the next request."""
        self.current = None
        if not self.keep_alive or self.worker.draining:
            if self.transport is not None:
                self.transport.close()
            self._enter(CLOSED)
            return
        if self.refusal is not None and not self.queue:
            self.refuse(*self.refusal)
            return
        if self.write_paused:
            # The client is not reading: the next response waits until it does, and so does
            # reading more requests (pause_writing paused that).
            self.held = True
            self._enter(RESPONDING)
            return
        queue = self.queue
        if queue:
            ex = self.current = queue.popleft()
            self.queued = self.queued - len(ex.req.head) - ex.buffered if queue else 0
            if not ex.req.keep_alive:
                self.keep_alive = False
            self._enter(BODY if not ex.request_done else WAITING, KEEP)  # (_start arms it)
            self._start(ex)
            if self.up_out:
                self._flush_upstream()
            if self.read_paused and len(queue) < MAX_PIPELINED and self.queued <= MAX_QUEUED:
                self.resume_reading()  # (paused again if the new current's body fills up)
            return
        if self.parsing is None:
            self.state = IDLE  # (_enter(IDLE), written out: see _attach)
            self.deadline = self.worker.now + self.worker.limits.idle_timeout
        if self.read_paused:
            self.resume_reading()

    def flush(self) -> None:
        out = self.out
        if out and self.transport is not None:
            self.out = []
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def upstream_lost(self, ex: Exchange, up: UpstreamConnection) -> None:
        """The upstream closed while serving ``ex``."""
        resp = ex.response
        if resp is not None and resp.body == http.UNTIL_CLOSE:
            self.response_done(ex)  # the close is how such a body ends
            return
        if (
            resp is None
            and up.reused
            and not ex.retried
            and ex.req.body == http.NONE
            and ex.method in IDEMPOTENT
            and ex.req.upgrade is None
            and self.current is ex
        ):
            # A kept-alive connection the upstream closed without answering: most likely it
            # closed it just before the request got there, but it may have acted on it. Only
            # an idempotent request without a body is sent once more, on a new connection
            # (RFC 9110 section 9.2.2, as nginx); any other gets 502.
            ex.retried = True
            ex.upstream = None
            ex.request_done = True
            self._start(ex)
            return
        self.upstream_failed(ex, "the upstream closed the connection")

    def upstream_failed(self, ex: Exchange, why: str) -> None:
        if ex.upstream is not None:
            ex.upstream.close()
            ex.upstream = None
        if ex.response is None:
            self._answer_error(ex, 502, why)
        else:  # the head is out: all we can do is cut the response short
            self.worker.log_access(self, ex)
            self.abort()

    def _answer_error(self, ex: Exchange, status: int, why: str) -> None:
        if self.current is not ex:
            return
        close = not ex.request_done or not self.keep_alive
        ex.status = status
        if ex.upstream is not None:
            ex.upstream.close()
            ex.upstream = None
        self.out.append(http.error_page(status, why, close=close))
        if close:
            self.keep_alive = False
        self.flush()
        self.worker.log_access(self, ex, why)
        self._next()

    def timeout(self) -> None:
        ex = self.current
        state = self.state
        if ex is not None and state in (CONNECTING, WAITING) and ex.response is None:
            self._answer_error(ex, 504, "the upstream did not answer in time")
        elif state == BODY and ex is not None and ex.response is None:
            self.keep_alive = False
            self._answer_error(ex, 408, "request body not received in time")
        elif ex is not None and ex.upstream is not None:
            self.upstream_failed(ex, "the upstream stalled")
        else:
            super().timeout()

    # -- back-pressure ----------------------------------------------------------------------------

    def pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None and not self.transport.is_closing():
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and self.transport is not None and not self.transport.is_closing():
            self.read_paused = False
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        """The client does not read as fast as we write: stop reading what we forward to it,
        and (but for a tunnel, whose directions are independent) stop reading its requests,
        whose answers would pile up here too."""
        self.write_paused = True
        ex = self.current
        if ex is not None and ex.upstream is not None:
            ex.upstream.pause_reading()
        elif self.tunnel is not None:
            self.tunnel.pause_reading()
        if self.tunnel is None:
            self.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        ex = self.current
        if ex is not None and ex.upstream is not None:
            ex.upstream.resume_reading()
        elif self.tunnel is not None:
            self.tunnel.resume_reading()
        if self.held:
            self.held = False
            self._next()
        elif self.tunnel is None and self.state != CLOSED:
            self.resume_reading()  # (paused again where a bound is still reached)

    # -- WebSocket and other upgrades -------------------------------------------------------------

    def _start_tunnel(self, ex: Exchange, up: UpstreamConnection) -> None:
        self.flush()
        self.worker.log_access(self, ex)
        self.tunnel = up
        up.exchange = None
        up.tunnel = self
        ex.upstream = None
        self.current = None
        self._enter(TUNNEL)
        pending = self.tunnel_buf or []
        self.tunnel_buf = None
        self.tunnel_size = 0
        for piece in pending:
            if piece:
                up.tunnel_data(piece)
        self.resume_reading()

    def tunnel_data(self, data: bytes) -> None:
        """Upstream -> client bytes of an upgraded connection."""
        self._enter(self.state, TUNNEL)
        if self.out:
            self.flush()
        if self.transport is not None:
            self.transport.write(data)

    def tunnel_closed(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- teardown -------------------------------------------------------------------------------

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self._enter(CLOSED)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.tunnel is not None:
            self.tunnel.close()
            self.tunnel = None
        # A client that vanished mid-exchange: the upstream connection is in an unknown state
        # (half a request sent, or half a response unread) and is closed, never pooled.
        for ex in [self.current, self.parsing, *(self.queue or ())]:
            if ex is not None and ex.upstream is not None:
                ex.upstream.close()
                ex.upstream = None
        self.current = self.parsing = None
        self.queue = None

    def drain(self) -> None:
        self.keep_alive = False
        if self.current is None and self.tunnel is None:
            super().drain()
