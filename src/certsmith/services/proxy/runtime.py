"""What a worker's client connections share (:class:`Runtime`): the configuration and limits,
the clock of the last sweep, the sites and their upstream pools, routing by Host, the HTTP-01
answers, the access log and the set of live connections.

:class:`~.listeners.Worker` adds the listeners, the deadline sweep and the signals to it; the
connections (:mod:`.connection`, :mod:`.redirect`) see only this, so they do not import the
module that creates them.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable
from typing import Any, Protocol

import httptools

from certsmith.base.policy import ACME_CHALLENGE_PREFIX as PREFIX
from certsmith.services.proxy import fastpath, http, states, tls
from certsmith.services.proxy.accesslog import AccessLog
from certsmith.services.proxy.certs import SiteContexts
from certsmith.services.proxy.config import ProxyConfig, covering_wildcard
from certsmith.services.proxy.exchange import Exchange, SiteRuntime
from certsmith.services.proxy.issuing import WEBROOT
from certsmith.services.proxy.upstream import UpstreamPool

_TOKEN = re.compile(rb"^[A-Za-z0-9_-]{1,256}$")
DRAIN_GRACE = 1.0  # seconds a draining worker keeps serving connections that just arrived


class Client(Protocol):
    """A client connection as the worker sees it: swept by its deadline, drained, logged."""

    deadline: float
    transport: Any
    client_ip: str
    url: bytes

    def timeout(self) -> None: ...

    def drain(self) -> None: ...


class Runtime:
    """One worker's state, as its connections use it."""

    def __init__(
        self, config: ProxyConfig, contexts: SiteContexts, log: Callable[[str], None] | None = None
    ) -> None:
        self.config = config
        self.limits = config.limits
        self.timeouts = states.timeouts(self.limits)  # seconds per connection state
        self.contexts = contexts
        self.loop = asyncio.get_running_loop()
        self.now = self.loop.time()
        self.connections: set[Client] = set()
        self.tls_buffers = tls.Buffers()
        self.request_validator = fastpath.Validator(httptools.HttpRequestParser)
        self.response_validator = fastpath.Validator(httptools.HttpResponseParser)
        self.draining = False
        self.say = log or (lambda line: None)
        self.access = AccessLog(config.access_log, config.log_format, self.say)
        self.want_agent = self.access.enabled  # the access log is on
        self.fast_limits = fastpath.Limits(
            self.limits.max_head, self.limits.max_request_line, self.limits.max_headers
        )
        pools: dict[Any, UpstreamPool] = {}
        self.sites: list[SiteRuntime] = []
        self.by_host: dict[str, SiteRuntime] = {}
        for site in config.sites:
            pool = pools.get(site.upstream)
            if pool is None:
                pool = pools[site.upstream] = UpstreamPool(site.upstream, self.loop)
            runtime = SiteRuntime(site, pool)
            self.sites.append(runtime)
            for host in runtime.hosts:
                self.by_host[host] = runtime
        self.pools = pools
        contexts.attach(self.sites)
        # Where the HTTP-01 solver (any certsmith process) writes the answers.
        self._challenge_dir = os.path.join(contexts.home, WEBROOT, PREFIX.strip("/"))

    # -- routing --------------------------------------------------------------------------------

    def route(self, host: str, tls_site: SiteRuntime | None) -> SiteRuntime | None:
        """The site for a Host header; with TLS it must be the site whose certificate the
        client was given (else 421: the connection belongs to another site)."""
        site = self.by_host.get(host)
        if site is None and (wildcard := covering_wildcard(host)) is not None:
            site = self.by_host.get(wildcard)  # one label deeper only, as SNI selection
        if site is None:
            return tls_site if not host else None
        if tls_site is not None and site is not tls_site:
            return None
        return site

    def challenge_answer(self, token: bytes) -> bytes | None:
        if not _TOKEN.match(token):
            return None
        try:
            with open(os.path.join(self._challenge_dir, token.decode()), "rb") as fh:
                return fh.read(4096)
        except OSError:
            return None

    # -- logging --------------------------------------------------------------------------------

    def log_access(self, conn: Client, ex: Exchange, error: str = "") -> None:
        if self.access.fd is not None:
            self.access.add(
                conn.client_ip,
                ex.method,
                ex.target,
                ex.version,
                ex.status,
                ex.sent,
                ex.req.referer,
                ex.req.user_agent,
                ex.req.host,
                self.loop.time() - ex.started,
                error,
            )

    def log_plain(
        self,
        conn: Client,
        method: bytes,
        target: bytes,
        version: str,
        status: int,
        req: http.Request,
    ) -> None:
        if self.access.fd is not None:
            self.access.add(
                conn.client_ip,
                method,
                target,
                version,
                status,
                0,
                req.referer,
                req.user_agent,
                req.host,
                0.0,
            )

    def log_refusal(self, conn: Client, status: int, reason: str) -> None:
        if self.access.fd is not None:
            self.access.add(
                conn.client_ip, b"-", conn.url or b"-", "1.1", status, 0, b"", b"", "", 0.0, reason
            )
