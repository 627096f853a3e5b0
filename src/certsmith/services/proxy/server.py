"""One worker's listeners and client connections, by the names they had when they all lived
here (the bench and older importers use them). The code is in:

- :mod:`.exchange`: :class:`Exchange` (one request and its response), :class:`SiteRuntime`;
- :mod:`.runtime`: :class:`~.runtime.Runtime`, the worker state the connections share;
- :mod:`.connection`: request-head parsing with limits and deadlines, and
  :class:`HttpsConnection` (TLS client connections proxied to the upstream);
- :mod:`.redirect`: :class:`RedirectConnection` (the HTTP port: ACME answers, redirects);
- :mod:`.listeners`: :class:`Worker` (listeners, the deadline sweep, signals, drain).
"""

from __future__ import annotations

from certsmith.services.proxy.connection import (
    IDEMPOTENT,
    MAX_BUFFERED_BODY,
    MAX_PIPELINED,
    MAX_QUEUED,
    MAX_TUNNEL_BUF,
    ClientConnection,
    HttpsConnection,
)
from certsmith.services.proxy.exchange import Exchange, SiteRuntime
from certsmith.services.proxy.listeners import SWEEP, Worker
from certsmith.services.proxy.redirect import CHALLENGE_PREFIX, RedirectConnection
from certsmith.services.proxy.runtime import DRAIN_GRACE, Runtime

__all__ = [
    "CHALLENGE_PREFIX",
    "DRAIN_GRACE",
    "IDEMPOTENT",
    "MAX_BUFFERED_BODY",
    "MAX_PIPELINED",
    "MAX_QUEUED",
    "MAX_TUNNEL_BUF",
    "SWEEP",
    "ClientConnection",
    "Exchange",
    "HttpsConnection",
    "RedirectConnection",
    "Runtime",
    "SiteRuntime",
    "Worker",
]
