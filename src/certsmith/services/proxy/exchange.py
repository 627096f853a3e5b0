"""One request and its response (:class:`Exchange`), and a site as a worker serves it
(:class:`SiteRuntime`).

An exchange belongs to a client connection (:class:`~.connection.HttpsConnection`) and, while
its request is sent and its response read, to an upstream connection
(:class:`~.upstream.UpstreamConnection`), which sees it through
:class:`~.exchange_api.ExchangeSide`.
"""

from __future__ import annotations

from certsmith.services.proxy import fastpath, http
from certsmith.services.proxy.config import Site
from certsmith.services.proxy.exchange_api import ClientSide
from certsmith.services.proxy.upstream import UpstreamConnection, UpstreamPool


class SiteRuntime:
    """A site as a worker uses it: its upstream pool and encoded options."""

    __slots__ = ("hosts", "hsts", "pool", "redirect", "site", "tails")

    def __init__(self, site: Site, pool: UpstreamPool) -> None:
        self.site = site
        self.pool = pool
        self.hsts = http.hsts_value(site.hsts)
        # How a fast-path response head ends, by whether the client connection stays open.
        self.tails = (fastpath.tail(self.hsts, False), fastpath.tail(self.hsts, True))
        self.redirect = site.redirect
        self.hosts = frozenset(i.value for i in site.cert_identifiers)


class Exchange:
    """One request and its response.

    (No ``__slots__``: most fields keep their class-level default for the whole exchange, and
    not storing them is a measurable share of a request's cost.)"""

    upstream: UpstreamConnection | None = None
    body_buf: list[bytes] | None = None  # body pieces before the upstream is attached
    buffered = 0
    request_done = False
    response: http.Response | None = None
    status = 0
    sent = 0
    retried = False
    version = "1.1"
    # The response may take fastpath.response: HTTP/1.1, not HEAD, no upgrade, request sent.
    fast_reply = False

    def __init__(
        self,
        conn: ClientSide[Exchange, UpstreamConnection],
        method: bytes,
        target: bytes,
        version: str,
        req: http.Request,
        site: SiteRuntime,
    ) -> None:
        self.conn = conn
        self.method = method
        self.target = target
        if version != "1.1":
            self.version = version
        self.req = req
        self.site = site
        self.started = conn.worker.now

    def request_sent(self) -> None:
        """The whole request is read (and on its way upstream)."""
        self.request_done = True
        self.fast_reply = (
            self.version == "1.1" and self.method != b"HEAD" and self.req.upgrade is None
        )
