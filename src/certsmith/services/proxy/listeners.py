"""One worker's event loop (:class:`Worker`): the HTTP and HTTPS listeners, the deadline sweep,
the signals and the drain on SIGTERM, around the state its connections share
(:class:`~.runtime.Runtime`).

Timeouts are deadlines stored on each connection and checked by one sweep per second, so a
request arms no timer.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
from collections.abc import Callable

from certsmith.services.proxy import tls
from certsmith.services.proxy.certs import SiteContexts
from certsmith.services.proxy.config import ProxyConfig
from certsmith.services.proxy.connection import HttpsConnection
from certsmith.services.proxy.redirect import RedirectConnection
from certsmith.services.proxy.runtime import DRAIN_GRACE, Runtime

SWEEP = 1.0


class Worker(Runtime):
    """One process's event loop: listeners, connections, the deadline sweep, signals."""

    def __init__(
        self,
        config: ProxyConfig,
        contexts: SiteContexts,
        http_socks: list[socket.socket],
        https_socks: list[socket.socket],
        dispatch: ssl.SSLContext,
        log: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(config, contexts, log)
        self.http_socks = http_socks
        self.https_socks = https_socks
        self.dispatch = dispatch
        self.servers: list[asyncio.AbstractServer] = []
        self._stopped = asyncio.Event()

    # -- running --------------------------------------------------------------------------------

    async def serve(self) -> None:
        loop = self.loop
        for sock in self.http_socks:
            self.servers.append(
                await loop.create_server(lambda: RedirectConnection(self), sock=sock, backlog=4096)
            )
        for sock in self.https_socks:
            self.servers.append(
                await loop.create_server(
                    lambda: tls.TlsTransport(
                        HttpsConnection(self), self.dispatch, self.tls_buffers
                    ),
                    sock=sock,
                    backlog=4096,
                )
            )
        loop.add_signal_handler(signal.SIGTERM, self.begin_drain)
        loop.add_signal_handler(signal.SIGINT, self.begin_drain)
        loop.add_signal_handler(signal.SIGUSR1, self.reload_certificates)
        loop.add_signal_handler(signal.SIGHUP, lambda: None)  # the supervisor handles reloads
        sweeper = loop.create_task(self._sweep())
        try:
            await self._stopped.wait()
        finally:
            sweeper.cancel()
            self.access.flush()

    async def _sweep(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(SWEEP)
            now = self.now = self.loop.time()
            for conn in [c for c in self.connections if c.deadline <= now]:
                try:
                    conn.timeout()
                except Exception as exc:  # a bug must not stop the sweep
                    self.say(f"timeout handling failed: {exc!r}")
                    if conn.transport is not None:
                        conn.transport.abort()
            self.access.flush()
            self.access.check()
            ticks += 1
            if ticks % 2 == 0:
                self.reload_certificates()
            self.contexts.poll_challenges()
            if self.draining and (
                now > self._drain_deadline
                or (not self.connections and now >= self._drain_start + DRAIN_GRACE)
            ):
                self._finish()

    def reload_certificates(self) -> None:
        failed = dict(self.contexts.failed)
        try:
            for name in self.contexts.refresh():
                self.say(f"serving a new certificate for {name}")
        except Exception as exc:
            self.say(f"reloading certificates failed: {exc}")
        for name, why in self.contexts.failed.items():
            if failed.get(name) != why:
                self.say(f"cannot load the certificate for {name}: {why}")

    def begin_drain(self) -> None:
        if self.draining:
            return
        self.draining = True
        self._drain_deadline = self.loop.time() + self.limits.drain_timeout
        for server in self.servers:
            server.close()
        for conn in list(self.connections):
            conn.drain()
        # Finishing waits DRAIN_GRACE at least: connections accepted just before the listener
        # closed may still be in their TLS handshake, invisible until it completes.
        self._drain_start = self.loop.time()

    def _finish(self) -> None:
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        for pool in self.pools.values():
            pool.close()
        self._stopped.set()
