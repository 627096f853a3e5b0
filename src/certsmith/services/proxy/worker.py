"""A worker process: a fresh uvloop event loop running :class:`~.listeners.Worker`."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import sys
from pathlib import Path

from certsmith.services.proxy.certs import SiteContexts
from certsmith.services.proxy.config import ProxyConfig


def start_signals(blocked: set[signal.Signals]) -> None:
    """In a new worker, before the supervisor's ``blocked`` signals are let through: SIGTERM
    and SIGINT end it, SIGHUP and SIGUSR1 are ignored until its event loop has handlers.
    (SIGUSR1 comes when a certificate job ends, often just after a reload started the worker;
    by default it would kill it. A starting worker reads the certificates from disk, and its
    sweep reloads them, so nothing is missed.)"""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    for sig in (signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)


def run_worker(
    config: ProxyConfig,
    home: Path,
    http_socks: list[socket.socket],
    https_socks: list[socket.socket],
    dispatch: ssl.SSLContext,
) -> int:
    """Serve until SIGTERM has drained the connections; returns the exit code."""
    import uvloop

    pid = os.getpid()

    def say(line: str) -> None:
        sys.stderr.write(f"certsmith proxy[{pid}]: {line}\n")
        sys.stderr.flush()

    async def main() -> None:
        from certsmith.services.proxy.listeners import Worker

        contexts = SiteContexts(home, config.sites)
        worker = Worker(config, contexts, http_socks, https_socks, dispatch, say)
        contexts.install(dispatch)
        missing = contexts.missing()
        if missing:
            say(
                "no certificate yet for "
                + ", ".join(missing)
                + " (handshakes for these names fail until it is issued)"
            )
        await worker.serve()

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return 0
